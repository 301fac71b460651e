"""peewee models. Schema changes go through ispqueue/migrations, never create_tables here."""

from __future__ import annotations

import json
from typing import Any

import peewee

from ispqueue.db import UtcDateTimeField, database

ACTIVE = ("scheduled", "queued", "running", "retrying")
FINAL = ("succeeded", "failed", "cancelled")
STATES = ACTIVE + FINAL


class BaseModel(peewee.Model):
    class Meta:
        database = database


class Job(BaseModel):
    """One row per job, written before the queue message; it outlives the job."""

    type = peewee.CharField(max_length=64)
    args = peewee.TextField(default="{}")
    queue = peewee.CharField(max_length=32)
    priority = peewee.IntegerField(default=0)
    status = peewee.CharField(max_length=16)
    attempt = peewee.IntegerField(default=0)
    tries = peewee.IntegerField(default=1)
    timeout = peewee.FloatField()
    unique_key = peewee.CharField(max_length=255, null=True)
    # Equals unique_key while the job is active, NULL once final: the unique index on it is
    # what makes "one active job per key" hold across processes.
    active_key = peewee.CharField(max_length=255, null=True, unique=True)
    router = peewee.CharField(max_length=64, null=True)
    enqueued_at = UtcDateTimeField()
    scheduled_for = UtcDateTimeField(null=True)
    queued_at = UtcDateTimeField(null=True)
    started_at = UtcDateTimeField(null=True)
    finished_at = UtcDateTimeField(null=True)
    duration = peewee.FloatField(null=True)
    runner = peewee.CharField(max_length=128, null=True)
    heartbeat_at = UtcDateTimeField(null=True)
    progress_done = peewee.IntegerField(null=True)
    progress_total = peewee.IntegerField(null=True)
    cancel_requested = peewee.BooleanField(default=False)
    result = peewee.TextField(null=True)
    error = peewee.TextField(null=True)
    traceback = peewee.TextField(null=True)
    source = peewee.CharField(max_length=16, default="api")
    parent = peewee.ForeignKeyField("self", null=True, backref="children", on_delete="SET NULL")

    class Meta:
        table_name = "job"

    @property
    def args_dict(self) -> dict[str, Any]:
        return json.loads(self.args)

    @property
    def result_dict(self) -> Any:
        return json.loads(self.result) if self.result else None


class JobEvent(BaseModel):
    """One row per transition of a job."""

    job = peewee.ForeignKeyField(Job, backref="events", on_delete="CASCADE")
    at = UtcDateTimeField()
    status = peewee.CharField(max_length=16)
    attempt = peewee.IntegerField()
    message = peewee.TextField(null=True)
    runner = peewee.CharField(max_length=128, null=True)

    class Meta:
        table_name = "job_event"


class ScheduleFire(BaseModel):
    """Claims one firing of one [schedule] entry, so several schedulers never fire it twice."""

    entry = peewee.CharField(max_length=128)
    fire_at = UtcDateTimeField()

    class Meta:
        table_name = "schedule_fire"
        indexes = ((("entry", "fire_at"), True),)
