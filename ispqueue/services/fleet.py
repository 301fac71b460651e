"""The routers as a fleet: the config mirrored into the data store, and health probes.

`probe` asks one router who and how it is (login, `/system/resource`, `/system/identity`);
`classify` turns the answer into online / warning / offline; `check_routers` probes many side
by side and stores each outcome as it arrives, so one hung router never delays the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from ispqueue.config import Config, RouterConfig
from ispqueue.db import database, utcnow, write_transaction
from ispqueue.models import Router
from ispqueue.routeros.client import RouterClient
from ispqueue.routeros.errors import (
    RouterAuthFailed,
    RouterEncodingError,
    RouterError,
    RouterProtocolError,
    RouterTimeout,
    RouterTrap,
    RouterUnreachable,
    RouterUnsupported,
)

if TYPE_CHECKING:
    from ispqueue.context import JobContext

# Probes run side by side up to this many at once; each holds one socket and one thread.
MAX_PARALLEL = 32
STATUSES = ("online", "warning", "offline")

# How each failure reads in a status reason; the first matching class wins.
ERROR_KINDS: tuple[tuple[type[RouterError], str], ...] = (
    (RouterUnreachable, "unreachable"),
    (RouterAuthFailed, "auth failed"),
    (RouterTimeout, "timeout"),
    (RouterUnsupported, "unsupported menu"),
    (RouterTrap, "trap"),
    (RouterEncodingError, "encoding"),
    (RouterProtocolError, "protocol error"),
)
# A router that answered but refused a probe command is reachable, only not all well.
ANSWERED = (RouterTrap, RouterUnsupported)

# The routers this process serves, passwords included, as its config gave them. The data
# store mirrors everything but the password, so jobs take connection settings from here;
# `mirror_routers` sets them, and `ispqueue init` and the daemon call it with their config.


@dataclass(frozen=True)
class Thresholds:
    """Above any of these a reachable router is `warning` rather than `online`."""

    max_latency_ms: float = 1000.0
    max_cpu_load: float = 90.0
    max_memory_percent: float = 90.0


@dataclass(frozen=True)
class Probe:
    """What one probe of one router found: its readings, or the error that stopped it."""

    router: str
    checked_at: datetime
    budget: float  # seconds the probe was allowed
    elapsed: float  # seconds it took
    latency_ms: float | None = None
    identity: str | None = None
    version: str | None = None
    uptime: str | None = None
    board_name: str | None = None
    cpu_load: int | None = None
    memory_used_percent: float | None = None
    error: RouterError | None = None

    @property
    def reason(self) -> str | None:
        """The error in a few words: `unreachable: Connection refused`, `timeout after 5s`."""
        if self.error is None:
            return None
        if isinstance(self.error, RouterTimeout):
            return f"timeout after {self.budget:.3g}s"
        kind = next((k for cls, k in ERROR_KINDS if isinstance(self.error, cls)), "error")
        return f"{kind}: {self.error.text}"


@dataclass(frozen=True)
class Health:
    """A probe and its verdict."""

    probe: Probe
    status: str
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        return "; ".join(self.reasons) or None


# -- the mirror ------------------------------------------------------------------------------


def mirror_routers(config: Config) -> dict[str, list[str]]:
    """Upsert every `[[routers]]` entry into the data store; routers gone from the config
    stay, disabled, with their history."""
    now = utcnow()
    done: dict[str, list[str]] = {"added": [], "changed": [], "disabled": []}
    with write_transaction():
        rows = {row.name: row for row in Router.select()}
        for router in config.routers:
            wanted = _mirrored(router)
            row = rows.pop(router.name, None)
            if row is None:
                # Another daemon starting at the same moment may insert it first.
                Router.insert(name=router.name, created_at=now, updated_at=now, **wanted
                              ).on_conflict_ignore().execute()
                done["added"].append(router.name)
            elif any(getattr(row, key) != value for key, value in wanted.items()):
                Router.update(updated_at=now, **wanted).where(Router.id == row.id).execute()
                done["changed"].append(router.name)
        for row in rows.values():
            if row.enabled:
                Router.update(enabled=False, updated_at=now).where(Router.id == row.id).execute()
                done["disabled"].append(row.name)
    if any(done.values()):
        logger.info("routers from the config: {}", "; ".join(
            f"{what} {', '.join(names)}" for what, names in done.items() if names))
    return done


def _mirrored(router: RouterConfig) -> dict[str, Any]:
    return {"host": router.host, "port": router.port, "username": router.username,
            "tls": router.tls, "auth_mode": router.auth_mode, "enabled": router.enabled,
            "expected_identity": router.identity}


# -- probing ---------------------------------------------------------------------------------


def probe(router: RouterConfig, deadline: float,
          on_cancel: Callable[[Callable[[], None]], None] | None = None) -> Probe:
    """Log in and read resource and identity, within the router's timeout and `deadline`
    (monotonic); router failures come back in `Probe.error`, never raised."""
    started = time.monotonic()
    budget = max(0.0, min(router.timeout, deadline - started))
    try:
        with RouterClient.connect(router, deadline=started + budget,
                                  on_cancel=on_cancel) as client:
            resource = client.resource()
            asked = time.monotonic()
            identity = client.identity()
            latency_ms = (time.monotonic() - asked) * 1000
    except RouterError as exc:
        return Probe(router.name, utcnow(), budget, time.monotonic() - started, error=exc)
    return Probe(router.name, utcnow(), budget, time.monotonic() - started,
                 latency_ms=round(latency_ms, 1), identity=identity, **_readings(resource))


def _readings(resource: dict[str, str]) -> dict[str, Any]:
    return {"version": resource.get("version"), "uptime": resource.get("uptime"),
            "board_name": resource.get("board-name"),
            "cpu_load": _whole(resource.get("cpu-load")),
            "memory_used_percent": _memory_used(resource)}


def _whole(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _memory_used(resource: dict[str, str]) -> float | None:
    total, free = _whole(resource.get("total-memory")), _whole(resource.get("free-memory"))
    if not total or free is None or free > total:
        return None
    return round((total - free) * 100 / total, 1)


def classify(probe: Probe, thresholds: Thresholds,
             expected_identity: str | None = None) -> tuple[str, list[str]]:
    """online, warning or offline, and the reasons (none when online)."""
    if probe.error is not None:
        return ("warning" if isinstance(probe.error, ANSWERED) else "offline"), [probe.reason]
    reasons = []
    if probe.latency_ms is not None and probe.latency_ms > thresholds.max_latency_ms:
        reasons.append(f"latency {probe.latency_ms:.0f} ms above {thresholds.max_latency_ms:g}")
    if probe.cpu_load is not None and probe.cpu_load > thresholds.max_cpu_load:
        reasons.append(f"cpu load {probe.cpu_load}% above {thresholds.max_cpu_load:g}%")
    memory = probe.memory_used_percent
    if memory is not None and memory > thresholds.max_memory_percent:
        reasons.append(f"memory use {memory:g}% above {thresholds.max_memory_percent:g}%")
    if expected_identity is not None and probe.identity != expected_identity:
        reasons.append(f"identity is {probe.identity!r}, expected {expected_identity!r}")
    return ("warning" if reasons else "online"), reasons


def check_router(router: RouterConfig, thresholds: Thresholds | None = None) -> Health:
    """Probe one router now and judge it; stores nothing (`routers check`)."""
    found = probe(router, time.monotonic() + router.timeout)
    return Health(found, *classify(found, thresholds or Thresholds(), router.identity))


def check_routers(routers: Sequence[RouterConfig], thresholds: Thresholds,
                  ctx: JobContext) -> dict[str, Any]:
    """Probe routers side by side within the job's deadline and store each verdict as it
    arrives; the run's summary."""
    verdicts: list[Health] = []
    if not routers:
        return summary(verdicts)
    pool = ThreadPoolExecutor(min(MAX_PARALLEL, len(routers)), thread_name_prefix="probe")
    try:
        futures = {pool.submit(probe, r, ctx.deadline, ctx.on_cancel): r for r in routers}
        for done, future in enumerate(as_completed(futures), start=1):
            found = future.result()
            # An interrupted run's probes end early; their "timeout" must not be stored.
            ctx.check()
            router = futures[future]
            health = Health(found, *classify(found, thresholds, router.identity))
            record(router, health, ctx.log)
            verdicts.append(health)
            ctx.progress(done, len(futures))
    finally:
        # An interrupted run must not wait here: its sockets are already closed.
        pool.shutdown(wait=False, cancel_futures=True)
    return summary(verdicts)


def record(router: RouterConfig, health: Health, log: Any = logger) -> None:
    """Store a verdict on the router's row; one log line when its status changed."""
    found = health.probe
    fields: dict[str, Any] = {
        "status": health.status, "status_reason": health.reason, "checked_at": found.checked_at,
        "latency_ms": found.latency_ms, "uptime": found.uptime, "cpu_load": found.cpu_load,
        "memory_used_percent": found.memory_used_percent,
    }
    if found.error is None:
        fields |= {"identity": found.identity, "version": found.version,
                   "board_name": found.board_name}
    else:
        fields["last_error"] = str(found.error)  # the last known identity and version stay
    with write_transaction():
        query = Router.select(Router.id, Router.status).where(Router.name == router.name)
        if database.for_update:
            query = query.for_update()  # two runs probing one router log its change once
        row = query.first() or _add(router)
        previous = row.status
        if health.status != previous:
            fields["status_changed_at"] = found.checked_at
        Router.update(**fields).where(Router.id == row.id).execute()
    if health.status != previous:
        level = "INFO" if health.status == "online" else "WARNING"
        note = f": {health.reason}" if health.reason else ""
        log.bind(router=router.name).log(level, "router {} {} → {}{}", router.name, previous,
                                         health.status, note)


def _add(router: RouterConfig) -> Router:
    # A router added to the config since the last mirror: the daemon had not restarted.
    now = utcnow()
    return Router.create(name=router.name, created_at=now, updated_at=now, **_mirrored(router))


def summary(outcomes: Iterable[Health]) -> dict[str, Any]:
    """Counts per status, and each router's status and reason."""
    outcomes = sorted(outcomes, key=lambda h: h.probe.router)
    counts = dict.fromkeys(STATUSES, 0)
    for health in outcomes:
        counts[health.status] += 1
    return {"counts": counts, "routers": {
        h.probe.router: {"status": h.status, "reason": h.reason, "latency_ms": h.probe.latency_ms}
        for h in outcomes}}
