"""Jobs per second through ispqueue against bare SqliteHuey, on the same machine in one run.

Baseline: a fresh `SqliteHuey` (library defaults) with N no-op tasks enqueued, then a huey
`Consumer(workers=2, worker_type="thread")` draining them; the clock runs from the
consumer's start to the N-th SIGNAL_COMPLETE. ispqueue: a fresh installation, N
`system.canary` jobs enqueued through `Runtime.enqueue`, then an in-process `Daemon` with
2 workers on `default` draining them while its supervisor ticks, logging to the JSON file
at INFO as in production (stderr off); the clock runs from `Daemon.start()` to the N-th
finished run. Rounds alternate bare / ispqueue so drift hits both alike; each side's
median is printed, and the ratio of the medians. The enqueue rates are printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from huey import SqliteHuey
from huey.signals import SIGNAL_COMPLETE

TARGET_RATIO = 0.7


def bare_round(n: int, workdir: Path) -> tuple[float, float]:
    """(enqueue/s, drain/s) of bare SqliteHuey with two thread workers."""
    huey = SqliteHuey("bench", filename=str(workdir / "huey.db"), results=False)

    @huey.task()
    def noop() -> None:
        return None

    done, finished = [0], threading.Event()
    lock = threading.Lock()

    @huey.signal(SIGNAL_COMPLETE)
    def completed(signal: str, task: Any) -> None:
        with lock:
            done[0] += 1
            if done[0] == n:
                finished.set()

    started = time.perf_counter()
    for _ in range(n):
        noop()
    enqueue_rate = n / (time.perf_counter() - started)

    consumer = huey.create_consumer(workers=2, worker_type="thread", periodic=False)
    started = time.perf_counter()
    consumer.start()
    if not finished.wait(600):
        raise RuntimeError(f"bare huey finished only {done[0]} of {n}")
    drain_rate = n / (time.perf_counter() - started)
    consumer.stop(graceful=True)
    huey.storage.close()
    return enqueue_rate, drain_rate


def ispqueue_config(workdir: Path) -> Any:
    from ispqueue.config import parse_config

    return parse_config({
        "ispqueue": {"data_dir": str(workdir / "data")},
        "schedule": {"system.canary": False},
        "logging": {"file": str(workdir / "logs" / "ispqueue.jsonl"), "level": "INFO"},
        "queue": {"workers": {"default": 2}},
    }, workdir / "config.toml")


def ispqueue_round(n: int, workdir: Path) -> tuple[float, float, int]:
    """(enqueue/s, drain/s, jobs that did not succeed) of system.canary through the Runtime
    API and a Daemon."""
    from ispqueue.daemon import Daemon
    from ispqueue.models import Job
    from ispqueue.observability.logs import setup_logging, stop_logging
    from ispqueue.runtime import Runtime, initialise

    config = ispqueue_config(workdir)
    setup_logging(config.logging, config.secrets(), stderr=False)
    initialise(config)
    rt = Runtime(config)

    started = time.perf_counter()
    for _ in range(n):
        rt.enqueue("system.canary")
    enqueue_rate = n / (time.perf_counter() - started)

    daemon = Daemon(rt, queues=("default",), scheduler=False)
    done, finished = [0], threading.Event()
    lock = threading.Lock()
    run_job = rt.queues.run_job

    def counted(job_id: int) -> None:
        run_job(job_id)
        with lock:
            done[0] += 1
            if done[0] == n:
                finished.set()

    rt.queues.run_job = counted
    started = time.perf_counter()
    daemon.start()
    deadline = time.monotonic() + 600
    while not finished.wait(1.0 - time.time() % 1.0):
        daemon.tick()
        if time.monotonic() > deadline:
            raise RuntimeError(f"ispqueue finished only {done[0]} of {n}")
    drain_rate = n / (time.perf_counter() - started)
    daemon.hurry = True
    daemon.shutdown()
    # Every canary should succeed; one that did not is a bug, counted and printed.
    unsuccessful = Job.select().where(Job.status != "succeeded").count()
    rt.db.close()
    stop_logging()
    return enqueue_rate, drain_rate, unsuccessful


def run(side: Any, n: int) -> tuple[float, ...]:
    with tempfile.TemporaryDirectory(prefix="ispqueue-bench-") as workdir:
        return side(n, Path(workdir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()

    run(bare_round, 200)  # warm both sides: imports, first-use caches
    run(ispqueue_round, 200)
    bare: list[tuple[float, ...]] = []
    ours: list[tuple[float, ...]] = []
    for _ in range(options.rounds):
        bare.append(run(bare_round, options.jobs))
        ours.append(run(ispqueue_round, options.jobs))

    bare_enqueue = statistics.median(r[0] for r in bare)
    ours_enqueue = statistics.median(r[0] for r in ours)
    bare_drain = statistics.median(r[1] for r in bare)
    ours_drain = statistics.median(r[1] for r in ours)
    print(f"jobs={options.jobs}")
    print(f"rounds={options.rounds}")
    print(f"bare_enqueue_per_s={bare_enqueue:.0f}")
    print(f"ispqueue_enqueue_per_s={ours_enqueue:.0f}")
    print(f"enqueue_ratio={ours_enqueue / bare_enqueue:.2f}")
    print(f"bare_jobs_per_s={bare_drain:.0f}")
    print(f"ispqueue_jobs_per_s={ours_drain:.0f}")
    print(f"ratio={ours_drain / bare_drain:.2f}")
    print(f"target_ratio={TARGET_RATIO}")
    print(f"ispqueue_jobs_not_succeeded={sum(int(r[2]) for r in ours)}")


if __name__ == "__main__":
    main()
