"""What a handler gets: its job's id and args, the deadline, progress, chaining, a logger.

Handlers never see Huey or the ledger; they call `ctx.*` and raise. The outcome exceptions
below are how middleware tells the executor which transition to record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

if TYPE_CHECKING:
    from ispqueue.config import Config, RouterConfig
    from ispqueue.models import Job
    from ispqueue.registry import JobType


class Interrupt(BaseException):
    """Stops a running handler from outside. A BaseException, so a handler's broad
    `except Exception` cannot swallow it."""

    reason = "interrupted"

    def __init__(self, message: str = ""):
        super().__init__(message or self.reason)


class JobTimeout(Interrupt):
    reason = "timeout"


class JobCancelled(Interrupt):
    reason = "cancelled"


class ShutdownInterrupt(Interrupt):
    reason = "interrupted by shutdown"


class Deferred(Exception):
    """Not run now (e.g. its router is locked): back to the queue after `delay` seconds,
    without using up a try."""

    def __init__(self, delay: float, reason: str):
        super().__init__(reason)
        self.delay = delay


class PermanentFailure(Exception):
    """Retrying cannot help (bad input found by the handler): fail without more tries."""


class JobContext:
    """Per-run handle passed to a handler as its only argument."""

    def __init__(self, job: Job, job_type: JobType, enqueue: Callable[..., Any],
                 report_progress: Callable[[int, int | None], None],
                 config: Config | None = None):
        self.job_id = job.id
        self.type = job_type.name
        self.args = job.args_dict
        self.router = job.router
        self.attempt = job.attempt
        self.tries = job.tries
        self.queue = job.queue
        self.job_type = job_type
        self.config = config
        self.deadline = time.monotonic() + job.timeout
        self.log = logger.bind(job=job.id, type=job_type.name, router=job.router)
        self.interruption: Interrupt | None = None
        self.wake = threading.Event()
        self._enqueue = enqueue
        self._report_progress = report_progress
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._last_progress = 0.0

    def time_left(self) -> float:
        """Seconds until this run's deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def progress(self, done: int, total: int | None = None) -> None:
        """Report progress; written to the ledger at most once a second (and at the end)."""
        now = time.monotonic()
        if now - self._last_progress >= 1.0 or (total is not None and done >= total):
            self._last_progress = now
            self._report_progress(done, total)

    def enqueue(self, type_name: str, args: dict[str, Any] | None = None, *,
                router: str | None = None, **options: Any) -> int:
        """Chain a follow-up job; it records this job as its parent. Returns its id."""
        return self._enqueue(type_name, args, router=router, source="chain",
                             parent=self.job_id, **options).job.id

    def routers(self) -> list[RouterConfig]:
        """This job's router, or every enabled router when it names none."""
        if self.config is None:
            raise RuntimeError("this context has no config")
        if self.router is not None:
            return [self.config.router(self.router)]
        return [router for router in self.config.routers if router.enabled]

    def check(self) -> None:
        """Raise if this run was timed out or cancelled (for long loops)."""
        if self.interruption is not None:
            raise self.interruption

    def on_cancel(self, close: Callable[[], None]) -> None:
        """Register `close` (e.g. a socket shutdown) to run when this run is interrupted."""
        with self._lock:
            if self.interruption is None:
                self._closers.append(close)
                return
        _quietly(close)

    def interrupt(self, reason: Interrupt) -> None:
        """Mark this run interrupted and close what it registered (called from outside)."""
        with self._lock:
            if self.interruption is not None:
                return
            self.interruption = reason
            closers, self._closers = self._closers, []
        self.wake.set()
        for close in closers:
            _quietly(close)


def _quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except Exception as exc:  # a half-closed socket may complain; the job is over anyway
        logger.debug("closing an interrupted job's resource failed: {}", exc)
