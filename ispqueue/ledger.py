"""The job ledger: job rows, their transitions, and recovery of jobs left by a dead runner.

Every transition is one conditional UPDATE (fenced on the expected status and attempt, so two
processes can never both move a job) plus one job_event row, in one transaction, and one log
line. Huey only carries job ids; the ledger is the truth, which is what makes at-least-once
delivery on top of Huey's at-most-once dequeue possible.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee
from loguru import logger

from ispqueue import sql
from ispqueue.db import utcnow, write_transaction
from ispqueue.errors import BadInput, NotFound
from ispqueue.models import FINAL, Job, JobEvent

HOST = socket.gethostname()
INSERT_FIELDS = ("type", "args", "queue", "priority", "status", "attempt", "tries", "timeout",
                 "unique_key", "active_key", "router", "enqueued_at", "scheduled_for",
                 "queued_at", "source", "parent", "cancel_requested")


@dataclass
class NewJob:
    type: str
    args: dict[str, Any]
    queue: str
    priority: int
    tries: int
    timeout: float
    router: str | None = None
    unique_key: str | None = None
    scheduled_for: dt.datetime | None = None
    source: str = "api"
    parent: int | None = None


def runner_id() -> str:
    return f"{HOST}:{os.getpid()}"


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Ledger:
    """Reads and moves job rows on behalf of one runner (host:pid)."""

    def __init__(self, redact: Any = None):
        self.runner = runner_id()
        self.redact = redact or (lambda text: text)

    # -- enqueue ---------------------------------------------------------------------------

    def insert(self, new: NewJob) -> tuple[Job, bool]:
        """Write the row (queued, or scheduled when in the future). Returns (job, created);
        an active job with the same unique key is returned instead of a duplicate."""
        for _ in range(3):
            try:
                return self._insert(new), True
            except peewee.IntegrityError:
                existing = Job.get_or_none(Job.active_key == new.unique_key)
                if existing is not None:
                    return existing, False
        raise RuntimeError(f"could not insert or find job with key {new.unique_key}")

    def _insert(self, new: NewJob) -> Job:
        now = utcnow()
        later = new.scheduled_for is not None and new.scheduled_for > now
        status = "scheduled" if later else "queued"
        job = Job(type=new.type, args=json.dumps(new.args, sort_keys=True), queue=new.queue,
                  priority=new.priority, status=status, attempt=0, tries=new.tries,
                  timeout=new.timeout, unique_key=new.unique_key, active_key=new.unique_key,
                  router=new.router, enqueued_at=now, scheduled_for=new.scheduled_for or now,
                  queued_at=None if later else now, source=new.source, parent=new.parent,
                  cancel_requested=False)
        with write_transaction():
            job.id = sql.insert("job", {f: getattr(job, f) for f in INSERT_FIELDS})
            self._event(job, status, now, f"enqueued by {new.source}")
        self._log(job, status, f"enqueued by {new.source}")
        return job

    # -- running ---------------------------------------------------------------------------

    def claim(self, job_id: int) -> Job | None:
        """queued → running for this runner; None when the message is stale (the job was
        cancelled, already taken, or is a duplicate message)."""
        now = utcnow()
        with write_transaction():
            job = sql.update_returning(
                {"status": "running", "started_at": now, "finished_at": None, "duration": None,
                 "runner": self.runner, "heartbeat_at": now, "progress_done": None,
                 "progress_total": None}, job_id, ("queued",), increment=True)
            if job is None:
                return None
            self._event(job, "running", now)
        self._log(job, "running", f"attempt {job.attempt}/{job.tries}")
        return job

    def succeed(self, job: Job, result: Any) -> bool:
        return self._finish(job, "succeeded", None, result=_to_json(result),
                            error=None, traceback=None)

    def fail(self, job: Job, exc: BaseException | str, with_traceback: bool = True) -> bool:
        message = exc if isinstance(exc, str) else describe(exc)
        trace = None if isinstance(exc, str) or not with_traceback else _traceback(exc)
        return self._finish(job, "failed", message, error=self.redact(message),
                            traceback=trace and self.redact(trace))

    def cancelled(self, job: Job, message: str = "cancelled while running") -> bool:
        return self._finish(job, "cancelled", message)

    def retry_or_fail(self, job: Job, exc: BaseException, delay: float) -> bool:
        """retrying (due after `delay` s) while tries remain, else failed."""
        if job.attempt >= job.tries:
            return self.fail(job, exc)
        message = self.redact(describe(exc))
        due = utcnow() + dt.timedelta(seconds=delay)
        return self._move(job, "retrying", ("running",), f"{message}; retry in {delay:.1f}s",
                          scheduled_for=due, error=message,
                          traceback=self.redact(_traceback(exc)), finished_at=utcnow())

    def defer(self, job: Job, delay: float, reason: str) -> bool:
        """Back to scheduled without using a try (e.g. its router lock is taken)."""
        due = utcnow() + dt.timedelta(seconds=delay)
        return self._move(job, "scheduled", ("running",), f"{reason}; again in {delay:.1f}s",
                          scheduled_for=due, attempt=job.attempt - 1)

    def requeue(self, job: Job, reason: str, use_try: bool) -> bool:
        """running → queued after an interruption; `use_try` False gives the try back."""
        attempt = job.attempt if use_try else job.attempt - 1
        return self._move(job, "queued", ("running",), reason, attempt=attempt,
                          queued_at=utcnow(), scheduled_for=utcnow())

    def progress(self, job_id: int, attempt: int, done: int, total: int | None) -> None:
        (Job.update(progress_done=done, progress_total=total)
         .where(Job.id == job_id, Job.attempt == attempt, Job.status == "running").execute())

    def heartbeat(self, job_ids: list[int]) -> None:
        if job_ids:
            (Job.update(heartbeat_at=utcnow())
             .where(Job.id.in_(job_ids), Job.runner == self.runner, Job.status == "running")
             .execute())

    def cancel_requests(self, job_ids: list[int]) -> list[int]:
        if not job_ids:
            return []
        query = Job.select(Job.id).where(Job.id.in_(job_ids), Job.cancel_requested == True)  # noqa: E712
        return [row.id for row in query]

    # -- the clock and the sweeper ------------------------------------------------------------

    def promote_due(self, limit: int = 500) -> list[Job]:
        """scheduled/retrying rows whose time has come → queued. Returns the moved jobs."""
        now = utcnow()
        due = list(Job.select().where(Job.status.in_(("scheduled", "retrying")),
                                      Job.scheduled_for <= now)
                   .order_by(Job.scheduled_for).limit(limit))
        return [job for job in due
                if self._move(job, "queued", ("scheduled", "retrying"), None, queued_at=now)]

    def recover_dead(self, alive: Any, stale_after: float,
                     mine: Callable[[], set[int]]) -> list[Job]:
        """Running jobs whose runner is gone → queued again (tries left) or failed
        "worker died". `mine()` names the jobs this process is claiming or running; it is
        asked after the rows are read, so a job claimed meanwhile is never mistaken for an
        orphan. Returns the re-queued jobs, which need a new queue message."""
        now = utcnow()
        stale = now - dt.timedelta(seconds=stale_after)
        running = list(Job.select().where(Job.status == "running"))
        busy = mine()
        requeued = []
        for job in running:
            if not self._runner_gone(job, alive, stale, busy):
                continue
            reason = f"worker died ({job.runner})"
            if job.attempt < job.tries:
                if self.requeue(job, f"{reason}; re-queued", use_try=True):
                    requeued.append(job)
            else:
                self.fail(job, reason)
        return requeued

    def _runner_gone(self, job: Job, alive: Any, stale: dt.datetime, mine: set[int]) -> bool:
        if job.runner == self.runner:
            return job.id not in mine
        host, _, pid = (job.runner or ":").rpartition(":")
        if host == HOST and pid.isdigit() and not alive(int(pid)):
            return True
        return job.heartbeat_at is None or job.heartbeat_at < stale

    def unsent(self, older_than: float) -> list[Job]:
        """Queued rows waiting longer than `older_than` s: candidates for a lost message."""
        cutoff = utcnow() - dt.timedelta(seconds=older_than)
        return list(Job.select().where(Job.status == "queued", Job.queued_at < cutoff))

    def touch_queued(self, job: Job) -> None:
        Job.update(queued_at=utcnow()).where(Job.id == job.id, Job.status == "queued").execute()

    # -- by hand ------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        job = Job.get_or_none(Job.id == job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        return job

    def cancel(self, job_id: int) -> str:
        """Cancel a waiting job now, or ask the runner of a running one to stop it."""
        job = self.get(job_id)
        if job.status in FINAL:
            raise BadInput(f"job {job_id} is already {job.status}")
        if job.status == "running":
            Job.update(cancel_requested=True).where(Job.id == job_id).execute()
            self._log(job, "running", "cancel requested")
            return "cancel requested"
        if not self._move(job, "cancelled", ("scheduled", "queued", "retrying"),
                          "cancelled by hand", finished_at=utcnow(), active_key=None):
            return self.cancel(job_id)  # it moved meanwhile; decide again
        return "cancelled"

    def retry(self, job_id: int) -> Job:
        """A failed or cancelled job gets one more attempt, on the same row."""
        job = self.get(job_id)
        if job.status not in ("failed", "cancelled"):
            raise BadInput(f"job {job_id} is {job.status}; only failed or cancelled jobs retry")
        try:
            moved = self._move(job, "queued", ("failed", "cancelled"), "retry by hand",
                               tries=max(job.tries, job.attempt + 1), queued_at=utcnow(),
                               scheduled_for=utcnow(), active_key=job.unique_key,
                               cancel_requested=False, finished_at=None)
        except peewee.IntegrityError:
            twin = Job.get(Job.active_key == job.unique_key)
            raise BadInput(f"job {twin.id} does the same work and is {twin.status}") from None
        if not moved:
            raise BadInput(f"job {job_id} changed meanwhile; try again")
        return job

    def prune(self, older_than: dt.timedelta) -> int:
        """Delete final jobs that finished before now - older_than (events go with them)."""
        cutoff = utcnow() - older_than
        with write_transaction():
            ids = [j.id for j in Job.select(Job.id).where(Job.status.in_(FINAL),
                                                          Job.finished_at < cutoff)]
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                JobEvent.delete().where(JobEvent.job.in_(chunk)).execute()
                Job.update(parent=None).where(Job.parent.in_(chunk)).execute()
                Job.delete().where(Job.id.in_(chunk)).execute()
        return len(ids)

    # -- one transition -------------------------------------------------------------------------

    def _finish(self, job: Job, status: str, message: str | None, **changes: Any) -> bool:
        now = utcnow()
        duration = (now - job.started_at).total_seconds() if job.started_at else None
        return self._move(job, status, ("running",), message, finished_at=now,
                          duration=duration, active_key=None, **changes)

    def _move(self, job: Job, status: str, expect: tuple[str, ...], message: str | None,
              **changes: Any) -> bool:
        now = utcnow()
        changes["status"] = status
        with write_transaction():
            if not sql.update(changes, job.id, expect, attempt=job.attempt):
                return False
            for name, value in changes.items():
                setattr(job, name, value)
            self._event(job, status, now, message)
        self._log(job, status, message)
        return True

    def _event(self, job: Job, status: str, now: dt.datetime, message: str | None = None) -> None:
        sql.insert("job_event", {"job": job.id, "at": now, "status": status,
                                 "attempt": job.attempt, "runner": self.runner,
                                 "message": message and self.redact(message)}, returning=False)

    def _log(self, job: Job, status: str, message: str | None) -> None:
        # The sinks print job, type and router from the bound fields; the text is the news.
        level = {"failed": "ERROR", "retrying": "WARNING"}.get(status, "INFO")
        logger.bind(job=job.id, type=job.type, router=job.router, queue=job.queue,
                    event=status).log(level, status + (f": {message}" if message else ""))


def _to_json(result: Any) -> str | None:
    if result is None:
        return None
    return json.dumps(result, sort_keys=True, default=str)


def _traceback(exc: BaseException) -> str:
    return "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
