"""Cross-cutting concerns as small wrappers around a handler.

A run middleware is `mw(ctx, call_next) -> result`; `chain()` nests them, first = outermost.
An enqueue middleware is `mw(request, call_next) -> (job, created)`.

Order matters: the router lock sits outside the deadline so that a run abandoned after its
timeout still releases the lock from the worker thread, while the handler's own sockets are
closed by the interruption.

Timeouts (`Deadline`): Huey's thread workers cannot stop a running task, and a process per job
would cost a fork and 30 MB per worker on a small box. So the handler runs on a job thread
(one per worker, reused) while the worker thread waits on it with the deadline. When the
deadline passes (or a cancel or shutdown arrives) the worker: marks the context interrupted,
which closes every resource the job registered with `ctx.on_cancel` (router sockets: a
blocked `recv` returns at once); raises the interruption inside the job thread
(PyThreadState_SetAsyncExc, which lands at the next bytecode, so pure-Python loops stop too);
and returns to record the timeout and serve the next job without waiting. A handler stuck in
C code that registered nothing keeps its thread until the call returns; it is abandoned (a
daemon thread, logged), and anything it later tries to record is fenced off by the ledger's
attempt check. A job thread that was interrupted is never reused.
"""

from __future__ import annotations

import contextvars
import ctypes
import queue
import random
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from loguru import logger

from ispqueue.context import Deferred, Interrupt, JobContext, JobTimeout

Handler = Callable[[JobContext], Any]
RunMiddleware = Callable[[JobContext, Handler], Any]

# How long an interrupted job thread gets to unwind before the worker moves on.
UNWIND_SECONDS = 0.2


def chain(middlewares: Sequence[RunMiddleware], handler: Handler) -> Handler:
    """Wrap `handler` in `middlewares`, the first one outermost."""
    call = handler
    for middleware in reversed(middlewares):
        call = partial(middleware, call_next=call)
    return call


class LogContext:
    """Every log line written during the run carries the job id, type and router (the
    ledger times the run and logs its transitions)."""

    def __call__(self, ctx: JobContext, call_next: Handler) -> Any:
        with logger.contextualize(job=ctx.job_id, type=ctx.type, router=ctx.router):
            return call_next(ctx)


class RouterLock:
    """Jobs that write to a router hold its lock; a taken lock defers the job, never blocks."""

    def __init__(self, locks: Any, retry_seconds: float = 5.0):
        self.locks = locks
        self.retry_seconds = retry_seconds

    def __call__(self, ctx: JobContext, call_next: Handler) -> Any:
        if not (ctx.job_type.policy.router_lock and ctx.router):
            return call_next(ctx)
        key = f"router:{ctx.router}"
        holder = f"{ctx.job_id}:{ctx.attempt}"
        taken_by = self.locks.acquire(key, holder)
        if taken_by is not None:
            delay = self.retry_seconds * (1 + random.random() / 2)
            raise Deferred(delay, f"router {ctx.router} is locked by job {taken_by.split(':')[0]}")
        try:
            return call_next(ctx)
        finally:
            self.locks.release(key, holder)


class Deadline:
    """Runs the handler on a job thread and gives up on it at the deadline (see above)."""

    def __init__(self) -> None:
        self._runners = threading.local()

    def __call__(self, ctx: JobContext, call_next: Handler) -> Any:
        runner = self._runner()
        run = runner.submit(call_next, ctx)
        while not run.finished.is_set() and ctx.interruption is None:
            if not ctx.wake.wait(ctx.time_left()):
                ctx.interrupt(JobTimeout(f"timed out after {ctx.job_type.policy.timeout:g}s"))
        if run.finished.is_set():
            return run.outcome()
        return self._abandon(ctx, runner, run)

    def _runner(self) -> JobThread:
        # One job thread per worker, reused: starting a thread per job costs more than a
        # small job itself. A job thread that had to be abandoned is replaced.
        runner = getattr(self._runners, "current", None)
        if runner is None or not runner.usable():
            runner = self._runners.current = JobThread()
        return runner

    def _abandon(self, ctx: JobContext, runner: JobThread, run: JobRun) -> Any:
        interruption = ctx.interruption
        assert interruption is not None
        raise_in_thread(runner.thread, type(interruption))
        # Never reuse a thread that was sent an interruption: it may land late.
        runner.retire()
        if not run.finished.wait(UNWIND_SECONDS):
            ctx.log.warning("job thread is still blocked after {}; abandoned",
                            interruption.reason)
        raise interruption


class JobRun:
    """One handler call handed to a job thread, and its outcome."""

    def __init__(self, call: Callable[[], Any], ctx: JobContext):
        self.call = call
        self.ctx = ctx
        self.finished = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def execute(self) -> None:
        try:
            self.value = self.call()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()
            self.ctx.wake.set()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class JobThread:
    """A daemon thread that runs handler calls one at a time."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[JobRun | None] = queue.SimpleQueue()
        self.retired = False
        self.thread = threading.Thread(target=self._serve, name="job", daemon=True)
        self.thread.start()

    def submit(self, call_next: Handler, ctx: JobContext) -> JobRun:
        context = contextvars.copy_context()
        run = JobRun(partial(context.run, call_next, ctx), ctx)
        self.inbox.put(run)
        return run

    def usable(self) -> bool:
        return not self.retired and self.thread.is_alive()

    def retire(self) -> None:
        """Stop after the current call, whenever that returns."""
        self.retired = True
        self.inbox.put(None)

    def _serve(self) -> None:
        while (run := self.inbox.get()) is not None:
            try:
                run.execute()
            except Interrupt:
                return  # it landed after the handler returned; this thread is retired anyway


def raise_in_thread(thread: threading.Thread, exc_type: type[Interrupt]) -> None:
    """Schedule `exc_type` to be raised in `thread` at its next bytecode."""
    if thread.ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
    )


def retry_delay(backoff: Sequence[float], attempt: int, jitter: float = 0.1,
                rng: random.Random | None = None) -> float:
    """Seconds before retry after failed `attempt` (1-based): the backoff list's value for
    that attempt (the last one repeats) plus up to `jitter` of it at random."""
    if not backoff:
        return 0.0
    base = backoff[min(attempt, len(backoff)) - 1]
    return base + base * jitter * (rng or random).random()
