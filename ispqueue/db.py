"""peewee binding: SQLite (WAL, busy timeout, foreign keys) or PostgreSQL, from one URL.

SQLite write transactions begin IMMEDIATE: a deferred transaction that reads and then
writes cannot wait for the lock (SQLite returns "database is locked" at once instead of
calling the busy handler), so every writer takes the lock up front and queues politely.
synchronous=NORMAL in WAL mode survives a process crash; after power loss the last
transactions may roll back, which the ledger's recovery already handles.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import peewee
from playhouse.db_url import connect

from ispqueue.errors import BadInput, ConfigError

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 1,
    "foreign_keys": 1,
    "busy_timeout": 15000,
    "cache_size": -8000,
}


def open_database(url: str, create: bool = True) -> peewee.Database:
    """Open (and bind the models to) the database named by a sqlite:/// or postgresql://
    URL. Without `create`, a missing SQLite file is an error, not a new empty database."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = Path(unquote(parts.path))
        if not create and not path.exists():
            raise BadInput(f"no data store at {path}: run `ispqueue init` first")
        path.parent.mkdir(parents=True, exist_ok=True)
        db = peewee.SqliteDatabase(
            str(path), pragmas=SQLITE_PRAGMAS, timeout=15, lock_type="IMMEDIATE"
        )
    elif parts.scheme in ("postgresql", "postgres"):
        db = connect(url)
    else:
        raise ConfigError(f"database url: unsupported scheme {parts.scheme!r}")
    database.initialize(db)
    return db


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """One all-or-nothing write (BEGIN IMMEDIATE on SQLite).

    Threads are not serialised here in Python: measured, a process-wide lock around the
    transaction made two workers slower than one (lock hand-offs under the GIL cost more
    than SQLite's own waiting for its write lock)."""
    with database.atomic():
        yield


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (freezegun-friendly)."""
    return dt.datetime.now(dt.UTC)


class UtcDateTimeField(peewee.DateTimeField):
    """Stores aware datetimes as naive UTC; reads them back aware."""

    def db_value(self, value):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value
