"""Pickup latency of an idle daemon: enqueue (from another process) → job started.

A real `ispqueue run` on a fresh temporary installation sits idle (default 15 s, so Huey's
poll delay has grown to its ceiling), then `ispqueue enqueue system.canary` runs as a
separate process, `--tries` times with at least `--gap` seconds of idle between. The
latency is the ledger's `started_at - enqueued_at` (both written on this host's clock).
Prints p50 / p95 (nearest rank) and the worst; target p95 <= 0.25 s.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon_process import start_daemon, write_config

TARGET_P95_SECONDS = 0.25




def enqueue_canary(config_path: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "ispqueue", "--config", str(config_path), "enqueue",
         "system.canary"], capture_output=True, text=True, check=True,
    )
    return int(done.stdout.strip())


def pickup_seconds(job_id: int, timeout: float = 30.0) -> float:
    from ispqueue.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.get_by_id(job_id)
        if job.started_at is not None:
            return (job.started_at - job.enqueued_at).total_seconds()
        time.sleep(0.005)
    raise RuntimeError(f"job {job_id} did not start within {timeout}s")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=15.0, help="idle seconds before the first")
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--gap", type=float, default=1.0, help="idle seconds between tries (>= 1)")
    options = parser.parse_args()

    from ispqueue.config import load_config
    from ispqueue.db import open_database

    with tempfile.TemporaryDirectory(prefix="ispqueue-bench-") as name:
        workdir = Path(name)
        config_path = write_config(workdir)
        daemon = start_daemon(config_path, workdir / "daemon.stderr")
        try:
            db = open_database(load_config(str(config_path)).database_url)
            time.sleep(options.idle)
            latencies = []
            for _ in range(options.tries):
                latencies.append(pickup_seconds(enqueue_canary(config_path)))
                time.sleep(max(1.0, options.gap))
            db.close()
        finally:
            daemon.terminate()
            daemon.wait(60)

    print(f"tries={options.tries}")
    print(f"idle_s={options.idle:g}")
    print(f"first_pickup_s={latencies[0]:.3f}")
    print(f"pickup_p50_s={statistics.median(latencies):.3f}")
    print(f"pickup_p95_s={percentile(latencies, 0.95):.3f}")
    print(f"pickup_max_s={max(latencies):.3f}")
    print(f"target_p95_s={TARGET_P95_SECONDS}")


if __name__ == "__main__":
    main()
