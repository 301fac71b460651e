"""The [schedule] firer: each matching entry once per minute across schedulers, fan-out,
no replay of missed minutes."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time

from ispqueue.config import DEFAULT_SCHEDULE, QUEUES, Config
from ispqueue.db import utcnow
from ispqueue.models import Job, ScheduleFire
from ispqueue.registry import Param, Registry
from ispqueue.runtime import Runtime
from ispqueue.schedule import CronScheduler

ROUTERS = [
    {"name": "r1", "host": "127.0.0.1", "username": "api", "password": "pw-1"},
    {"name": "r2", "host": "127.0.0.2", "username": "api", "password": "pw-2", "enabled": False},
    {"name": "r3", "host": "127.0.0.3", "username": "api", "password": "pw-3"},
]
# Every default entry off but the canary, so the counts here are the entries below.
SCHEDULE = {
    **{name: False for name in DEFAULT_SCHEDULE},
    "system.canary": "* * * * *",
    "system.sched_probe": "*/5 * * * *",
    "router.sched_probe": "0 * * * *",
    "system.sched_needs_arg": "0 * * * *",
}


def noop(ctx: Any) -> None:
    """Does nothing; the scheduler never runs it."""


@pytest.fixture
def test_registry(test_registry: Registry) -> Registry:
    """The registry copy with throw-away types for the schedule to fire."""
    test_registry.register("system.sched_probe", queue="default", timeout=5, unique=False)(noop)
    test_registry.register("router.sched_probe", queue="provisioning", timeout=5,
                           needs_router=True)(noop)
    test_registry.register("system.sched_needs_arg", queue="default", timeout=5,
                           params=(Param("what", required=True),))(noop)
    return test_registry


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config(schedule=SCHEDULE, routers=ROUTERS, queue={"workers": {"imports": 0}})


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def fire_at(scheduler: CronScheduler, moment: str) -> int:
    with freeze_time(at(moment)):
        return scheduler.fire(utcnow())


def jobs() -> list[Job]:
    return list(Job.select().order_by(Job.id))


def test_fires_every_matching_entry_once(runtime: Runtime) -> None:
    fired = fire_at(CronScheduler(runtime), "2026-12-04 10:00:00")
    made = jobs()
    assert fired == len(made) == 4 + 1 + 2  # canary per queue, probe, router probe per router
    by_type = Counter(job.type for job in made)
    assert by_type == {"system.canary": 4, "system.sched_probe": 1, "router.sched_probe": 2}
    assert all(job.source == "schedule" for job in made)
    assert all(job.enqueued_at == at("2026-12-04 10:00:00") for job in made)
    assert all(job.status == "queued" for job in made)


def test_canary_fans_out_to_queues_with_workers(runtime: Runtime) -> None:
    fire_at(CronScheduler(runtime), "2026-12-04 10:01:00")
    canaries = [job for job in jobs() if job.type == "system.canary"]
    assert sorted(job.queue for job in canaries) == sorted(q for q in QUEUES if q != "imports")
    for job in canaries:
        assert job.args_dict["queue"] == job.queue
        assert job.router is None


def test_router_entry_fans_out_to_enabled_routers(runtime: Runtime) -> None:
    fire_at(CronScheduler(runtime), "2026-12-04 11:00:00")
    probes = [job for job in jobs() if job.type == "router.sched_probe"]
    assert sorted(job.router for job in probes) == ["r1", "r3"]
    assert {job.queue for job in probes} == {"provisioning"}


def test_second_call_in_the_same_minute_fires_nothing(runtime: Runtime) -> None:
    scheduler = CronScheduler(runtime)
    first = fire_at(scheduler, "2026-12-04 10:00:05")
    assert fire_at(scheduler, "2026-12-04 10:00:40") == 0
    assert len(jobs()) == first


def test_restarted_scheduler_does_not_fire_the_minute_again(runtime: Runtime) -> None:
    first = fire_at(CronScheduler(runtime), "2026-12-04 10:00:05")
    assert fire_at(CronScheduler(runtime), "2026-12-04 10:00:50") == 0
    assert len(jobs()) == first
    claims = ScheduleFire.select().where(ScheduleFire.fire_at == at("2026-12-04 10:00"))
    assert sorted(c.entry for c in claims) == ["router.sched_probe", "system.canary",
                                               "system.sched_needs_arg", "system.sched_probe"]


def test_scheduler_on_another_host_does_not_fire_again(runtime: Runtime, config: Config,
                                                       test_registry: Registry) -> None:
    other_host = Runtime(config, registry=test_registry)
    try:
        here = fire_at(CronScheduler(runtime), "2026-12-04 10:00:00")
        there = fire_at(CronScheduler(other_host), "2026-12-04 10:00:02")
    finally:
        other_host.db.close()
    assert (here, there) == (7, 0)
    assert len(jobs()) == 7


def test_next_minute_fires_again(runtime: Runtime) -> None:
    scheduler = CronScheduler(runtime)
    assert fire_at(scheduler, "2026-12-04 10:00:00") == 7
    assert fire_at(scheduler, "2026-12-04 10:01:00") == 4  # only the every-minute canary
    assert Counter(job.type for job in jobs())["system.canary"] == 8


def test_missed_minutes_are_not_replayed(runtime: Runtime) -> None:
    scheduler = CronScheduler(runtime)
    fire_at(scheduler, "2026-12-04 10:03:00")
    # The daemon was down from 10:04 to 10:06: the 10:05 probe is not made up for.
    assert fire_at(scheduler, "2026-12-04 10:07:00") == 4
    assert Counter(job.type for job in jobs()) == {"system.canary": 8}
    minutes = sorted({c.fire_at for c in ScheduleFire.select()})
    assert minutes == [at("2026-12-04 10:03"), at("2026-12-04 10:07")]


def test_entry_with_bad_args_is_logged_not_fatal(runtime: Runtime) -> None:
    fire_at(CronScheduler(runtime), "2026-12-04 10:00:00")
    assert not [job for job in jobs() if job.type == "system.sched_needs_arg"]
    assert Counter(job.type for job in jobs())["system.sched_probe"] == 1


def test_prune_forgets_old_claims(runtime: Runtime) -> None:
    scheduler = CronScheduler(runtime)
    fire_at(scheduler, "2026-12-01 10:00:00")
    fire_at(scheduler, "2026-12-04 10:00:00")
    scheduler.prune(dt.timedelta(days=2))
    assert {c.fire_at for c in ScheduleFire.select()} == {at("2026-12-04 10:00")}


# -- daylight saving time: a daily entry runs once per local day --------------------------------


@pytest.fixture
def berlin_daily(make_config: Callable[..., Config], test_registry: Registry) -> Iterator[Any]:
    from ispqueue.runtime import initialise

    config = make_config(ispqueue={"timezone": "Europe/Berlin"},
                         schedule={**{name: False for name in DEFAULT_SCHEDULE},
                                   "system.sched_probe": "30 2 * * *"})
    initialise(config, test_registry)
    rt = Runtime(config, registry=test_registry)
    yield rt
    rt.db.close()


def fire_every_minute(rt: Runtime, start: str, hours: int) -> list[Job]:
    scheduler = CronScheduler(rt)
    first = at(start)
    for minute in range(hours * 60):
        scheduler.fire(first + dt.timedelta(minutes=minute))
    return [job for job in jobs() if job.type == "system.sched_probe"]


def test_daily_entry_fires_once_on_a_normal_day(berlin_daily: Runtime) -> None:
    # 2026-12-04 in Berlin (UTC+1) runs from 2026-12-03 23:00 UTC.
    assert len(fire_every_minute(berlin_daily, "2026-12-03 23:00", 24)) == 1


def test_daily_entry_fires_once_when_clocks_go_back(berlin_daily: Runtime) -> None:
    # 2026-10-25: 02:30 local happens twice (00:30 and 01:30 UTC). A daily 02:30 backup or
    # billing run is expected once that day, as cron does it, not twice.
    assert len(fire_every_minute(berlin_daily, "2026-10-24 22:00", 25)) == 1


def test_daily_entry_in_the_skipped_hour_still_fires(berlin_daily: Runtime) -> None:
    # 2026-03-29: local 02:00-03:00 does not exist. A daily 02:30 entry is expected to run
    # that day anyway (cron runs it when the clock jumps), not to skip a day.
    assert len(fire_every_minute(berlin_daily, "2026-03-28 23:00", 23)) == 1
