"""The guarantees that need real daemon processes: kill -9 loses nothing and runs nothing
more often than its tries, SIGTERM lets running jobs finish (or gives them back), concurrent
enqueuers never see "database is locked", a lost queue message is re-sent, systemd hears
ready/stopping, and `enqueue --wait` exits with the job's outcome.

Each daemon is `python -m ispqueue run` on a config file in tmp_path; the test process reads
the ledger (and enqueues) through the same Runtime API the CLI uses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.slow

READY_TIMEOUT = 15.0
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


def write_config(path: Path, *, workers: int = 3, grace: float = 5.0,
                 canary: dict[str, Any] | None = None) -> Path:
    """A config for one installation under path's directory (all paths absolute)."""
    base = path.parent
    lines = [
        "[ispqueue]", f'data_dir = "{base / "data"}"',
        "[queue]", f"grace_seconds = {grace}", "poll_seconds = 1.0",
        "[queue.workers]", f"default = {workers}",
        "[logging]", f'file = "{base / "logs" / "ispqueue.jsonl"}"', 'level = "INFO"',
        "[schedule]", '"system.canary" = false',
    ]
    if canary:
        lines.append('[jobs."system.canary"]')
        lines += [f"{key} = {json.dumps(value)}" for key, value in canary.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class DaemonProcess:
    """One `ispqueue run` child; each start writes its stderr to a file of its own."""

    def __init__(self, config_path: Path, env: dict[str, str] | None = None):
        self.config_path = config_path
        # A test run under systemd must not hand its own notify socket to the children.
        self.env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path: Path | None = None
        self.starts = 0

    def start(self, wait: bool = True) -> DaemonProcess:
        self.starts += 1
        self.stderr_path = self.config_path.parent / f"daemon-{self.starts}.stderr"
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ispqueue", "--config", str(self.config_path), "run"],
                stdout=subprocess.DEVNULL, stderr=err, env=self.env,
            )
        if wait:
            wait_until(lambda: "ispqueue running" in self.stderr(), timeout=READY_TIMEOUT,
                       step=0.05, tick=self._check_alive)
        return self

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.stderr()}")

    def stderr(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def all_stderr(self) -> str:
        files = [self.config_path.parent / f"daemon-{n}.stderr" for n in range(1, self.starts + 1)]
        return "".join(f.read_text(encoding="utf-8", errors="replace") for f in files
                       if f.exists())

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and reap: an unreaped zombie still answers kill(pid, 0), so the next
        daemon would think the runner alive."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            message = f"daemon still running after {timeout}s:\n{self.stderr()}"
        raise AssertionError(message)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Installation:
    """A config file, its data dir, the Runtime of the test process and its daemons."""

    def __init__(self, config_path: Path):
        from ispqueue.config import load_config
        from ispqueue.runtime import Runtime, initialise

        self.config_path = config_path
        self.config = load_config(str(config_path))
        initialise(self.config)
        self.rt = Runtime(self.config)
        self.daemons: list[DaemonProcess] = []

    def daemon(self, env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(self.config_path, env)
        self.daemons.append(daemon)
        return daemon

    def enqueue_canaries(self, count: int, hold: float = 0.0) -> list[int]:
        return [self.rt.enqueue("system.canary", {"hold_seconds": hold}).job.id
                for _ in range(count)]

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ispqueue", "--config", str(self.config_path), *args],
            capture_output=True, text=True, timeout=timeout,
        )

    def log_text(self) -> str:
        path = self.config.logging.file
        return path.read_text(encoding="utf-8") if path and path.exists() else ""

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.stop()
        self.rt.db.close()


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Callable[..., Installation]]:
    made: list[Installation] = []

    def make(**options: Any) -> Installation:
        installation = Installation(write_config(tmp_path / "config.toml", **options))
        made.append(installation)
        return installation

    yield make
    for installation in made:
        installation.close()


# -- ledger reads ---------------------------------------------------------------------------


def jobs_by_id(ids: list[int]) -> dict[int, Any]:
    from ispqueue.models import Job

    return {job.id: job for job in Job.select().where(Job.id.in_(ids))}


def count_status(ids: list[int], *statuses: str) -> int:
    from ispqueue.models import Job

    return Job.select().where(Job.id.in_(ids), Job.status.in_(statuses)).count()


def runs_per_job(ids: list[int]) -> dict[int, int]:
    """How many times each job was claimed (its `running` events)."""
    from ispqueue.models import JobEvent

    runs = dict.fromkeys(ids, 0)
    for event in JobEvent.select().where(JobEvent.job.in_(ids), JobEvent.status == "running"):
        runs[event.job_id] += 1
    return runs


def all_final(ids: list[int]) -> bool:
    return count_status(ids, "succeeded", "failed", "cancelled") == len(ids)


# -- kill -9 ----------------------------------------------------------------------------------


def _kill_with_jobs_in_flight(inst: Installation) -> tuple[list[int], list[int], list[int]]:
    """12 held canaries on 3 workers plus 4 quick ones, kill -9 with 3 running, restart.
    Returns (all ids, the ids that were running at the kill, the ids that were queued)."""
    first = inst.daemon().start()
    held = inst.enqueue_canaries(12, hold=2.0)
    quick = inst.enqueue_canaries(4)
    ids = held + quick
    wait_until(lambda: count_status(ids, "running") == 3)
    first.kill()
    in_flight = [i for i, job in jobs_by_id(ids).items() if job.status == "running"]
    waiting = [i for i, job in jobs_by_id(ids).items() if job.status == "queued"]
    assert len(in_flight) == 3 and len(waiting) == 13
    inst.daemon().start()
    return ids, in_flight, waiting


def test_kill_9_loses_nothing_and_fails_in_flight_jobs_without_tries_left(install):
    inst = install(workers=3)
    ids, in_flight, waiting = _kill_with_jobs_in_flight(inst)

    wait_until(lambda: all_final(ids), timeout=15)
    jobs = jobs_by_id(ids)
    assert set(jobs) == set(ids)
    for job_id in in_flight:
        assert jobs[job_id].status == "failed"
        assert "worker died" in jobs[job_id].error
    for job_id in waiting:
        assert jobs[job_id].status == "succeeded", jobs[job_id].error
    runs = runs_per_job(ids)
    assert all(runs[i] <= jobs[i].tries for i in ids), runs
    assert all(runs[i] == 1 for i in ids), runs


def test_kill_9_re_runs_in_flight_jobs_that_have_tries_left(install):
    inst = install(workers=3, canary={"tries": 2})
    ids, in_flight, _ = _kill_with_jobs_in_flight(inst)

    wait_until(lambda: all_final(ids), timeout=15)
    jobs = jobs_by_id(ids)
    assert {job.status for job in jobs.values()} == {"succeeded"}
    for job_id in in_flight:
        assert jobs[job_id].attempt == 2
    runs = runs_per_job(ids)
    assert all(runs[i] <= jobs[i].tries for i in ids), runs
    assert [i for i in ids if runs[i] == 2] == sorted(in_flight)


def test_sweep_leaves_alone_a_job_this_process_is_just_starting(runtime, daemon, monkeypatch):
    """In process, to hit on purpose what the restarts above hit by chance: the supervisor's
    first sweep runs while the fresh workers claim jobs. Between a worker's claim and the
    executor listing the run as in flight (a log write, a thread switch) the row says
    "running here" and the executor does not know it yet; a sweep then must not take the
    job for one of a dead worker."""
    import ispqueue.executor as executor_module

    claimed, swept = threading.Event(), threading.Event()
    real_context = executor_module.JobContext

    class PausedContext(real_context):
        def __init__(self, *args: Any, **kwargs: Any):
            claimed.set()
            swept.wait(5)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(executor_module, "JobContext", PausedContext)
    job_id = runtime.enqueue("system.canary", {}).job.id
    assert claimed.wait(5)
    daemon.sweep()
    swept.set()

    wait_until(lambda: all_final([job_id]))
    job = runtime.ledger.get(job_id)
    assert job.status == "succeeded", job.error
    assert runs_per_job([job_id]) == {job_id: 1}


# -- SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_lets_the_running_job_finish(install):
    inst = install(workers=3, grace=5.0)
    daemon = inst.daemon().start()
    [job_id] = inst.enqueue_canaries(1, hold=1.5)
    wait_until(lambda: count_status([job_id], "running"))

    stopped_at = time.monotonic()
    daemon.terminate()
    assert daemon.wait(inst.config.queue.grace_seconds + 3) == 0
    assert time.monotonic() - stopped_at < inst.config.queue.grace_seconds
    job = jobs_by_id([job_id])[job_id]
    assert job.status == "succeeded", job.error
    assert runs_per_job([job_id]) == {job_id: 1}


def test_sigterm_gives_back_a_job_longer_than_grace_and_the_next_start_runs_it(install):
    inst = install(workers=3, grace=1.0)
    first = inst.daemon().start()
    [job_id] = inst.enqueue_canaries(1, hold=10.0)
    wait_until(lambda: count_status([job_id], "running"))

    stopped_at = time.monotonic()
    first.terminate()
    assert first.wait(6) == 0
    assert time.monotonic() - stopped_at < 4.0  # grace 1 s, then the interrupt
    job = jobs_by_id([job_id])[job_id]
    assert (job.status, job.attempt) == ("queued", 0)

    restarted_at = time.monotonic()
    inst.daemon().start()
    # The given-back job must not wait for the sweeper's lost-message window (30 s).
    wait_until(lambda: count_status([job_id], "running", "succeeded"), timeout=5)
    assert time.monotonic() - restarted_at < 5
    wait_until(lambda: count_status([job_id], "succeeded"), timeout=15)
    job = jobs_by_id([job_id])[job_id]
    assert job.attempt == 1
    assert runs_per_job([job_id]) == {job_id: 2}  # interrupted once, then ran to the end


# -- concurrent enqueuers -----------------------------------------------------------------------

ENQUEUER = """
import json, sys, time
from ispqueue.config import load_config
from ispqueue.observability.logs import setup_logging
from ispqueue.runtime import Runtime

config = load_config(sys.argv[1])
setup_logging(config.logging, config.secrets(), stderr=True)
rt = Runtime(config)
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all four start together
ids = [rt.enqueue("system.canary", source="api").job.id for _ in range(int(sys.argv[2]))]
print(json.dumps(ids))
"""


def test_four_concurrent_enqueuers_never_see_a_locked_database(install):
    inst = install(workers=3)
    daemon = inst.daemon().start()
    start_at = time.time() + 1.5  # past every child's imports
    children = [
        subprocess.Popen([sys.executable, "-c", ENQUEUER, str(inst.config_path), "100",
                          str(start_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(4)
    ]
    ids: list[int] = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err[-3000:]
        assert "database is locked" not in err
        ids += json.loads(out)

    assert len(ids) == len(set(ids)) == 400
    wait_until(lambda: count_status(ids, "succeeded") == 400, timeout=30)
    daemon.terminate()
    assert daemon.wait(10) == 0
    assert "database is locked" not in daemon.all_stderr()
    assert "database is locked" not in inst.log_text()
    assert set(runs_per_job(ids).values()) == {1}


# -- lost queue message -----------------------------------------------------------------------


def test_start_up_sweep_re_sends_a_queued_row_whose_message_never_arrived(install):
    from ispqueue.db import utcnow
    from ispqueue.ledger import NewJob
    from ispqueue.models import Job

    inst = install(workers=3)
    job, created = inst.rt.ledger.insert(NewJob(
        type="system.canary", args={"queue": "default", "hold_seconds": 0.0}, queue="default",
        priority=0, tries=1, timeout=60.0,
    ))
    assert created and job.status == "queued"
    long_ago = utcnow() - dt.timedelta(seconds=60)
    Job.update(enqueued_at=long_ago, queued_at=long_ago).where(Job.id == job.id).execute()
    assert inst.rt.queues.pending_ids("default") == set()

    inst.daemon().start()
    wait_until(lambda: count_status([job.id], "succeeded"), timeout=5)
    assert f"job {job.id} had no queue message; sent again" in inst.log_text()
    assert runs_per_job([job.id]) == {job.id: 1}


# -- systemd notify ---------------------------------------------------------------------------


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    """A datagram socket like systemd's; abstract when tmp_path is too long for sun_path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    if len(path) < 100:
        sock.bind(path)
        return sock, path
    name = f"ispqueue-test-{os.getpid()}-{time.monotonic_ns()}"
    sock.bind("\0" + name)
    return sock, "@" + name


def _receive_until(sock: socket.socket, wanted: str, seen: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(wanted in message.splitlines() for message in seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {wanted} within {timeout}s; got {seen}")
        sock.settimeout(left)
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue


def test_sd_notify_ready_watchdog_and_stopping(install, tmp_path):
    inst = install(workers=3)
    sock, address = _notify_socket(tmp_path)
    with sock:
        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}
        daemon = inst.daemon(env).start(wait=False)
        seen: list[str] = []
        _receive_until(sock, "READY=1", seen, READY_TIMEOUT)
        assert "ispqueue running" in daemon.stderr()  # ready only once consuming
        _receive_until(sock, "WATCHDOG=1", seen, 3.0)
        assert not any("STOPPING=1" in m for m in seen)

        daemon.terminate()
        _receive_until(sock, "STOPPING=1", seen, 5.0)
        assert daemon.wait(10) == 0
    lines = [line for message in seen for line in message.splitlines()]
    assert lines.index("READY=1") < lines.index("STOPPING=1")


# -- enqueue --wait exit codes -----------------------------------------------------------------


def test_enqueue_wait_exits_0_when_the_job_succeeds(install):
    inst = install(workers=3)
    inst.daemon().start()
    done = inst.cli("enqueue", "system.canary", "--arg", "hold_seconds=0.2", "--wait",
                    "--timeout", "20")
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout


def test_enqueue_wait_exits_1_when_the_job_times_out(install):
    inst = install(workers=3, canary={"timeout": 0.5})
    inst.daemon().start()
    done = inst.cli("enqueue", "system.canary", "--arg", "hold_seconds=2", "--wait",
                    "--timeout", "20")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed" in done.stdout
    assert "timed out after 0.5s" in done.stdout
