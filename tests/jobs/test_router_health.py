"""router.health over a fleet of simulated routers on real TCP: side by side, bounded by each
router's timeout, one log line per status change, and interruptible."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time
from loguru import logger

from ispqueue.config import Config
from ispqueue.context import JobCancelled
from ispqueue.db import utcnow
from ispqueue.errors import BadInput
from ispqueue.models import Job, Router
from ispqueue.routeros.sim import RouterSim
from ispqueue.runtime import Runtime, initialise
from ispqueue.schedule import CronScheduler
from tests.conftest import wait_until

PASSWORD = "Hq4-health-Secret"
TIMEOUT = 1.0  # every router's; the hung one must cost no more than this
HEALTHY = {"core-1": 0.0, "core-2": 0.01, "edge-1": 0.03, "edge-2": 0.06}  # reply latency, s


@pytest.fixture
def fleet() -> Iterator[dict[str, RouterSim]]:
    """Six routers, each its own listener: four healthy, one hung, one refusing."""
    sims = {name: RouterSim(password=PASSWORD, identity=name) for name in HEALTHY}
    sims["hung-1"] = RouterSim(password=PASSWORD, identity="hung-1")
    sims["gone-1"] = RouterSim(password=PASSWORD, identity="gone-1")
    for name, sim in sims.items():
        sim.start()
        sim.faults.latency = HEALTHY.get(name, 0.0)
    sims["hung-1"].faults.hang = True
    sims["gone-1"].faults.refuse = True
    yield sims
    for sim in sims.values():
        sim.stop()


def entry(name: str, sim: RouterSim, **extra: Any) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": sim.port, "username": "admin",
            "password": PASSWORD, "timeout": TIMEOUT, "identity": name, **extra}


@pytest.fixture
def config(make_config: Callable[..., Config], fleet: dict[str, RouterSim]) -> Config:
    routers = [entry(name, sim) for name, sim in fleet.items()]
    routers.append(entry("badpw-1", fleet["core-1"], password="not-the-password",
                         identity="core-1", enabled=False))
    return make_config(routers=routers, schedule={"router.health": "*/5 * * * *"})


@pytest.fixture
def status_log() -> Iterator[list[dict[str, Any]]]:
    """Status-change lines, with the router each is bound to."""
    lines: list[dict[str, Any]] = []

    def sink(message: Any) -> None:
        record = message.record
        if record["message"].startswith("router ") and " → " in record["message"]:
            lines.append({"text": record["message"], "router": record["extra"].get("router"),
                          "level": record["level"].name})

    handle = logger.add(sink, level="DEBUG")
    yield lines
    logger.remove(handle)


def run(runtime: Runtime, router: str | None = None, **args: Any) -> Job:
    job = runtime.enqueue("router.health", args, router=router).job
    runtime.executor.run(job.id)
    return Job.get_by_id(job.id)


def rows() -> dict[str, Router]:
    return {row.name: row for row in Router.select()}


def seconds_after(start: dt.datetime, moment: dt.datetime) -> float:
    return (moment - start).total_seconds()


def test_fleet_is_probed_side_by_side(runtime: Runtime) -> None:
    started, clock = utcnow(), time.monotonic()
    job = run(runtime)
    took = time.monotonic() - clock

    assert job.status == "succeeded"
    assert job.result_dict["counts"] == {"online": 4, "warning": 0, "offline": 2}
    assert took < TIMEOUT + 1
    found = rows()
    for name, latency in HEALTHY.items():
        assert (found[name].status, found[name].status_reason) == ("online", None)
        # Login, resource (row + done) and identity (row + done): five replies of its own
        # latency, however long the hung router takes.
        assert seconds_after(started, found[name].checked_at) < 5 * latency + 0.4, name
        assert found[name].version == "7.16 (stable)"
        assert found[name].identity == name
    hung = found["hung-1"]
    assert (hung.status, hung.status_reason) == ("offline", "timeout after 1s")
    assert TIMEOUT - 0.1 <= seconds_after(started, hung.checked_at) <= TIMEOUT + 1
    assert "no answer" in hung.last_error
    gone = found["gone-1"]
    assert gone.status == "offline" and gone.status_reason.startswith("unreachable: ")
    assert found["badpw-1"].status == "unknown"  # disabled: not in the scheduled sweep
    assert job.result_dict["routers"]["hung-1"] == {
        "status": "offline", "reason": "timeout after 1s", "latency_ms": None}
    assert job.progress_done == job.progress_total == 6


def test_a_status_change_is_one_log_line(runtime: Runtime, fleet: dict[str, RouterSim],
                                         status_log: list[dict[str, Any]]) -> None:
    run(runtime, "core-1")
    assert status_log == [{"text": "router core-1 unknown → online", "router": "core-1",
                           "level": "INFO"}]
    status_log.clear()
    run(runtime, "core-1")
    assert status_log == []  # unchanged: no line

    fleet["core-1"].faults.hang = True
    with freeze_time(dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC), tick=True):
        job = run(runtime, "core-1")
    assert job.status == "succeeded"  # an offline router is a successful check
    assert status_log == [{"text": "router core-1 online → offline: timeout after 1s",
                           "router": "core-1", "level": "WARNING"}]
    row = rows()["core-1"]
    assert row.status_changed_at.date() == dt.date(2026, 12, 4)
    assert row.identity == "core-1"  # what the router is stays known while it is down


def test_one_router_by_name(runtime: Runtime) -> None:
    job = run(runtime, "edge-1")
    assert job.router == "edge-1"
    assert job.result_dict == {"counts": {"online": 1, "warning": 0, "offline": 0},
                               "routers": {"edge-1": {"status": "online", "reason": None,
                                                      "latency_ms": job.result_dict["routers"]
                                                      ["edge-1"]["latency_ms"]}}}
    assert {name for name, row in rows().items() if row.status != "unknown"} == {"edge-1"}


def test_bad_password_is_offline_with_the_auth_failure(
        make_config: Callable[..., Config], fleet: dict[str, RouterSim],
        test_registry: Any) -> None:
    config = make_config(routers=[entry("core-1", fleet["core-1"], password="wrong")])
    initialise(config)
    runtime = Runtime(config, registry=test_registry)
    job = run(runtime, "core-1")
    assert job.status == "succeeded"
    row = rows()["core-1"]
    assert (row.status, row.status_reason) == (
        "offline", "auth failed: invalid user name or password (6)")
    runtime.db.close()


def test_thresholds_are_job_arguments(runtime: Runtime) -> None:
    fleet_args = {"max_latency_ms": 1, "max_cpu_load": 0, "max_memory_percent": 99}
    job = run(runtime, "edge-2", **fleet_args)
    verdict = job.result_dict["routers"]["edge-2"]
    assert verdict["status"] == "warning"
    assert "latency" in verdict["reason"] and "cpu load" in verdict["reason"]
    assert job.args_dict == {"max_latency_ms": 1.0, "max_cpu_load": 0.0,
                             "max_memory_percent": 99.0}


def test_enqueue_takes_an_optional_router(runtime: Runtime) -> None:
    assert runtime.enqueue("router.health").job.router is None
    assert runtime.enqueue("router.health", router="core-2").job.router == "core-2"
    legacy = runtime.enqueue("CheckRouterHealth", router="edge-1")
    assert legacy.job.type == "router.health" and legacy.warning
    with pytest.raises(BadInput, match="no router named 'nope'"):
        runtime.enqueue("router.health", router="nope")
    with pytest.raises(BadInput, match="disabled"):
        runtime.enqueue("router.health", router="badpw-1")
    with pytest.raises(BadInput, match="max_cpu_load"):
        runtime.enqueue("router.health", {"max_cpu_load": 101})
    policy = runtime.registry.get("router.health").policy
    assert (policy.queue, policy.timeout, policy.tries, policy.router_lock) == (
        "default", 60, 1, False)


def test_the_schedule_checks_the_whole_fleet_in_one_job(runtime: Runtime) -> None:
    with freeze_time(dt.datetime(2026, 12, 4, 10, 5, tzinfo=dt.UTC)):
        CronScheduler(runtime).fire(utcnow())
    made = list(Job.select().where(Job.type == "router.health"))
    assert [(job.router, job.source) for job in made] == [(None, "schedule")]


def test_cancel_closes_the_router_sockets(make_config: Callable[..., Config],
                                          fleet: dict[str, RouterSim],
                                          test_registry: Any) -> None:
    hung = fleet["hung-1"]
    config = make_config(routers=[entry("hung-1", hung, timeout=30),
                                  entry("core-1", fleet["core-1"])])
    initialise(config)
    runtime = Runtime(config, registry=test_registry)
    job = runtime.enqueue("router.health").job
    worker = threading.Thread(target=runtime.executor.run, args=(job.id,))
    worker.start()
    wait_until(lambda: any(c.command == "/login" for c in hung.journal))
    wait_until(lambda: rows()["core-1"].status == "online")
    cancelled_at = time.monotonic()
    runtime.executor.interrupt(job.id, JobCancelled("cancelled by hand"))
    worker.join(2)
    assert not worker.is_alive()
    # The probe was blocked on a 30 s read; closing its socket ended it at once.
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("probe")],
               timeout=2)
    assert time.monotonic() - cancelled_at < 2
    assert Job.get_by_id(job.id).status == "cancelled"
    assert rows()["hung-1"].status == "unknown"  # a cut-short probe is not a verdict
    runtime.db.close()
