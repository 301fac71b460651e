"""Versioned schema migrations: each module `mNNNN_*.py` has an `apply(db)` function.

Migrations describe the schema as it was at their version (their own model copies or DDL),
so later model changes never alter what an old migration creates.
"""

from __future__ import annotations

import importlib
import pkgutil

import peewee
from loguru import logger

from ispqueue.db import utcnow

SCHEMA_TABLE = "schema_version"


def available() -> list[tuple[int, str]]:
    """(version, module name) of every migration shipped, in order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("m") and info.name[1:5].isdigit():
            found.append((int(info.name[1:5]), info.name))
    return sorted(found)


def current_version(db: peewee.Database) -> int:
    if SCHEMA_TABLE not in db.get_tables():
        return 0
    row = db.execute_sql(f"SELECT MAX(version) FROM {SCHEMA_TABLE}").fetchone()
    return row[0] or 0


def migrate(db: peewee.Database) -> list[int]:
    """Apply pending migrations, each in its own transaction; safe to run concurrently."""
    db.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
        "(version INTEGER PRIMARY KEY, name VARCHAR(128) NOT NULL, applied_at VARCHAR(40) NOT NULL)"
    )
    applied = []
    for version, name in available():
        with db.atomic():
            _serialize(db)
            if version <= current_version(db):
                continue
            module = importlib.import_module(f"{__name__}.{name}")
            module.apply(db)
            db.execute_sql(
                f"INSERT INTO {SCHEMA_TABLE} (version, name, applied_at) VALUES (%s, %s, %s)"
                .replace("%s", db.param),
                (version, name, utcnow().isoformat()),
            )
            logger.info("applied migration {} ({})", version, name)
            applied.append(version)
    return applied


def _serialize(db: peewee.Database) -> None:
    # SQLite transactions already begin IMMEDIATE; PostgreSQL needs an explicit lock so two
    # processes starting together do not both apply the same migration.
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(7291001)")


def latest_version() -> int:
    shipped = available()
    return shipped[-1][0] if shipped else 0
