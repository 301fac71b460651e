"""Hand-written SQL for the ledger's hot path (insert, claim, transition, event).

peewee's query builder costs a few hundred microseconds per statement, several times what
SQLite takes to run it; a job makes about six statements, so the hot path builds its SQL once
per shape and converts values with the models' own fields.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ispqueue.db import database
from ispqueue.models import Job, JobEvent

MODELS = {"job": Job, "job_event": JobEvent}


def _column(table: str, name: str) -> tuple[str, Any]:
    field = MODELS[table]._meta.fields[name]
    return field.column_name, field


def _db_value(table: str, name: str, value: Any) -> Any:
    field = MODELS[table]._meta.fields[name]
    if isinstance(value, Job):
        value = value.id
    return field.db_value(value)


@cache
def _insert_sql(table: str, names: tuple[str, ...], param: str, returning: bool) -> str:
    columns = ", ".join(_column(table, n)[0] for n in names)
    marks = ", ".join([param] * len(names))
    tail = " RETURNING id" if returning else ""
    return f"INSERT INTO {table} ({columns}) VALUES ({marks}){tail}"


def insert(table: str, values: dict[str, Any], returning: bool = True) -> int | None:
    """INSERT one row; its id when `returning`."""
    names = tuple(values)
    query = _insert_sql(table, names, database.param, returning)
    cursor = database.execute_sql(query, [_db_value(table, n, values[n]) for n in names])
    return cursor.fetchone()[0] if returning else None


@cache
def _update_sql(names: tuple[str, ...], nexpect: int, param: str, fenced: bool,
                increment: bool) -> str:
    sets = [f"{_column('job', n)[0]} = {param}" for n in names]
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
    names = tuple(changes)
    query = _update_sql(names, len(expect), database.param, attempt is not None, increment)
    params = [_db_value("job", n, changes[n]) for n in names] + [job_id, *expect]
    if attempt is not None:
        params.append(attempt)
    return database.execute_sql(query, params).rowcount == 1


def load(job_id: int) -> Job:
    return Job.raw(f"SELECT * FROM job WHERE id = {database.param}", job_id).get()
