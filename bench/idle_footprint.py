"""Memory and CPU of an idle daemon, beside a bare Huey consumer measured in the same window.

A real `ispqueue run` on a fresh temporary installation (every queue with its default
workers, the canary schedule off so nothing runs) and, as the baseline, a bare SqliteHuey
consumer with as many thread workers (huey's default polling) start together, sit idle
(default 30 s), and are then read from /proc: RSS from VmRSS in /proc/PID/status, CPU as
utime+stime from /proc/PID/stat over a window (default 10 s), in percent of one core.
Targets for ispqueue: RSS <= 60 MB, CPU <= 0.5 %.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon_process import start_daemon, write_config

TARGET_RSS_MB = 60.0
TARGET_CPU_PERCENT = 0.5

BARE_CONSUMER = """
import sys, threading
from huey import SqliteHuey
huey = SqliteHuey("bench", filename=sys.argv[1], results=False)

@huey.task()
def noop():
    return None

consumer = huey.create_consumer(workers=int(sys.argv[2]), worker_type="thread",
                                periodic=False)
consumer.start()
print("ready", flush=True)
threading.Event().wait()
"""




def start_bare(workdir: Path, workers: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE_CONSUMER, str(workdir / "huey.db"), str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    if proc.stdout is None or proc.stdout.readline().strip() != "ready":
        raise RuntimeError("bare huey consumer did not start")
    return proc


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    # Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(pids: list[int], window: float) -> dict[int, float]:
    before = {pid: cpu_seconds(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    return {pid: 100 * (cpu_seconds(pid) - before[pid]) / elapsed for pid in pids}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds before reading")
    parser.add_argument("--window", type=float, default=10.0, help="CPU window in seconds")
    options = parser.parse_args()

    from ispqueue.config import load_config

    with tempfile.TemporaryDirectory(prefix="ispqueue-bench-") as name:
        workdir = Path(name)
        config_path = write_config(workdir)
        workers = sum(load_config(str(config_path)).queue.workers.values())
        daemon = start_daemon(config_path, workdir / "daemon.stderr")
        bare = start_bare(workdir, workers)
        try:
            time.sleep(options.idle)
            cpu = cpu_percent([daemon.pid, bare.pid], options.window)
            rss = {pid: rss_mb(pid) for pid in (daemon.pid, bare.pid)}
        finally:
            bare.kill()
            bare.wait(10)
            daemon.terminate()
            daemon.wait(60)

    print(f"idle_s={options.idle:g}")
    print(f"window_s={options.window:g}")
    print(f"workers={workers}")
    print(f"bare_rss_mb={rss[bare.pid]:.1f}")
    print(f"bare_cpu_percent={cpu[bare.pid]:.2f}")
    print(f"rss_mb={rss[daemon.pid]:.1f}")
    print(f"cpu_percent={cpu[daemon.pid]:.2f}")
    print(f"rss_ratio={rss[daemon.pid] / rss[bare.pid]:.2f}")
    print(f"target_rss_mb={TARGET_RSS_MB:g}")
    print(f"target_cpu_percent={TARGET_CPU_PERCENT:g}")


if __name__ == "__main__":
    main()
