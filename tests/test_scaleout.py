"""The scale-out path: the same code on PostgreSQL (data) and Redis (queue), chosen in config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL, REDIS_URL, require_service, wait_until

pytestmark = pytest.mark.services


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test; the URL selects it via search_path."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg2

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(POSTGRES_URL)
    conn.autocommit = True
    conn.cursor().execute(f"CREATE SCHEMA {name}")
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{name}"
    conn.cursor().execute(f"DROP SCHEMA {name} CASCADE")
    conn.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def scaled_config(make_config, pg_schema, redis_url):
    return make_config(database={"url": pg_schema},
                       queue={"backend": "redis", "url": redis_url})


def test_jobs_run_on_postgresql_and_redis(scaled_config, test_registry):
    from ispqueue.daemon import Daemon
    from ispqueue.models import Job
    from ispqueue.runtime import Runtime, initialise

    summary = initialise(scaled_config)
    assert summary["schema_version"] >= 1 and summary["queue_backend"] == "redis"
    rt = Runtime(scaled_config, registry=test_registry)
    assert rt.db.__class__.__name__ == "PostgresqlDatabase"
    daemon = Daemon(rt, scheduler=False)
    daemon.start()
    try:
        ids = [rt.enqueue("system.canary", {"queue": q}).job.id
               for q in ("default", "imports", "payments") for _ in range(10)]
        wait_until(lambda: Job.select().where(Job.status == "succeeded").count() == len(ids))
        again = rt.enqueue("system.canary", {"hold_seconds": 5})
        twin_free = rt.enqueue("system.canary", {"hold_seconds": 5})
        assert twin_free.job.id != again.job.id  # canary allows duplicates
    finally:
        daemon.hurry = True
        daemon.shutdown()


def test_unique_key_holds_on_postgresql(scaled_config, test_registry):
    from ispqueue.runtime import Runtime, initialise

    initialise(scaled_config)

    @test_registry.register("system.once", queue="default", timeout=5)
    def once(ctx):
        return None

    rt = Runtime(scaled_config, registry=test_registry)
    first = rt.enqueue("system.once", {})
    second = rt.enqueue("system.once", {})
    assert first.created and not second.created and first.job.id == second.job.id


def test_router_lock_is_shared_through_redis(scaled_config):
    from ispqueue.queues import QueueSet

    here, there = QueueSet(scaled_config.queue), QueueSet(scaled_config.queue)
    assert here.locks.acquire("router:core-1", "7:1") is None
    assert there.locks.acquire("router:core-1", "8:1") == "7:1"
    there.locks.release("router:core-1", "8:1")  # not the holder: no effect
    assert here.locks.held() == {"router:core-1": "7:1"}
    here.locks.release("router:core-1", "7:1")
    assert there.locks.acquire("router:core-1", "8:1") is None


def _write_config(path: Path, db_url: str, redis_url: str, data_dir: Path) -> None:
    path.write_text(
        f'[ispqueue]\ndata_dir = "{data_dir}"\n'
        f'[database]\nurl = "{db_url}"\n'
        f'[queue]\nbackend = "redis"\nurl = "{redis_url}"\ngrace_seconds = 2\n'
        '[queue.workers]\ndefault = 2\n'
        '[logging]\nfile = ""\n'
        '[schedule]\n"system.canary" = false\n'
    )


@pytest.mark.slow
def test_two_daemons_share_the_work_and_run_each_job_once(tmp_path, pg_schema, redis_url):
    from ispqueue.config import load_config
    from ispqueue.models import Job, JobEvent
    from ispqueue.runtime import Runtime, initialise

    config_path = tmp_path / "config.toml"
    _write_config(config_path, pg_schema, redis_url, tmp_path / "data")
    config = load_config(str(config_path))
    initialise(config)
    env = {**os.environ, "ISPQUEUE_CONFIG": str(config_path)}
    daemons = [subprocess.Popen([sys.executable, "-m", "ispqueue", "run"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for _ in range(2)]
    try:
        rt = Runtime(config)
        ids = [rt.enqueue("system.canary", {"hold_seconds": 0.05}).job.id for _ in range(60)]
        wait_until(lambda: Job.select().where(Job.id.in_(ids), Job.status == "succeeded")
                   .count() == len(ids), timeout=30)
        runs = (JobEvent.select().where(JobEvent.job.in_(ids), JobEvent.status == "running")
                .count())
        assert runs == len(ids)  # each job ran exactly once
        runners = {j.runner for j in Job.select(Job.runner).where(Job.id.in_(ids))}
        assert len(runners) == 2, f"both daemons should have taken work, got {runners}"
    finally:
        for proc in daemons:
            proc.send_signal(signal.SIGTERM)
        for proc in daemons:
            assert proc.wait(15) == 0, proc.stderr.read().decode()[-2000:]


def test_enqueue_with_the_queue_down_keeps_the_job_for_the_sweeper(make_config, pg_schema,
                                                                     test_registry):
    from ispqueue.models import Job
    from ispqueue.runtime import Runtime, initialise

    # A Redis URL nobody listens on: the ledger row is written, the message is not.
    config = make_config(database={"url": pg_schema},
                         queue={"backend": "redis", "url": "redis://127.0.0.1:1/0"})
    initialise(config, test_registry)
    rt = Runtime(config, registry=test_registry)
    done = rt.enqueue("system.canary", {})
    assert done.created and not done.sent
    assert Job.get_by_id(done.job.id).status == "queued"
    assert [j.id for j in rt.ledger.unsent(-1)] == [done.job.id]
