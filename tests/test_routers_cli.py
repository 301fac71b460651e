"""`ispqueue routers list | check` and `ispqueue sim-router`, against simulated routers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ispqueue.cli import main
from ispqueue.config import DEFAULT_SCHEDULE, RouterConfig, load_config
from ispqueue.observability.logs import stop_logging
from ispqueue.routeros.client import RouterClient
from ispqueue.routeros.sim import RouterSim
from ispqueue.runtime import Runtime

PASSWORD = "Cl1-routers-Secret"
READY = re.compile(r"^RouterOS API simulator on 127\.0\.0\.1:(\d+) \(user (\S+)\)$")


@pytest.fixture(autouse=True)
def no_sinks_left() -> Iterator[None]:
    yield
    stop_logging()  # the CLI sets up its log sinks in this process


@pytest.fixture
def sims() -> Iterator[dict[str, RouterSim]]:
    running = {"core-1": RouterSim(password=PASSWORD, identity="core-1").start(),
               "gone-1": RouterSim(password=PASSWORD, identity="gone-1").start()}
    running["gone-1"].faults.refuse = True
    yield running
    for sim in running.values():
        sim.stop()


def write_config(tmp_path: Path, routers: dict[str, dict[str, Any]]) -> Path:
    lines = [f'[ispqueue]\ndata_dir = "{tmp_path / "data"}"\n', "[schedule]"]
    lines += [f'"{name}" = false' for name in DEFAULT_SCHEDULE]
    lines.append(f'\n[logging]\nfile = "{tmp_path / "logs" / "ispqueue.jsonl"}"\n')
    for name, values in routers.items():
        lines.append(f'[[routers]]\nname = "{name}"\nhost = "127.0.0.1"')
        lines += [f"{key} = {json.dumps(value)}" for key, value in
                  {"username": "admin", "password": PASSWORD, "timeout": 2, **values}.items()]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def conf(tmp_path: Path, sims: dict[str, RouterSim]) -> Path:
    return write_config(tmp_path, {
        "core-1": {"port": sims["core-1"].port, "identity": "core-1"},
        "gone-1": {"port": sims["gone-1"].port},
        "wrongpw-1": {"port": sims["core-1"].port, "password": "nope"},
    })


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_list_shows_each_router_and_its_last_check(conf: Path) -> None:
    assert cli("--config", str(conf), "init").exit_code == 0
    before = cli("--config", str(conf), "routers", "list")
    assert before.exit_code == 0
    assert before.stdout.split("\n")[0].split() == [
        "NAME", "ADDRESS", "TLS", "ENABLED", "STATUS", "LATENCY", "VERSION", "CHECKED", "REASON"]
    assert "never" in before.stdout

    runtime = Runtime(load_config(str(conf)))
    job = runtime.enqueue("router.health").job
    runtime.executor.run(job.id)
    runtime.db.close()

    listed = cli("--config", str(conf), "routers", "list", "--json")
    assert listed.exit_code == 0
    found = {row["name"]: row for row in json.loads(listed.stdout)}
    assert list(found) == ["core-1", "gone-1", "wrongpw-1"]
    core = found["core-1"]
    assert (core["status"], core["version"], core["identity"], core["enabled"], core["tls"]) == (
        "online", "7.16 (stable)", "core-1", True, False)
    assert core["latency_ms"] is not None and core["checked_at"]
    assert found["gone-1"]["status"] == "offline"
    assert found["gone-1"]["status_reason"].startswith("unreachable: ")
    assert found["wrongpw-1"]["status_reason"] == "auth failed: invalid user name or password (6)"
    assert all(PASSWORD not in json.dumps(row) for row in found.values())
    text = cli("--config", str(conf), "routers", "list").stdout
    assert re.search(r"^core-1\s+127\.0\.0\.1:\d+\s+no\s+yes\s+online\s+[\d.]+ ms\s+7\.16 "
                     r"\(stable\)\s+\d+s ago\s*$", text, re.MULTILINE), text


def test_list_needs_an_initialised_store(conf: Path) -> None:
    result = cli("--config", str(conf), "routers", "list")
    assert result.exit_code == 2
    assert "run `ispqueue init`" in result.stderr


def test_check_logs_in_and_reports_now(conf: Path) -> None:
    result = cli("--config", str(conf), "routers", "check", "core-1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "router core-1  online"
    assert "  identity  core-1" in lines
    assert "  version   7.16 (stable)  (CCR2004-1G-12S+2XS)" in lines
    assert any(re.fullmatch(r"  latency   [\d.]+ ms", line) for line in lines)

    data = json.loads(cli("--config", str(conf), "routers", "check", "core-1", "--json").stdout)
    assert (data["ok"], data["status"], data["identity"], data["error"]) == (
        True, "online", "core-1", None)


def test_check_failure_exits_1_with_the_router_error(conf: Path) -> None:
    refused = cli("--config", str(conf), "routers", "check", "gone-1")
    assert refused.exit_code == 1
    assert refused.stdout.splitlines()[0] == "router gone-1  offline"
    assert re.search(r"error     gone-1: connect: .*refused", refused.stdout), refused.stdout

    denied = cli("--config", str(conf), "routers", "check", "wrongpw-1", "--json")
    assert denied.exit_code == 1
    data = json.loads(denied.stdout)
    assert (data["ok"], data["status"]) == (False, "offline")
    assert data["error"] == "wrongpw-1: /login: invalid user name or password (6)"
    assert data["reasons"] == ["auth failed: invalid user name or password (6)"]


def test_check_writes_nothing(conf: Path) -> None:
    cli("--config", str(conf), "init")
    cli("--config", str(conf), "routers", "check", "core-1")
    listed = json.loads(cli("--config", str(conf), "routers", "list", "--json").stdout)
    assert {row["status"] for row in listed} == {"unknown"}


def test_check_unknown_router_is_bad_input(conf: Path) -> None:
    result = cli("--config", str(conf), "routers", "check", "nope")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {conf}: no router named 'nope' in [[routers]]\n"


# -- sim-router --------------------------------------------------------------------------------


def test_sim_router_serves_until_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ispqueue", "sim-router", "--port", "0", "--user", "api",
         "--password", PASSWORD, "--identity", "lab-1", "--secrets", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline().rstrip("\n")
        ready = READY.match(line)
        assert ready, line
        port, user = int(ready.group(1)), ready.group(2)
        assert user == "api" and PASSWORD not in line
        config = RouterConfig(name="lab-1", host="127.0.0.1", port=port, username="api",
                              password=PASSWORD, timeout=5)
        with RouterClient.connect(config) as client:
            assert client.identity() == "lab-1"
            assert client.count("/ppp/secret") == 5
        conf = write_config(tmp_path, {"lab-1": {"port": port, "username": "api"}})
        assert cli("--config", str(conf), "routers", "check", "lab-1").exit_code == 0
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sim_router_on_a_taken_port_is_bad_input() -> None:
    with RouterSim() as taken:
        result = cli("sim-router", "--port", str(taken.port))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: sim-router on 127.0.0.1:{taken.port}: ")
    assert len(result.stderr.splitlines()) == 1


def test_sim_router_key_without_certificate(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key", encoding="utf-8")
    result = cli("sim-router", "--tls-key", str(key))
    assert result.exit_code == 2
    assert result.stderr == "error: --tls-key needs --tls-cert\n"
