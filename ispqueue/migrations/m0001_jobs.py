"""The job ledger: job, job_event, schedule_fire."""

import peewee

from ispqueue.db import UtcDateTimeField


def apply(db: peewee.Database) -> None:
    class Base(peewee.Model):
        class Meta:
            database = db

    class Job(Base):
        type = peewee.CharField(max_length=64)
        args = peewee.TextField(default="{}")
        queue = peewee.CharField(max_length=32)
        priority = peewee.IntegerField(default=0)
        status = peewee.CharField(max_length=16)
        attempt = peewee.IntegerField(default=0)
        tries = peewee.IntegerField(default=1)
        timeout = peewee.FloatField()
        unique_key = peewee.CharField(max_length=255, null=True)
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
        parent = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")

        class Meta:
            table_name = "job"
            # Every index holding a column a transition changes costs pages on each
            # transition; these are the ones the sweeper, the clock and pruning need.
            # type and router never change, so their indexes cost nothing per transition.
            indexes = (
                (("status", "scheduled_for"), False),
                (("finished_at",), False),
                (("type",), False),
                (("router",), False),
            )

    class JobEvent(Base):
        job = peewee.ForeignKeyField(Job, on_delete="CASCADE")
        at = UtcDateTimeField()
        status = peewee.CharField(max_length=16)
        attempt = peewee.IntegerField()
        message = peewee.TextField(null=True)
        runner = peewee.CharField(max_length=128, null=True)

        class Meta:
            table_name = "job_event"

    class ScheduleFire(Base):
        entry = peewee.CharField(max_length=128)
        wall_minute = peewee.CharField(max_length=16)
        fire_at = UtcDateTimeField()

        class Meta:
            table_name = "schedule_fire"
            indexes = ((("entry", "wall_minute"), True),)

    db.create_tables([Job, JobEvent, ScheduleFire])
