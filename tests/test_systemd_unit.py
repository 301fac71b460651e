"""The shipped systemd unit: how it stops, and how exposed it is."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "ispqueue.service"
DEFAULT_GRACE_SECONDS = 30
MAX_EXPOSURE = 2.0


def service_settings() -> dict[str, list[str]]:
    """[Service] keys → values in file order (systemd allows a key more than once)."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_is_notify_with_a_watchdog():
    settings = service_settings()
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert int(settings["WatchdogSec"][-1]) > 0


def test_unit_stops_with_sigterm_and_waits_longer_than_the_grace():
    settings = service_settings()
    assert settings["KillSignal"] == ["SIGTERM"]
    assert int(settings["TimeoutStopSec"][-1]) > DEFAULT_GRACE_SECONDS


def test_unit_runs_as_its_own_user_with_the_config_in_etc():
    settings = service_settings()
    assert settings["User"] == ["ispqueue"]
    assert settings["Group"] == ["ispqueue"]
    assert "ISPQUEUE_CONFIG=/etc/ispqueue/config.toml" in settings["Environment"]
    assert settings["ExecStart"][-1].endswith("ispqueue run")


def test_unit_keeps_the_lan_reachable():
    settings = service_settings()
    assert "IPAddressDeny" not in settings
    assert "PrivateNetwork" not in settings
    families = settings["RestrictAddressFamilies"][-1].split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)


def test_unit_exposure_is_at_most_two():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    if found is None and "offline" in done.stderr:
        pytest.skip(f"systemd-analyze cannot analyze offline (systemd 250+): {done.stderr.strip()}")
    assert found, f"no exposure level in output:\n{done.stdout}\n{done.stderr}"
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout
