"""The job state machine: every outcome of a run, recorded in the ledger."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time

import pytest
from freezegun import freeze_time

from ispqueue.context import PermanentFailure
from ispqueue.models import Job, JobEvent
from ispqueue.registry import Param
from tests.conftest import wait_until


def events(job_id: int) -> list[str]:
    return [e.status for e in JobEvent.select().where(JobEvent.job == job_id).order_by(JobEvent.id)]


def fresh(job_id: int) -> Job:
    return Job.get_by_id(job_id)


@pytest.fixture
def calls() -> list:
    return []


@pytest.fixture
def flaky(test_registry, calls):
    """system.flaky: fails `fail_times` times, then returns its attempt number."""
    @test_registry.register("system.flaky", queue="default", timeout=5, tries=3,
                            backoff=(30, 120), params=(Param("fail_times", "int", default=0),
                                                       Param("tag")))
    def handler(ctx):
        calls.append(ctx.attempt)
        if ctx.attempt <= ctx.args["fail_times"]:
            raise RuntimeError(f"boom {ctx.attempt}")
        return {"attempt": ctx.attempt}
    return handler


def test_success_records_result_duration_and_events(runtime, flaky):
    job = runtime.enqueue("system.flaky", {}).job
    runtime.executor.run(job.id)
    job = fresh(job.id)
    assert job.status == "succeeded"
    assert job.result_dict == {"attempt": 1}
    assert job.duration is not None and job.duration >= 0
    assert job.active_key is None and job.unique_key is not None
    assert events(job.id) == ["queued", "running", "succeeded"]


def test_failure_retries_on_backoff_then_fails(runtime, flaky, calls):
    start = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)
    with freeze_time(start) as clock:
        job = runtime.enqueue("system.flaky", {"fail_times": 5}).job
        runtime.executor.run(job.id)
        job = fresh(job.id)
        assert job.status == "retrying" and job.error == "RuntimeError: boom 1"
        first_delay = (job.scheduled_for - start).total_seconds()
        assert 30 <= first_delay <= 33  # 30 s + up to 10 % jitter

        clock.tick(29)
        assert runtime.ledger.promote_due() == []  # not due before the backoff
        clock.tick(first_delay - 29)
        assert [j.id for j in runtime.ledger.promote_due()] == [job.id]
        runtime.executor.run(job.id)
        job = fresh(job.id)
        assert job.status == "retrying"
        second_delay = (job.scheduled_for - dt.datetime.now(dt.UTC)).total_seconds()
        assert 120 <= second_delay <= 132

        clock.tick(second_delay)
        runtime.ledger.promote_due()
        runtime.executor.run(job.id)
    job = fresh(job.id)
    assert job.status == "failed" and job.error == "RuntimeError: boom 3"
    assert "RuntimeError: boom 3" in job.traceback
    assert calls == [1, 2, 3]
    assert events(job.id) == ["queued", "running", "retrying", "queued", "running",
                              "retrying", "queued", "running", "failed"]


def test_permanent_failure_does_not_retry(runtime, test_registry):
    @test_registry.register("system.bad_input", queue="default", timeout=5, tries=3,
                            backoff=(1,))
    def handler(ctx):
        raise PermanentFailure("customer has no package")

    job = runtime.enqueue("system.bad_input", {}).job
    runtime.executor.run(job.id)
    assert fresh(job.id).status == "failed"
    assert fresh(job.id).attempt == 1


def test_stale_or_duplicate_message_is_dropped(runtime, flaky, calls):
    job = runtime.enqueue("system.flaky", {}).job
    runtime.executor.run(job.id)
    runtime.executor.run(job.id)  # the same message delivered twice
    assert calls == [1]
    cancelled = runtime.enqueue("system.flaky", {"tag": "x"}).job
    runtime.ledger.cancel(cancelled.id)
    runtime.executor.run(cancelled.id)
    assert calls == [1]
    assert fresh(cancelled.id).status == "cancelled"


@pytest.fixture
def silent_server():
    """A TCP server that accepts and never answers (a hung router)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


def test_timeout_frees_the_worker_even_when_blocked_in_a_socket_read(
        make_config, test_registry, silent_server):
    from ispqueue.daemon import Daemon
    from ispqueue.runtime import Runtime, initialise

    @test_registry.register("system.blocked_read", queue="default", timeout=0.5, tries=1)
    def blocked(ctx):
        conn = socket.create_connection(("127.0.0.1", silent_server))
        conn.recv(1)  # no timeout, nothing registered with ctx: the worst case

    config = make_config(queue={"workers": {"default": 1}})
    initialise(config)
    rt = Runtime(config, registry=test_registry)
    daemon = Daemon(rt, queues=["default"], scheduler=False)
    daemon.start()
    try:
        stuck = rt.enqueue("system.blocked_read", {}).job
        started = time.monotonic()
        wait_until(lambda: fresh(stuck.id).status == "failed", timeout=5)
        assert time.monotonic() - started < 2.0
        assert "timed out after 0.5s" in fresh(stuck.id).error
        after = rt.enqueue("system.canary", {}).job  # the only worker serves the next job
        wait_until(lambda: fresh(after.id).status == "succeeded", timeout=5)
    finally:
        daemon.hurry = True
        daemon.shutdown()


def test_timeout_closes_what_the_job_registered(runtime, test_registry, silent_server):
    closed = threading.Event()

    @test_registry.register("system.registered_read", queue="default", timeout=0.3, tries=2,
                            backoff=(10,))
    def handler(ctx):
        conn = socket.create_connection(("127.0.0.1", silent_server))
        ctx.on_cancel(lambda: conn.shutdown(socket.SHUT_RDWR))
        try:
            conn.recv(1)
        finally:
            closed.set()

    job = runtime.enqueue("system.registered_read", {}).job
    runtime.executor.run(job.id)
    assert closed.wait(1.0), "the blocked read was not released by the interruption"
    job = fresh(job.id)
    assert job.status == "retrying" and "timed out" in job.error


def test_interrupt_stops_a_pure_python_loop(runtime, test_registry):
    stopped = threading.Event()

    @test_registry.register("system.spin", queue="default", timeout=0.3, tries=1)
    def spin(ctx):
        try:
            while True:
                sum(range(100))
        finally:
            stopped.set()

    job = runtime.enqueue("system.spin", {}).job
    runtime.executor.run(job.id)
    assert stopped.wait(1.0)
    assert fresh(job.id).status == "failed"


def test_cancel_of_a_running_job_interrupts_it(runtime, daemon):
    job = runtime.enqueue("system.canary", {"hold_seconds": 30}).job
    wait_until(lambda: fresh(job.id).status == "running")
    assert runtime.ledger.cancel(job.id) == "cancel requested"
    wait_until(lambda: fresh(job.id).status == "cancelled", timeout=5, tick=daemon.heartbeat)
    assert events(job.id)[-1] == "cancelled"


def test_unique_enqueue_returns_the_active_job(runtime, flaky):
    first = runtime.enqueue("system.flaky", {"fail_times": 0, "tag": "a"})
    again = runtime.enqueue("system.flaky", {"tag": "a", "fail_times": 0})
    other = runtime.enqueue("system.flaky", {"tag": "b"})
    assert first.created and not again.created
    assert again.job.id == first.job.id and other.job.id != first.job.id
    runtime.executor.run(first.job.id)
    later = runtime.enqueue("system.flaky", {"fail_times": 0, "tag": "a"})
    assert later.created and later.job.id != first.job.id  # the first one is finished


def test_unique_enqueue_is_atomic_across_threads(runtime, flaky):
    ids: list[int] = []
    barrier = threading.Barrier(8)

    def enqueue():
        barrier.wait()
        ids.append(runtime.enqueue("system.flaky", {"tag": "race"}).job.id)
    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert Job.select().where(Job.type == "system.flaky").count() == 1


def test_router_lock_contention_defers_without_using_a_try(make_config, test_registry):
    from ispqueue.runtime import Runtime, initialise

    config = make_config(routers=[{"name": "core-1", "host": "127.0.0.1", "username": "a",
                                   "password": "secret-pw"}])
    initialise(config)
    rt = Runtime(config, registry=test_registry)
    inside = threading.Event()
    release = threading.Event()

    @test_registry.register("router.test_write", queue="provisioning", timeout=5, tries=1,
                            router_lock=True, needs_router=True, unique=False)
    def write(ctx):
        inside.set()
        release.wait(5)
        return "written"

    first = rt.enqueue("router.test_write", router="core-1").job
    second = rt.enqueue("router.test_write", router="core-1").job
    runner = threading.Thread(target=rt.executor.run, args=(first.id,))
    runner.start()
    assert inside.wait(2)
    started = time.monotonic()
    rt.executor.run(second.id)  # finds the lock taken
    assert time.monotonic() - started < 0.5, "a taken lock must not block the worker"
    deferred = fresh(second.id)
    assert deferred.status == "scheduled" and deferred.attempt == 0
    last = JobEvent.select().where(JobEvent.job == second.id).order_by(JobEvent.id.desc()).get()
    assert f"locked by job {first.id}" in last.message
    release.set()
    runner.join()
    with freeze_time(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)):
        assert [j.id for j in rt.ledger.promote_due()] == [second.id]
    rt.executor.run(second.id)
    assert fresh(second.id).status == "succeeded" and fresh(second.id).attempt == 1
    assert rt.queues.locks.held() == {}


def test_chained_job_records_its_parent(runtime, test_registry):
    @test_registry.register("system.parent", queue="default", timeout=5)
    def parent(ctx):
        child_id = ctx.enqueue("system.canary", {"queue": "imports"})
        return {"child": child_id}

    job = runtime.enqueue("system.parent", {}).job
    runtime.executor.run(job.id)
    child = Job.get_by_id(fresh(job.id).result_dict["child"])
    assert child.parent_id == job.id and child.source == "chain" and child.queue == "imports"


def test_progress_is_recorded(runtime, test_registry):
    @test_registry.register("system.counting", queue="default", timeout=5)
    def counting(ctx):
        for done in range(1, 6):
            ctx.progress(done, 5)
        return None

    job = runtime.enqueue("system.counting", {}).job
    runtime.executor.run(job.id)
    job = fresh(job.id)
    assert (job.progress_done, job.progress_total) == (5, 5)


def test_context_names_its_router_or_every_enabled_one(make_config, test_registry):
    from ispqueue.runtime import Runtime, initialise

    routers = [{"name": n, "host": "127.0.0.1", "username": "a", "password": "pw",
                "enabled": n != "off-1"} for n in ("core-1", "off-1", "edge-1")]
    config = make_config(routers=routers)
    initialise(config, test_registry)
    rt = Runtime(config, registry=test_registry)

    @test_registry.register("router.names", queue="default", timeout=5, router_optional=True)
    def names(ctx):
        return [r.name for r in ctx.routers()]

    fleet_job = rt.enqueue("router.names", {}).job
    one_job = rt.enqueue("router.names", {}, router="edge-1").job
    rt.executor.run(fleet_job.id)
    rt.executor.run(one_job.id)
    assert fresh(fleet_job.id).result_dict == ["core-1", "edge-1"]
    assert fresh(one_job.id).result_dict == ["edge-1"]


def test_a_closing_executor_leaves_new_messages_unclaimed(runtime, flaky, calls):
    job = runtime.enqueue("system.flaky", {}).job
    runtime.executor.closing = True
    runtime.executor.run(job.id)
    assert calls == [] and fresh(job.id).status == "queued" and fresh(job.id).attempt == 0
