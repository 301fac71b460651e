"""`ispqueue run`: the supervisor of one process.

It owns the signals and runs, next to the Huey consumers (one per named queue), a one-second
loop that does everything periodic: promote due scheduled/retrying jobs, fire `[schedule]`
entries at each new minute, heartbeat the jobs in flight and act on cancel requests, sweep
for jobs left by dead runners and for lost queue messages, keep the consumers' workers alive,
and ping the systemd watchdog.

SIGTERM / SIGINT: stop taking jobs, let running ones finish for up to `grace_seconds`, then
interrupt what is left (re-queued without using a try) and exit 0. A second signal skips
the grace.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable

from loguru import logger

from ispqueue.config import QUEUES
from ispqueue.context import JobCancelled, ShutdownInterrupt
from ispqueue.db import utcnow
from ispqueue.errors import BadInput
from ispqueue.models import Job
from ispqueue.runtime import Runtime
from ispqueue.schedule import CronScheduler
from ispqueue.services.fleet import mirror_routers

HEARTBEAT_SECONDS = 5.0
SWEEP_SECONDS = 15.0
STALE_AFTER_SECONDS = 60.0  # a runner on another host is dead after this without heartbeat
LOST_AFTER_SECONDS = 30.0  # a queued row this old without a queue message gets a new one
STARTUP_LOST_AFTER_SECONDS = 2.0
HEALTH_SECONDS = 10.0
PRUNE_SECONDS = 3600.0


class Daemon:
    """Consumers for the chosen queues plus the supervisor loop."""

    def __init__(self, runtime: Runtime, queues: Iterable[str] | None = None,
                 scheduler: bool = True):
        self.rt = runtime
        self.queue_names = check_queue_names(queues) if queues else QUEUES
        self.scheduler = CronScheduler(runtime) if scheduler else None
        self.executor = runtime.executor
        self.consumers: dict[str, object] = {}
        self.stop_requested = threading.Event()
        self.hurry = False
        self._bells_stop = threading.Event()
        self._due: dict[str, float] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Recover what a previous run left, then start consuming."""
        mirror_routers(self.rt.config)
        # Nothing of this process is mid-send yet, so any queued row without a message is lost
        # (a duplicate from a command sending right now is dropped at claim).
        self.sweep(lost_after=STARTUP_LOST_AFTER_SECONDS)
        workers = self.rt.config.queue.workers
        for name in self.queue_names:
            if workers[name] > 0:
                consumer = self.rt.queues.consumer(name, workers[name])
                consumer.start()
                self.consumers[name] = consumer
        self.rt.queues.listen_for_bells(self._bells_stop)
        logger.info("ispqueue running: queues {} ({} workers), scheduler {}",
                    ", ".join(self.consumers), sum(workers[q] for q in self.consumers),
                    "on" if self.scheduler else "off")
        sd_notify("READY=1", f"STATUS=running {len(self.consumers)} queues")

    def run_forever(self) -> int:
        """Start, tick until a signal, shut down; the exit code."""
        self._install_signals()
        self.start()
        while not self.stop_requested.is_set():
            self.tick()
            self.stop_requested.wait(1.0 - time.time() % 1.0)
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        sd_notify("STOPPING=1", "STATUS=finishing running jobs")
        self.executor.closing = True
        for consumer in self.consumers.values():
            consumer.stop_flag.set()
        for bell in self.rt.queues.doorbells.values():
            bell.ring()
        grace = 0.0 if self.hurry else self.rt.config.queue.grace_seconds
        logger.info("stopping: {} job(s) running, up to {:g}s to finish",
                    len(self.executor.running()), grace)
        self._wait_for_running(time.monotonic() + grace)
        for ctx in self.executor.running():
            ctx.interrupt(ShutdownInterrupt())
        self._wait_for_running(time.monotonic() + 5.0)
        for consumer in self.consumers.values():
            for _, thread in consumer.worker_threads:
                thread.join(0.5)
        self._bells_stop.set()
        logger.info("ispqueue stopped")

    def _wait_for_running(self, deadline: float) -> None:
        beat = 0.0
        while self.executor.busy_ids() and time.monotonic() < deadline:
            if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                beat = time.monotonic()
                self.heartbeat()
            time.sleep(0.05)

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            if self.stop_requested.is_set():
                self.hurry = True
            self.stop_requested.set()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    # -- the one-second loop --------------------------------------------------------------

    def tick(self) -> None:
        """One pass of the supervisor loop; each duty runs when its interval is due."""
        self._every("promote", 1.0, self.promote)
        if self.scheduler is not None:
            self._every("schedule", 1.0, lambda: self.scheduler.fire(utcnow()))
        self._every("heartbeat", HEARTBEAT_SECONDS, self.heartbeat)
        self._every("sweep", SWEEP_SECONDS, self.sweep)
        self._every("health", HEALTH_SECONDS, self.check_workers)
        self._every("prune", PRUNE_SECONDS, self.prune)
        self._every("watchdog", watchdog_interval(), lambda: sd_notify("WATCHDOG=1"))

    def _every(self, name: str, seconds: float, duty: object) -> None:
        now = time.monotonic()
        if now < self._due.get(name, 0.0):
            return
        self._due[name] = now + seconds
        try:
            duty()
        except Exception:
            logger.exception("supervisor duty {} failed; trying again next time", name)

    def promote(self) -> None:
        for job in self.rt.ledger.promote_due():
            self.rt.send(job)

    def heartbeat(self) -> None:
        running = [ctx.job_id for ctx in self.executor.running()]
        self.rt.ledger.heartbeat(running)
        for job_id in self.rt.ledger.cancel_requests(running):
            self.executor.interrupt(job_id, JobCancelled("cancelled by hand"))

    def sweep(self, lost_after: float = LOST_AFTER_SECONDS) -> None:
        """Recover jobs of dead runners, re-send lost messages, free orphaned router locks."""
        busy = self.executor.busy_ids
        for job in self.rt.ledger.recover_dead(pid_alive, STALE_AFTER_SECONDS, busy):
            self.rt.send(job)
        self._resend_lost(lost_after)
        self._free_orphaned_locks()
        if self.scheduler is not None:
            self.scheduler.prune()

    def _resend_lost(self, lost_after: float) -> None:
        waiting = self.rt.ledger.unsent(lost_after)
        pending: dict[str, set[int]] = {}
        for job in waiting:
            if job.queue not in pending:
                pending[job.queue] = self.rt.queues.pending_ids(job.queue)
            if job.id not in pending[job.queue]:
                logger.warning("job {} had no queue message; sent again", job.id)
                self.rt.ledger.touch_queued(job)
                self.rt.send(job)

    def _free_orphaned_locks(self) -> None:
        locks = self.rt.queues.locks
        for key, holder in locks.held().items():
            job_id, _, attempt = holder.partition(":")
            job = Job.get_or_none(Job.id == int(job_id)) if job_id.isdigit() else None
            if job is None or job.status != "running" or str(job.attempt) != attempt:
                logger.warning("freed lock {} left by job {}", key, job_id)
                locks.force_release(key)

    def prune(self) -> int:
        """Delete finished jobs older than `[ispqueue] keep_finished_days` (0: keep all)."""
        days = self.rt.config.keep_finished_days
        if not days:
            return 0
        deleted = self.rt.ledger.prune(dt.timedelta(days=days))
        if deleted:
            logger.info("pruned {} finished job(s) older than {} days", deleted, days)
        return deleted

    def check_workers(self) -> None:
        for consumer in self.consumers.values():
            consumer.check_worker_health()


def check_queue_names(names: Iterable[str]) -> tuple[str, ...]:
    """The named queues, checked; BadInput naming any unknown one."""
    chosen = tuple(n.strip() for n in names if n.strip())
    unknown = sorted(set(chosen) - set(QUEUES))
    if unknown or not chosen:
        raise BadInput(f"unknown queue(s): {', '.join(unknown) or '(none given)'} "
                       f"(queues: {', '.join(QUEUES)})")
    return chosen


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watchdog_interval() -> float:
    usec = os.environ.get("WATCHDOG_USEC", "")
    return int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else 3600.0


def sd_notify(*lines: str) -> None:
    """Tell systemd about our state when it runs us as Type=notify; otherwise nothing."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(lines).encode(), address)
    except OSError as exc:
        logger.warning("sd_notify failed: {}", exc)
