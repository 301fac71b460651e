"""Fixtures for RouterOS tests: a simulated router on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ispqueue.routeros.sim import RouterSim


@pytest.fixture
def router_sim(request: pytest.FixtureRequest) -> Iterator[RouterSim]:
    """A started RouterSim (admin / secret); `indirect` parametrisation passes options."""
    options = {"host": "127.0.0.1", "port": 0, "username": "admin", "password": "secret",
               "seed": 1, **getattr(request, "param", {})}
    sim = RouterSim(**options).start()
    yield sim
    sim.stop()
