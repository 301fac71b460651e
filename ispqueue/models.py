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
    wall_minute = peewee.CharField(max_length=16)
    fire_at = UtcDateTimeField()

    class Meta:
        table_name = "schedule_fire"
        indexes = ((("entry", "wall_minute"), True),)


ROUTER_STATES = ("unknown", "online", "warning", "offline")


class Router(BaseModel):
    """A `[[routers]]` entry as last mirrored from config, and its last health probe.

    Connection settings only: the password lives in the config alone. Routers removed from
    the config stay here disabled, so their history is kept.
    """

    name = peewee.CharField(max_length=64, unique=True)
    host = peewee.TextField()
    port = peewee.IntegerField()
    username = peewee.TextField()
    tls = peewee.BooleanField(default=False)
    auth_mode = peewee.CharField(max_length=16, default="router")
    enabled = peewee.BooleanField(default=True)
    expected_identity = peewee.TextField(null=True)
    created_at = UtcDateTimeField()
    updated_at = UtcDateTimeField()
    status = peewee.CharField(max_length=16, default="unknown")
    status_reason = peewee.TextField(null=True)
    # The last error seen, kept after the router recovers (status_reason is the current one).
    last_error = peewee.TextField(null=True)
    latency_ms = peewee.FloatField(null=True)
    uptime = peewee.TextField(null=True)  # RouterOS's own text, e.g. 1w2d3h4m5s
    version = peewee.TextField(null=True)
    board_name = peewee.TextField(null=True)
    identity = peewee.TextField(null=True)
    cpu_load = peewee.IntegerField(null=True)
    memory_used_percent = peewee.FloatField(null=True)
    checked_at = UtcDateTimeField(null=True)
    status_changed_at = UtcDateTimeField(null=True)

    class Meta:
        table_name = "router"
