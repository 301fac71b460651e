"""One installation opened: config, data store, configured registry, ledger, queues.

The CLI, the daemon and the Python API all go through `Runtime.enqueue`, so every job gets
the same validation, unique check and ledger row before its queue message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from loguru import logger

from ispqueue import migrations
from ispqueue.config import Config
from ispqueue.db import open_database, utcnow
from ispqueue.errors import BadInput, BadJobArgs
from ispqueue.executor import Executor
from ispqueue.ledger import Ledger, NewJob
from ispqueue.middleware import Deadline, LogContext, RouterLock
from ispqueue.models import Job
from ispqueue.observability.logs import redact
from ispqueue.queues import QueueSet
from ispqueue.registry import JobType, Registry
from ispqueue.registry import registry as default_registry
from ispqueue.services.fleet import mirror_routers


@dataclass
class Enqueued:
    job: Job
    created: bool
    warning: str | None = None
    sent: bool = True  # False: the queue was down; the row waits for the sweeper


class Runtime:
    """Everything a command or the daemon needs, opened once."""

    def __init__(self, config: Config, registry: Registry | None = None, *,
                 migrate: bool = False):
        import ispqueue.jobs  # noqa: F401 - registers the job types

        self.config = config
        self.registry = (registry or default_registry).configure(config)
        self.db = open_database(config.database_url, create=migrate)
        if migrate:
            migrations.migrate(self.db)
        self.ledger = Ledger(redact=redact)

    @cached_property
    def queues(self) -> QueueSet:
        return QueueSet(self.config.queue)

    @cached_property
    def executor(self) -> Executor:
        middlewares = [LogContext(), RouterLock(self.queues.locks), Deadline()]
        executor = Executor(self.registry, self.ledger, middlewares, self.enqueue, self.send,
                            self.config)
        self.queues.run_job = executor.run
        return executor

    def enqueue(self, type_name: str, args: dict[str, Any] | None = None, *,
                router: str | None = None, delay: float | None = None,
                at: dt.datetime | None = None, priority: int | None = None,
                source: str = "api", parent: int | None = None) -> Enqueued:
        """Validate, write the ledger row, then send the queue message (unless later)."""
        job_type, args, warning = self.registry.resolve(type_name, args)
        if warning:
            logger.warning(warning)
        args = job_type.validate_args(args)
        router = self._router_for(job_type, router)
        new = NewJob(
            type=job_type.name, args=args, queue=job_type.queue_for(args),
            priority=job_type.policy.priority if priority is None else priority,
            tries=job_type.policy.tries, timeout=job_type.policy.timeout, router=router,
            unique_key=job_type.unique_key(args, router),
            scheduled_for=_when(delay, at), source=source, parent=parent,
        )
        job, created = self.ledger.insert(new)
        sent = self.send(job) if created and job.status == "queued" else True
        return Enqueued(job, created, warning, sent)

    def send(self, job: Job) -> bool:
        """Send "run job N" to its queue. The row is already written, so a queue that is
        down loses nothing: the daemon's sweeper sends queued rows that have no message."""
        try:
            self.queues.send(job.queue, job.id, job.priority)
        except Exception as exc:
            logger.bind(job=job.id, type=job.type).warning(
                "queue {} unavailable ({}); the job stays queued and is sent when it is back",
                job.queue, exc)
            return False
        return True

    def _router_for(self, job_type: JobType, router: str | None) -> str | None:
        if router is None:
            if job_type.needs_router:
                raise BadJobArgs(f"{job_type.name} needs a router (--router NAME)")
            return None
        if not (job_type.needs_router or job_type.router_optional):
            raise BadJobArgs(f"{job_type.name} does not take a router")
        found = self.config.router(router)
        if not found.enabled:
            raise BadJobArgs(f"router {router!r} is disabled in the config")
        return router


def _when(delay: float | None, at: dt.datetime | None) -> dt.datetime | None:
    if delay is not None and at is not None:
        raise BadInput("give either a delay or a time, not both")
    if delay is not None:
        if delay < 0:
            raise BadInput(f"delay must not be negative, got {delay}")
        return utcnow() + dt.timedelta(seconds=delay)
    if at is not None:
        if at.tzinfo is None:
            raise BadInput("the time must carry a timezone offset, e.g. 2026-12-04T10:00:00+06:00")
        return at
    return None


def initialise(config: Config, registry: Registry | None = None) -> dict[str, Any]:
    """Create the data dir, the databases and the log dir; apply migrations. Repeatable."""
    import ispqueue.jobs  # noqa: F401 - registers the job types

    (registry or default_registry).configure(config)  # unknown types: nothing written
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if config.logging.file is not None:
        config.logging.file.parent.mkdir(parents=True, exist_ok=True)
    db = open_database(config.database_url)
    applied = migrations.migrate(db)
    mirror_routers(config)
    QueueSet(config.queue)  # creating the Huey storages creates their tables
    return {
        "data_dir": str(config.data_dir),
        "database": _public_url(config.database_url),
        "schema_version": migrations.current_version(db),
        "migrations_applied": applied,
        "queue_backend": config.queue.backend,
    }


def require_schema(db: Any) -> None:
    """Commands other than init/run need an initialised, current data store."""
    have, want = migrations.current_version(db), migrations.latest_version()
    if have < want:
        raise BadInput(f"the data store is at schema {have}, this version needs {want}: "
                       "run `ispqueue init`")


def _public_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
