"""The one state machine: run a job id and record exactly one outcome.

queued → running (claim) → succeeded | retrying | failed | cancelled | scheduled (deferred)
| queued (interrupted by shutdown). Every branch records its transition in the ledger.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger

from ispqueue.config import Config
from ispqueue.context import (
    Deferred,
    JobCancelled,
    JobContext,
    JobTimeout,
    PermanentFailure,
    ShutdownInterrupt,
)
from ispqueue.errors import BadInput
from ispqueue.ledger import Ledger
from ispqueue.middleware import RunMiddleware, chain, retry_delay
from ispqueue.models import Job
from ispqueue.registry import Registry

# A lost outcome write (database restarting) is tried again this many times before the row
# is left to the sweeper, which sees its heartbeat go stale.
RECORD_TRIES = 5


class Executor:
    """Claims, runs and records jobs; tracks the runs in flight in this process."""

    def __init__(self, registry: Registry, ledger: Ledger,
                 middlewares: Sequence[RunMiddleware], enqueue: Callable[..., Any],
                 send: Callable[[Job], None], config: Config | None = None):
        self.registry = registry
        self.ledger = ledger
        self.middlewares = list(middlewares)
        self.enqueue = enqueue
        self.send = send
        self.config = config
        self.inflight: dict[int, JobContext] = {}
        # Ids being claimed: the sweeper must not take a job this process is just starting.
        self.starting: set[int] = set()
        # Set at shutdown: a message taken now is left unclaimed, so the job stays queued and
        # the next start re-sends it, instead of starting work the shutdown would cut short.
        self.closing = False
        self._lock = threading.Lock()

    def run(self, job_id: int) -> None:
        """Huey's task body: run job `job_id` if it still needs running."""
        with self._lock:
            self.starting.add(job_id)
        try:
            self._claim_and_run(job_id)
        finally:
            with self._lock:
                self.starting.discard(job_id)
                self.inflight.pop(job_id, None)

    def _claim_and_run(self, job_id: int) -> None:
        if self.closing:
            return
        job = self.ledger.claim(job_id)
        if job is None:
            logger.debug("job {} needs no run (stale or duplicate message)", job_id)
            return
        try:
            job_type = self.registry.get(job.type)
        except BadInput:
            self._record(self.ledger.fail, job, f"no handler for job type {job.type!r} here")
            return
        ctx = JobContext(job, job_type, self.enqueue, self._progress_writer(job), self.config)
        with self._lock:
            self.inflight[job.id] = ctx
        self._run(job, ctx)

    def _run(self, job: Job, ctx: JobContext) -> None:
        policy = ctx.job_type.policy
        try:
            result = chain(self.middlewares, ctx.job_type.handler)(ctx)
        except Deferred as exc:
            self._record(self.ledger.defer, job, exc.delay, str(exc))
        except JobCancelled:
            self._record(self.ledger.cancelled, job)
        except ShutdownInterrupt as exc:
            self._record(self.ledger.requeue, job, str(exc), False)
            self._record(self.send, job)  # so the next start runs it at once
        except (PermanentFailure, BadInput) as exc:
            self._record(self.ledger.fail, job, exc)
        except (JobTimeout, Exception) as exc:
            delay = retry_delay(policy.backoff, job.attempt)
            self._record(self.ledger.retry_or_fail, job, exc, delay)
        else:
            self._record(self.ledger.succeed, job, result)

    def _record(self, transition: Callable[..., Any], *args: Any) -> None:
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                transition(*args)
                return
            except Exception as exc:
                logger.warning("recording a job outcome failed (try {}): {}", attempt, exc)
                time.sleep(0.2 * attempt)
        logger.error("gave up recording an outcome; the sweeper will recover the job")

    def _progress_writer(self, job: Job) -> Callable[[int, int | None], None]:
        def write(done: int, total: int | None) -> None:
            self.ledger.progress(job.id, job.attempt, done, total)
        return write

    def running(self) -> list[JobContext]:
        with self._lock:
            return list(self.inflight.values())

    def busy_ids(self) -> set[int]:
        """Jobs this process is claiming or running."""
        with self._lock:
            return set(self.inflight) | self.starting

    def interrupt(self, job_id: int, reason: Any) -> None:
        with self._lock:
            ctx = self.inflight.get(job_id)
        if ctx is not None:
            ctx.interrupt(reason)
