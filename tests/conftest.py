"""Shared fixtures: a temporary installation (config, data store, queues) and an in-process
daemon; plus the rule for the real Redis and PostgreSQL servers."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ispqueue.config import Config, parse_config
from ispqueue.registry import Registry
from ispqueue.registry import registry as default_registry

POSTGRES_URL = os.environ.get("ISPQUEUE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ISPQUEUE_TEST_REDIS", "redis://127.0.0.1:6379/15")


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when the server is truly absent on a user's machine; in CI it must be there."""
    if service_up(host, port):
        return
    message = f"{name} is not running on {host}:{port}"
    if os.environ.get("ISPQUEUE_REQUIRE_SERVICES"):
        pytest.fail(f"{message}, and ISPQUEUE_REQUIRE_SERVICES is set")
    pytest.skip(message)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Build a Config for a data dir under tmp_path; keyword sections override defaults."""
    def make(**sections: Any) -> Config:
        data: dict[str, Any] = {
            "ispqueue": {"data_dir": str(tmp_path / "data")},
            "schedule": {"system.canary": False},
            "logging": {"file": str(tmp_path / "logs" / "ispqueue.jsonl"), "level": "DEBUG"},
        }
        for name, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(name), dict):
                data[name] = {**data[name], **value}
            else:
                data[name] = value
        path = tmp_path / "config.toml"
        return parse_config(data, path)
    return make


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
def test_registry() -> Registry:
    """A copy of the product registry that tests may add their own job types to."""
    import ispqueue.jobs  # noqa: F401

    return Registry(dict(default_registry.types), dict(default_registry.legacy))


@pytest.fixture
def runtime(config: Config, test_registry: Registry) -> Iterator[Any]:
    from ispqueue.runtime import Runtime, initialise

    initialise(config, test_registry)
    rt = Runtime(config, registry=test_registry)
    yield rt
    rt.db.close()


@pytest.fixture
def daemon(runtime: Any) -> Iterator[Any]:
    """The daemon's consumers and supervisor running in this process (no signals)."""
    from ispqueue.daemon import Daemon

    d = Daemon(runtime, scheduler=False)
    d.start()
    yield d
    d.hurry = True
    d.shutdown()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.02,
               tick: Callable[[], Any] | None = None) -> Any:
    """Poll `predicate` until truthy (calling `tick` between polls); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        if tick is not None:
            tick()
        time.sleep(step)
