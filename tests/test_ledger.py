"""Ledger transitions made outside a run: recovery, lost messages, cancel, retry, prune."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from freezegun import freeze_time

from ispqueue.errors import BadInput, NotFound
from ispqueue.ledger import HOST, NewJob
from ispqueue.middleware import retry_delay
from ispqueue.models import Job, JobEvent

T0 = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)


def new_job(**fields) -> NewJob:
    base = dict(type="system.canary", args={"queue": "default", "hold_seconds": 0.0},
                queue="default", priority=0, tries=2, timeout=60.0)
    base.update(fields)
    return NewJob(**base)


def running_as(ledger, runner: str, **fields) -> Job:
    job, _ = ledger.insert(new_job(**fields))
    job = ledger.claim(job.id)
    Job.update(runner=runner).where(Job.id == job.id).execute()
    return Job.get_by_id(job.id)


def never_alive(pid: int) -> bool:
    return False


def always_alive(pid: int) -> bool:
    return True


def test_dead_local_runner_is_recovered_at_once(runtime):
    ledger = runtime.ledger
    with freeze_time(T0):
        retryable = running_as(ledger, f"{HOST}:999999", tries=2)
        spent = running_as(ledger, f"{HOST}:999999", tries=1)
        requeued = ledger.recover_dead(never_alive, stale_after=60, mine=set)
    assert [j.id for j in requeued] == [retryable.id]
    assert Job.get_by_id(retryable.id).status == "queued"
    failed = Job.get_by_id(spent.id)
    assert failed.status == "failed" and failed.error.startswith("worker died")
    assert failed.active_key is None


def test_remote_runner_is_recovered_only_when_its_heartbeat_is_stale(runtime):
    ledger = runtime.ledger
    with freeze_time(T0) as clock:
        job = running_as(ledger, "other-host:42")
        clock.tick(59)
        assert ledger.recover_dead(always_alive, stale_after=60, mine=set) == []
        clock.tick(2)
        assert [j.id for j in ledger.recover_dead(always_alive, 60, set)] == [job.id]
    events = [e.message for e in JobEvent.select().where(JobEvent.job == job.id)]
    assert "worker died (other-host:42); re-queued" in events


def test_heartbeat_keeps_a_live_job_from_being_recovered(runtime):
    ledger = runtime.ledger
    with freeze_time(T0) as clock:
        job, _ = ledger.insert(new_job())
        job = ledger.claim(job.id)
        for _ in range(5):
            clock.tick(50)
            ledger.heartbeat([job.id])
        assert ledger.recover_dead(always_alive, 60, mine=lambda: {job.id}) == []
        # Our own runner, but not in flight here any more: its outcome was lost.
        assert [j.id for j in ledger.recover_dead(always_alive, 60, mine=set)] == [job.id]


def test_recovered_job_cannot_be_finished_by_the_old_run(runtime):
    ledger = runtime.ledger
    job = running_as(ledger, f"{HOST}:999999")
    stale_copy = Job.get_by_id(job.id)
    ledger.recover_dead(never_alive, 60, set)
    again = ledger.claim(job.id)
    assert again.attempt == 2
    assert ledger.succeed(stale_copy, {"late": True}) is False  # fenced by attempt
    assert ledger.succeed(again, {"ok": True}) is True


def test_unsent_lists_only_old_queued_rows(runtime):
    ledger = runtime.ledger
    with freeze_time(T0) as clock:
        old, _ = ledger.insert(new_job(args={"n": 1}))
        clock.tick(40)
        ledger.insert(new_job(args={"n": 2}))
        assert [j.id for j in ledger.unsent(30)] == [old.id]
        ledger.touch_queued(old)
        assert ledger.unsent(30) == []


def test_scheduled_jobs_are_promoted_when_due(runtime):
    ledger = runtime.ledger
    with freeze_time(T0) as clock:
        job, _ = ledger.insert(new_job(scheduled_for=T0 + dt.timedelta(seconds=90)))
        assert job.status == "scheduled"
        clock.tick(89)
        assert ledger.promote_due() == []
        clock.tick(1)
        assert [j.id for j in ledger.promote_due()] == [job.id]
        assert ledger.promote_due() == []  # only once
    assert Job.get_by_id(job.id).status == "queued"


def test_cancel_waiting_and_running_and_final(runtime):
    ledger = runtime.ledger
    waiting, _ = ledger.insert(new_job(args={"n": 1}))
    assert ledger.cancel(waiting.id) == "cancelled"
    assert Job.get_by_id(waiting.id).active_key is None
    with pytest.raises(BadInput, match="already cancelled"):
        ledger.cancel(waiting.id)
    running = running_as(ledger, ledger.runner, args={"n": 2})
    assert ledger.cancel(running.id) == "cancel requested"
    assert ledger.cancel_requests([running.id]) == [running.id]
    with pytest.raises(NotFound):
        ledger.cancel(123456)


def test_retry_by_hand_is_a_new_attempt_of_the_same_row(runtime):
    ledger = runtime.ledger
    job = running_as(ledger, ledger.runner, tries=1)
    ledger.fail(job, RuntimeError("router said no"))
    retried = ledger.retry(job.id)
    assert retried.id == job.id and retried.status == "queued" and retried.tries == 2
    claimed = ledger.claim(job.id)
    assert claimed.attempt == 2
    with pytest.raises(BadInput, match="only failed or cancelled"):
        ledger.retry(job.id)


def test_retry_by_hand_refuses_when_a_twin_is_active(runtime):
    ledger = runtime.ledger
    job = running_as(ledger, ledger.runner, tries=1, unique_key="k1")
    ledger.fail(job, "boom")
    twin, created = ledger.insert(new_job(unique_key="k1"))
    assert created
    with pytest.raises(BadInput, match=f"job {twin.id} does the same work"):
        ledger.retry(job.id)


def test_prune_drops_old_finished_jobs_and_their_events(runtime):
    ledger = runtime.ledger
    with freeze_time(T0) as clock:
        old = running_as(ledger, ledger.runner, args={"n": 1})
        ledger.succeed(old, None)
        active, _ = ledger.insert(new_job(args={"n": 2}))
        clock.tick(dt.timedelta(days=31))
        recent = running_as(ledger, ledger.runner, args={"n": 3})
        ledger.succeed(recent, None)
        assert ledger.prune(dt.timedelta(days=30)) == 1
    assert Job.get_or_none(Job.id == old.id) is None
    assert JobEvent.select().where(JobEvent.job == old.id).count() == 0
    assert {j.id for j in Job.select()} == {active.id, recent.id}


def test_error_text_is_redacted(make_config, test_registry):
    from ispqueue.observability.logs import setup_logging
    from ispqueue.runtime import Runtime, initialise

    config = make_config(routers=[{"name": "r1", "host": "127.0.0.1", "username": "api",
                                   "password": "hunter2-secret"}])
    initialise(config)
    setup_logging(config.logging, config.secrets(), stderr=False)
    rt = Runtime(config, registry=test_registry)
    job = running_as(rt.ledger, rt.ledger.runner, tries=1)
    rt.ledger.fail(job, RuntimeError("login hunter2-secret refused"))
    stored = Job.get_by_id(job.id)
    assert "hunter2-secret" not in stored.error and "hunter2-secret" not in stored.traceback


@pytest.mark.parametrize(("attempt", "expected"), [(1, 30), (2, 120), (3, 600), (4, 600),
                                                   (9, 600)])
def test_backoff_list_last_value_repeats(attempt, expected):
    assert retry_delay((30, 120, 600), attempt, jitter=0) == expected


def test_backoff_jitter_is_small_and_positive():
    rng = random.Random(7)
    delays = [retry_delay((100,), 1, rng=rng) for _ in range(200)]
    assert all(100 <= d <= 110 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100
    assert retry_delay((), 1) == 0


def test_daemon_prunes_finished_jobs_past_the_configured_age(make_config, test_registry):
    from ispqueue.daemon import Daemon
    from ispqueue.runtime import Runtime, initialise

    config = make_config(ispqueue={"keep_finished_days": 7})
    initialise(config, test_registry)
    rt = Runtime(config, registry=test_registry)
    with freeze_time(T0) as clock:
        old = running_as(rt.ledger, rt.ledger.runner, args={"n": 1})
        rt.ledger.succeed(old, None)
        clock.tick(dt.timedelta(days=6))
        recent = running_as(rt.ledger, rt.ledger.runner, args={"n": 2})
        rt.ledger.succeed(recent, None)
        clock.tick(dt.timedelta(days=2))
        assert Daemon(rt, scheduler=False).prune() == 1
    assert [j.id for j in Job.select()] == [recent.id]
