"""A real `ispqueue run` in a subprocess, for the benchmarks that time a daemon."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def write_config(workdir: Path) -> Path:
    path = workdir / "config.toml"
    path.write_text(
        f'[ispqueue]\ndata_dir = "{workdir / "data"}"\n'
        f'[logging]\nfile = "{workdir / "logs" / "ispqueue.jsonl"}"\n'
        '[schedule]\n"system.canary" = false\n',
        encoding="utf-8",
    )
    return path


def start_daemon(config_path: Path, stderr_path: Path) -> subprocess.Popen[bytes]:
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ispqueue", "--config", str(config_path), "run"],
            stdout=subprocess.DEVNULL, stderr=err,
        )
    deadline = time.monotonic() + 30
    while "ispqueue running" not in stderr_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"daemon did not start:\n{stderr_path.read_text()}")
        time.sleep(0.05)
    return proc
