"""One Huey per named queue (SqliteHuey or PriorityRedisHuey), carrying job ids only.

Huey is the transport: a message is "run job N". The ledger decides whether N still needs
running, so a lost message is re-sent by the sweeper and a duplicate one is dropped at claim.

Pickup latency: Huey's SQLite storage is polled, with the poll delay growing to `max_delay`
while idle. Our workers sleep on a doorbell instead of `time.sleep`: an enqueue in this
process rings it directly, an enqueue from another process (the CLI, the API) sends one
datagram to an abstract Unix socket named after the queue file. The poll remains as a floor
(`[queue] poll_seconds`), so a lost datagram costs at most that long. Redis pops block, so
they need no doorbell.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable
from typing import Any

from huey import PriorityRedisHuey, SqliteHuey
from huey.consumer import Consumer, Worker
from huey.storage import SqliteStorage
from loguru import logger

from ispqueue.config import QUEUES, QueueConfig

LOCKS = "ispqueue-locks"


class NormalSyncSqliteStorage(SqliteStorage):
    """Huey's storage with synchronous=NORMAL: in WAL mode that survives a process crash, and
    what a power loss could drop the ledger re-sends."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("pragma synchronous=1")
        return conn


class LedgerSqliteHuey(SqliteHuey):
    storage_class = NormalSyncSqliteStorage


class Doorbell:
    """Wakes sleeping workers of one queue; `wait` returns early when rung."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._rings = 0

    def ring(self) -> None:
        with self._condition:
            self._rings += 1
            self._condition.notify_all()

    def wait(self, timeout: float) -> None:
        with self._condition:
            seen = self._rings
            self._condition.wait_for(lambda: self._rings != seen, timeout)


class DoorbellWorker(Worker):
    doorbell: Doorbell

    def sleep(self) -> None:
        self.delay = min(self.delay, self.max_delay)
        self.doorbell.wait(self.delay)
        self.delay *= self.backoff


class QueueConsumer(Consumer):
    """A Huey consumer that leaves signals to the daemon and sleeps on a doorbell."""

    worker_class = DoorbellWorker

    def __init__(self, huey: Any, doorbell: Doorbell, **options: Any):
        self.doorbell = doorbell
        super().__init__(huey, **options)

    def _create_worker(self) -> Worker:
        worker = super()._create_worker()
        worker.doorbell = self.doorbell
        return worker

    def _set_signal_handlers(self) -> None:
        pass  # the daemon's supervisor owns every signal


class LockStore:
    """Named locks in the queue storage, so they hold across processes and hosts."""

    def __init__(self, huey: Any):
        self.storage = huey.storage

    def acquire(self, key: str, holder: str) -> str | None:
        """None when acquired; otherwise who holds it."""
        if self.storage.put_if_empty(key, holder.encode()):
            return None
        current = self.storage.peek_data(key)
        return current.decode() if isinstance(current, bytes | memoryview) else "unknown"

    def release(self, key: str, holder: str) -> None:
        current = self.storage.peek_data(key)
        if isinstance(current, bytes | memoryview) and bytes(current).decode() == holder:
            self.storage.delete_data(key)

    def held(self) -> dict[str, str]:
        return {k: bytes(v).decode() for k, v in self.storage.result_items().items()}

    def force_release(self, key: str) -> None:
        self.storage.delete_data(key)


class QueueSet:
    """The named queues of one installation, and how to send job ids to them."""

    def __init__(self, config: QueueConfig, run_job: Callable[[int], None] | None = None):
        self.config = config
        self.hueys = {name: self._huey(name) for name in QUEUES}
        self.locks = LockStore(self._huey(LOCKS))
        self.doorbells = {name: Doorbell() for name in QUEUES}
        self.run_job = run_job
        self.tasks = {name: self._register(huey) for name, huey in self.hueys.items()}
        self._bell_address = _bell_address(config)

    def _huey(self, name: str) -> Any:
        if self.config.backend == "redis":
            return PriorityRedisHuey(f"ispqueue.{name}", url=self.config.url, results=False)
        self.config.path.parent.mkdir(parents=True, exist_ok=True)
        return LedgerSqliteHuey(name, filename=str(self.config.path), results=False)

    def _register(self, huey: Any) -> Any:
        def run_job(job_id: int) -> None:
            if self.run_job is None:
                raise RuntimeError("this process does not run jobs")
            self.run_job(job_id)
        run_job.__name__ = "run_job"
        return huey.task(name="ispqueue.run_job")(run_job)

    def send(self, queue: str, job_id: int, priority: int = 0) -> None:
        """Put "run job N" on `queue` and wake its workers, here and in the daemon."""
        self.hueys[queue].enqueue(self.tasks[queue].s(job_id, priority=priority))
        self.doorbells[queue].ring()
        self._ring_remote(queue)

    def pending_ids(self, queue: str) -> set[int]:
        return {task.args[0] for task in self.hueys[queue].pending() if task.args}

    def depth(self, queue: str) -> int:
        return self.hueys[queue].pending_count()

    def consumer(self, queue: str, workers: int) -> QueueConsumer:
        return QueueConsumer(
            self.hueys[queue], self.doorbells[queue], workers=workers, periodic=False,
            initial_delay=0.05, backoff=1.5, max_delay=self.config.poll_seconds,
            # The Huey schedule stays empty (the ledger holds delays); check it rarely.
            scheduler_interval=60, check_worker_health=True, worker_type="thread",
        )

    def _ring_remote(self, queue: str) -> None:
        if self.config.backend != "sqlite":
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(queue.encode(), self._bell_address)
        except OSError:
            pass  # no daemon listening here; its poll will find the job

    def listen_for_bells(self, stop: threading.Event) -> threading.Thread | None:
        """Serve remote doorbell rings until `stop` is set (SQLite backend only)."""
        if self.config.backend != "sqlite":
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self._bell_address)
        except OSError as exc:
            logger.warning("doorbell unavailable ({}); pickup falls back to polling", exc)
            sock.close()
            return None
        sock.settimeout(2.0)
        thread = threading.Thread(target=self._bell_loop, args=(sock, stop), name="doorbell",
                                  daemon=True)
        thread.start()
        return thread

    def _bell_loop(self, sock: socket.socket, stop: threading.Event) -> None:
        with sock:
            while not stop.is_set():
                try:
                    name = sock.recv(64).decode(errors="replace")
                except TimeoutError:
                    continue
                if name in self.doorbells:
                    self.doorbells[name].ring()


def _bell_address(config: QueueConfig) -> str:
    # Abstract socket: no file to clean up or to own; one name per queue database.
    digest = hashlib.sha1(str(config.path.resolve()).encode()).hexdigest()[:16]
    return f"\0ispqueue-{digest}"
