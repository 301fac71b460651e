"""Routers: the `[[routers]]` mirror (never the password) and the last probe's outcome."""

import peewee

from ispqueue.db import UtcDateTimeField


def apply(db: peewee.Database) -> None:
    class Router(peewee.Model):
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
        last_error = peewee.TextField(null=True)
        latency_ms = peewee.FloatField(null=True)
        uptime = peewee.TextField(null=True)
        version = peewee.TextField(null=True)
        board_name = peewee.TextField(null=True)
        identity = peewee.TextField(null=True)
        cpu_load = peewee.IntegerField(null=True)
        memory_used_percent = peewee.FloatField(null=True)
        checked_at = UtcDateTimeField(null=True)
        status_changed_at = UtcDateTimeField(null=True)

        class Meta:
            database = db
            table_name = "router"

    db.create_tables([Router])
