"""The router fleet: config mirrored into the data store, probes over TCP to the simulator,
the online / warning / offline verdict, and how a verdict is stored and logged."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from loguru import logger

from ispqueue.config import Config, RouterConfig
from ispqueue.db import utcnow
from ispqueue.models import Router
from ispqueue.routeros.errors import (
    RouterAuthFailed,
    RouterProtocolError,
    RouterTimeout,
    RouterTrap,
    RouterUnreachable,
    RouterUnsupported,
)
from ispqueue.routeros.sim import RouterSim
from ispqueue.runtime import initialise
from ispqueue.services import fleet
from ispqueue.services.fleet import Health, Probe, Thresholds, classify

PASSWORD = "Zq7-fleet-Secret"


def entry(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": port, "username": "admin",
            "password": PASSWORD, "timeout": 2, **extra}


def settings(name: str, sim: RouterSim, **changes: Any) -> RouterConfig:
    values = {"host": "127.0.0.1", "port": sim.port, "username": "admin",
              "password": PASSWORD, "timeout": 2.0, **changes}
    return RouterConfig(name=name, **values)


@pytest.fixture
def sim() -> Iterator[RouterSim]:
    with RouterSim(password=PASSWORD, identity="core-1") as running:
        yield running


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="DEBUG")
    yield lines
    logger.remove(sink)


def status_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("router ") and " → " in line]


def rows() -> dict[str, Router]:
    return {row.name: row for row in Router.select()}


# -- the mirror ------------------------------------------------------------------------------


def test_init_mirrors_every_router(make_config: Callable[..., Config]) -> None:
    config = make_config(routers=[entry("core-1", 8728, identity="core-1"),
                                  entry("edge-1", 8729, tls=True, tls_verify=False,
                                        auth_mode="radius", enabled=False)])
    initialise(config)
    found = rows()
    assert set(found) == {"core-1", "edge-1"}
    core, edge = found["core-1"], found["edge-1"]
    assert (core.host, core.port, core.username, core.tls, core.auth_mode, core.enabled,
            core.expected_identity) == ("127.0.0.1", 8728, "admin", False, "router", True,
                                        "core-1")
    assert (edge.tls, edge.auth_mode, edge.enabled, edge.expected_identity) == (
        True, "radius", False, None)
    assert core.status == edge.status == "unknown"
    assert core.checked_at is None and core.created_at is not None


def test_mirror_adds_changes_and_disables(make_config: Callable[..., Config]) -> None:
    start = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)
    with freeze_time(start):
        initialise(make_config(routers=[entry("core-1", 8728), entry("old-1", 8728)]))
    Router.update(status="online", version="7.16 (stable)").where(
        Router.name == "old-1").execute()
    later = start + dt.timedelta(hours=1)
    with freeze_time(later):
        done = fleet.mirror_routers(make_config(routers=[entry("core-1", 18728),
                                                         entry("new-1", 8728)]))
    assert done == {"added": ["new-1"], "changed": ["core-1"], "disabled": ["old-1"]}
    found = rows()
    assert found["core-1"].port == 18728
    assert (found["core-1"].created_at, found["core-1"].updated_at) == (start, later)
    assert found["new-1"].enabled is True
    # Gone from the config: kept, disabled, with its history.
    assert found["old-1"].enabled is False
    assert (found["old-1"].status, found["old-1"].version) == ("online", "7.16 (stable)")


def test_mirror_is_repeatable(make_config: Callable[..., Config]) -> None:
    config = make_config(routers=[entry("core-1", 8728)])
    initialise(config)
    assert fleet.mirror_routers(config) == {"added": [], "changed": [], "disabled": []}
    assert len(rows()) == 1


def test_a_router_back_in_the_config_is_enabled_again(make_config: Callable[..., Config]
                                                      ) -> None:
    initialise(make_config(routers=[entry("core-1", 8728)]))
    fleet.mirror_routers(make_config(routers=[]))
    assert rows()["core-1"].enabled is False
    done = fleet.mirror_routers(make_config(routers=[entry("core-1", 8728)]))
    assert done["changed"] == ["core-1"] and rows()["core-1"].enabled is True


def test_the_password_is_never_stored(make_config: Callable[..., Config], tmp_path: Path,
                                      sim: RouterSim) -> None:
    config = make_config(routers=[entry("core-1", sim.port)])
    initialise(config)
    router = config.router("core-1")
    fleet.record(router, Health(fleet.probe(router, time.monotonic() + 5), "online"))
    assert not any("password" in name for name in Router._meta.fields)
    row = Router.select().dicts().get()
    assert PASSWORD not in repr(row)
    Router._meta.database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in (tmp_path / "data").rglob("*.db*"):
        assert PASSWORD.encode() not in path.read_bytes(), path


# -- probing over TCP ------------------------------------------------------------------------


def test_probe_reads_identity_version_and_load(sim: RouterSim) -> None:
    sim.insert("/system/resource", cpu_load=12, free_memory=268435456)
    found = fleet.probe(settings("core-1", sim), time.monotonic() + 5)
    assert found.error is None and found.reason is None
    assert (found.identity, found.version, found.board_name) == (
        "core-1", "7.16 (stable)", "CCR2004-1G-12S+2XS")
    assert found.cpu_load == 12
    assert found.memory_used_percent == 75.0  # 256 MiB free of 1 GiB
    assert found.uptime and found.uptime.endswith("s")
    assert 0 <= found.latency_ms < 500
    assert [c.command for c in sim.journal] == ["/login", "/system/resource/print",
                                                 "/system/identity/print"]


def test_latency_is_one_api_round_trip(sim: RouterSim) -> None:
    sim.faults.latency = 0.1  # before every reply sentence: identity is a row and a !done
    found = fleet.probe(settings("core-1", sim), time.monotonic() + 5)
    assert 200 <= found.latency_ms < 400
    assert found.elapsed >= 0.5  # login, resource (2 sentences), identity (2)


def test_bad_password_is_an_auth_failure(sim: RouterSim) -> None:
    found = fleet.probe(settings("core-1", sim, password="wrong"), time.monotonic() + 5)
    assert isinstance(found.error, RouterAuthFailed)
    assert found.reason == "auth failed: invalid user name or password (6)"
    assert classify(found, Thresholds()) == ("offline", [found.reason])


def test_refused_router_is_unreachable(sim: RouterSim) -> None:
    sim.faults.refuse = True
    found = fleet.probe(settings("core-1", sim), time.monotonic() + 5)
    assert isinstance(found.error, RouterUnreachable)
    assert found.reason.startswith("unreachable: ")
    assert found.elapsed < 1


def test_hung_router_times_out_within_its_timeout(sim: RouterSim) -> None:
    sim.faults.hang = True
    found = fleet.probe(settings("core-1", sim, timeout=0.5), time.monotonic() + 30)
    assert isinstance(found.error, RouterTimeout)
    assert found.reason == "timeout after 0.5s"
    assert 0.4 <= found.elapsed < 1.5


def test_probe_never_outlives_the_deadline(sim: RouterSim) -> None:
    sim.faults.hang = True
    found = fleet.probe(settings("core-1", sim, timeout=10), time.monotonic() + 0.3)
    assert isinstance(found.error, RouterTimeout)
    assert found.elapsed < 1.0
    assert found.budget == pytest.approx(0.3, abs=0.05)
    passed = fleet.probe(settings("core-1", sim), time.monotonic() - 1)
    assert isinstance(passed.error, RouterTimeout) and passed.budget == 0


def test_check_router_judges_against_the_expected_identity(sim: RouterSim) -> None:
    health = fleet.check_router(settings("core-1", sim, identity="core-2"))
    assert health.status == "warning"
    assert health.reasons == ["identity is 'core-1', expected 'core-2'"]
    assert fleet.check_router(settings("core-1", sim, identity="core-1")).status == "online"


# -- the verdict -------------------------------------------------------------------------------


def reading(**values: Any) -> Probe:
    base = {"router": "core-1", "checked_at": utcnow(), "budget": 5.0, "elapsed": 0.01,
            "latency_ms": 3.0, "identity": "core-1", "version": "7.16 (stable)",
            "uptime": "1d", "board_name": "RB5009", "cpu_load": 10,
            "memory_used_percent": 40.0}
    return Probe(**{**base, **values})


def test_a_healthy_router_is_online() -> None:
    assert classify(reading(), Thresholds(), "core-1") == ("online", [])
    # At a threshold is still fine; only above it warns.
    at_limits = reading(latency_ms=1000.0, cpu_load=90, memory_used_percent=90.0)
    assert classify(at_limits, Thresholds()) == ("online", [])


@pytest.mark.parametrize(("values", "reason"), [
    ({"latency_ms": 1500.4}, "latency 1500 ms above 1000"),
    ({"cpu_load": 97}, "cpu load 97% above 90%"),
    ({"memory_used_percent": 93.5}, "memory use 93.5% above 90%"),
])
def test_thresholds_make_a_warning(values: dict[str, Any], reason: str) -> None:
    assert classify(reading(**values), Thresholds()) == ("warning", [reason])


def test_thresholds_are_configurable_and_reasons_add_up() -> None:
    strict = Thresholds(max_latency_ms=2, max_cpu_load=5, max_memory_percent=30)
    status, reasons = classify(reading(), strict, "core-9")
    assert status == "warning"
    assert reasons == ["latency 3 ms above 2", "cpu load 10% above 5%",
                       "memory use 40% above 30%", "identity is 'core-1', expected 'core-9'"]


def test_missing_readings_are_not_judged() -> None:
    blank = reading(latency_ms=None, cpu_load=None, memory_used_percent=None)
    assert classify(blank, Thresholds(max_latency_ms=0, max_cpu_load=0)) == ("online", [])


@pytest.mark.parametrize(("error", "status", "reason"), [
    (RouterUnreachable("Connection refused"), "offline", "unreachable: Connection refused"),
    (RouterAuthFailed("invalid user name or password (6)"), "offline",
     "auth failed: invalid user name or password (6)"),
    (RouterTimeout("no answer within 5 s"), "offline", "timeout after 5s"),
    (RouterProtocolError("the router ended the session: x"), "offline",
     "protocol error: the router ended the session: x"),
    (RouterUnsupported("no such command prefix"), "warning",
     "unsupported menu: no such command prefix"),
    (RouterTrap("not enough permissions (9)"), "warning", "trap: not enough permissions (9)"),
])
def test_errors_map_to_a_status(error: Exception, status: str, reason: str) -> None:
    failed = reading(error=error, latency_ms=None)
    assert classify(failed, Thresholds(), "core-1") == (status, [reason])


# -- storing a verdict -------------------------------------------------------------------------


@pytest.fixture
def core(make_config: Callable[..., Config]) -> RouterConfig:
    config = make_config(routers=[entry("core-1", 8728)])
    initialise(config)
    return config.router("core-1")


def test_record_stores_readings_and_logs_only_changes(core: RouterConfig,
                                                      log_lines: list[str]) -> None:
    first = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)
    with freeze_time(first):
        fleet.record(core, Health(reading(checked_at=utcnow()), "online"))
    with freeze_time(first + dt.timedelta(minutes=5)):
        fleet.record(core, Health(reading(checked_at=utcnow(), cpu_load=20), "online"))
    row = rows()["core-1"]
    assert (row.status, row.status_reason, row.cpu_load) == ("online", None, 20)
    assert row.checked_at == first + dt.timedelta(minutes=5)
    assert row.status_changed_at == first  # unchanged on the second probe
    assert (row.identity, row.version, row.board_name, row.uptime) == (
        "core-1", "7.16 (stable)", "RB5009", "1d")
    assert status_lines(log_lines) == ["router core-1 unknown → online"]


def test_record_an_outage_keeps_what_the_router_is(core: RouterConfig,
                                                   log_lines: list[str]) -> None:
    fleet.record(core, Health(reading(), "online"))
    log_lines.clear()
    moment = dt.datetime(2026, 12, 4, 11, 0, tzinfo=dt.UTC)
    timeout = RouterTimeout("no answer before the job's deadline", "core-1", "/login")
    down = reading(checked_at=moment, error=timeout, latency_ms=None, identity=None,
                   version=None, board_name=None, uptime=None, cpu_load=None,
                   memory_used_percent=None)
    fleet.record(core, Health(down, *classify(down, Thresholds())))
    row = rows()["core-1"]
    assert (row.status, row.status_reason) == ("offline", "timeout after 5s")
    assert row.last_error == "core-1: /login: no answer before the job's deadline"
    assert (row.status_changed_at, row.checked_at) == (moment, moment)
    assert row.latency_ms is None and row.cpu_load is None
    assert (row.identity, row.version) == ("core-1", "7.16 (stable)")  # last known
    assert status_lines(log_lines) == ["router core-1 online → offline: timeout after 5s"]
    fleet.record(core, Health(down, *classify(down, Thresholds())))
    assert status_lines(log_lines) == ["router core-1 online → offline: timeout after 5s"]
    # Back online: the reason clears, the last error stays for the operator to read.
    fleet.record(core, Health(reading(), "online"))
    row = rows()["core-1"]
    assert (row.status, row.status_reason, row.last_error) == (
        "online", None, "core-1: /login: no answer before the job's deadline")
    assert status_lines(log_lines)[-1] == "router core-1 offline → online"


def test_record_a_router_the_mirror_has_not_seen(core: RouterConfig) -> None:
    newcomer = dataclasses.replace(core, name="edge-7")
    fleet.record(newcomer, Health(reading(router="edge-7"), "online"))
    assert rows()["edge-7"].status == "online"
