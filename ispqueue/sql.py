"""Hand-written SQL for the ledger's hot path (insert, claim, transition, event).

peewee's query builder and per-field conversion cost several times what SQLite takes to run
a statement, and a job makes about six; so the hot path builds its SQL once per shape and
converts only what needs it: times (stored as naive UTC text) and flags.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from functools import cache
from typing import Any

import peewee

from ispqueue.db import UtcDateTimeField, database
from ispqueue.models import Job, JobEvent

MODELS = {"job": Job, "job_event": JobEvent}
# UPDATE … RETURNING needs SQLite 3.35 (PostgreSQL has it); older SQLite reads the row back.
RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)


def _param(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return str(value)  # the text peewee itself stores: 'YYYY-MM-DD HH:MM:SS[.ffffff]'
    if isinstance(value, Job):
        return value.id
    return value


def _column(table: str, name: str) -> str:
    return MODELS[table]._meta.fields[name].column_name


@cache
def _insert_sql(table: str, names: tuple[str, ...], param: str, returning: bool) -> str:
    columns = ", ".join(_column(table, n) for n in names)
    marks = ", ".join([param] * len(names))
    tail = " RETURNING id" if returning else ""
    return f"INSERT INTO {table} ({columns}) VALUES ({marks}){tail}"


def insert(table: str, values: dict[str, Any], returning: bool = True) -> int | None:
    """INSERT one row; its id when `returning`."""
    db = database.obj
    query = _insert_sql(table, tuple(values), db.param, returning)
    cursor = db.execute_sql(query, [_param(v) for v in values.values()])
    return cursor.fetchone()[0] if returning else None


@cache
def _update_sql(names: tuple[str, ...], nexpect: int, param: str, fenced: bool,
                increment: bool) -> str:
    sets = [f"{_column('job', n)} = {param}" for n in names]
    if increment:
        sets.append("attempt = attempt + 1")
    where = f"id = {param} AND status IN ({', '.join([param] * nexpect)})"
    if fenced:
        where += f" AND attempt = {param}"
    return f"UPDATE job SET {', '.join(sets)} WHERE {where}"


def update(changes: dict[str, Any], job_id: int, expect: tuple[str, ...],
           attempt: int | None, increment: bool = False) -> bool:
    """Fenced UPDATE of one job: only if its status is in `expect` (and its attempt is
    `attempt`, when given). True when the row moved."""
    return _fenced(changes, job_id, expect, attempt, increment, returning=False).rowcount == 1


def update_returning(changes: dict[str, Any], job_id: int, expect: tuple[str, ...],
                     increment: bool = False) -> Job | None:
    """The same fenced UPDATE, returning the moved row as a model (None if it did not move)."""
    if not RETURNING:
        return load(job_id) if update(changes, job_id, expect, None, increment) else None
    cursor = _fenced(changes, job_id, expect, None, increment, returning=True)
    row = cursor.fetchone()
    return _job(cursor.description, row) if row is not None else None


def _fenced(changes: dict[str, Any], job_id: int, expect: tuple[str, ...],
            attempt: int | None, increment: bool, returning: bool) -> Any:
    db = database.obj
    query = _update_sql(tuple(changes), len(expect), db.param, attempt is not None, increment)
    if returning:
        query += " RETURNING *"
    params = [_param(v) for v in changes.values()] + [job_id, *expect]
    if attempt is not None:
        params.append(attempt)
    return db.execute_sql(query, params)


@cache
def _converters() -> dict[str, tuple[str, Any]]:
    """column → (attribute, converter or None) for building a Job from a row."""
    converters = {}
    for column, field in Job._meta.columns.items():
        convert = None
        if isinstance(field, UtcDateTimeField | peewee.BooleanField):
            convert = field.python_value
        converters[column] = (field.name, convert)
    return converters


def load(job_id: int) -> Job:
    """One job row as a model."""
    db = database.obj
    cursor = db.execute_sql(f"SELECT * FROM job WHERE id = {db.param}", (job_id,))
    return _job(cursor.description, cursor.fetchone())


def _job(description: Any, row: tuple[Any, ...]) -> Job:
    """A row as a model, converting only the columns that need it."""
    converters = _converters()
    values = {}
    for column, value in zip((c[0] for c in description), row, strict=True):
        name, convert = converters[column]
        values[name] = convert(value) if convert is not None and value is not None else value
    return Job(**values)
