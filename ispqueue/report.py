"""What the CLI reads from people and shows to them: argument parsing and plain-text views."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import TYPE_CHECKING, Any

from ispqueue.db import utcnow
from ispqueue.errors import BadInput
from ispqueue.models import FINAL, Job, JobEvent, Router
from ispqueue.registry import Registry

if TYPE_CHECKING:
    from ispqueue.services.fleet import Health

AGE = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# -- reading input ---------------------------------------------------------------------------

def parse_job_args(pairs: tuple[str, ...], args_json: str | None) -> dict[str, Any]:
    """--args-json as the base, each --arg key=value on top (values are text until the
    type's parameters parse them)."""
    args: dict[str, Any] = {}
    if args_json:
        try:
            args = json.loads(args_json)
        except ValueError as exc:
            raise BadInput(f"--args-json is not valid JSON: {exc}") from None
        if not isinstance(args, dict):
            raise BadInput("--args-json must be a JSON object")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--arg expects KEY=VALUE, got {pair!r}")
        args[key.strip()] = value
    return args


def parse_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--at: not an ISO-8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise BadInput(f"--at: give a timezone offset, e.g. {text}+00:00")
    return moment


def parse_age(text: str) -> dt.timedelta:
    """'30d', '12h', '45m', '90s', '2w' → timedelta."""
    match = AGE.match(text.strip())
    if not match:
        raise BadInput(f"expected an age like 30d, 12h or 45m, got {text!r}")
    return dt.timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


def wait_for(rt: Any, job_id: int, timeout: float | None) -> Job:
    """Poll the ledger until the job is final (or `timeout` seconds pass)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = rt.ledger.get(job_id)
        if job.status in FINAL:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            return job
        time.sleep(0.1)


def list_jobs(rt: Any, *, status: str | None, type_name: str | None, router: str | None,
              since: str | None, limit: int) -> list[Job]:
    from ispqueue.observability.logs import parse_since

    query = Job.select().order_by(Job.id.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    if type_name:
        job_type, _, _ = rt.registry.resolve(type_name)
        query = query.where(Job.type == job_type.name)
    if router:
        query = query.where(Job.router == router)
    if since:
        query = query.where(Job.enqueued_at >= parse_since(since))
    return list(query)


# -- views -------------------------------------------------------------------------------------

def job_dict(job: Job, full: bool = False) -> dict[str, Any]:
    data = {
        "id": job.id, "type": job.type, "status": job.status, "queue": job.queue,
        "priority": job.priority, "attempt": job.attempt, "tries": job.tries,
        "timeout": job.timeout, "router": job.router, "args": job.args_dict,
        "unique_key": job.unique_key, "source": job.source,
        "parent": job.parent_id, "enqueued_at": _iso(job.enqueued_at),
        "scheduled_for": _iso(job.scheduled_for), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "duration": job.duration,
        "runner": job.runner, "heartbeat_at": _iso(job.heartbeat_at),
        "progress": _progress(job), "result": job.result_dict, "error": job.error,
    }
    if full:
        data["traceback"] = job.traceback
        data["events"] = [
            {"at": _iso(e.at), "status": e.status, "attempt": e.attempt,
             "message": e.message, "runner": e.runner}
            for e in JobEvent.select().where(JobEvent.job == job.id).order_by(JobEvent.id)
        ]
    return data


TIMES = ("enqueued_at", "scheduled_for", "started_at", "finished_at")


def format_job(job: Job, full: bool = False, tz: dt.tzinfo | None = None) -> str:
    """A job for people: times in `tz` (the configured timezone), JSON stays UTC."""
    data = job_dict(job, full)
    for key in TIMES:
        data[key] = _local(getattr(job, key), tz)
    lines = [f"job {job.id}  {job.type}  {job.status}"]
    for key in ("queue", "router", "args", "attempt", "tries", "source", "parent", *TIMES,
                "duration", "runner", "progress", "result", "error"):
        value = data[key]
        if value not in (None, {}, ""):
            lines.append(f"  {key:<13} {_text(value)}")
    if full:
        if job.traceback:
            lines.append("  traceback:")
            lines.extend("    " + line for line in job.traceback.rstrip().splitlines())
        lines.append("  events:")
        for event in JobEvent.select().where(JobEvent.job == job.id).order_by(JobEvent.id):
            note = f"  {event.message}" if event.message else ""
            lines.append(f"    {_local(event.at, tz)}  {event.status:<10} #{event.attempt}{note}")
    return "\n".join(lines)


def format_job_table(jobs: list[Job], tz: dt.tzinfo | None = None) -> str:
    if not jobs:
        return "no jobs"
    rows = [("ID", "TYPE", "STATUS", "ROUTER", "TRY", "ENQUEUED", "DURATION", "ERROR")]
    for job in jobs:
        rows.append((str(job.id), job.type, job.status, job.router or "-",
                     f"{job.attempt}/{job.tries}", _short_time(job.enqueued_at, tz),
                     f"{job.duration:.2f}s" if job.duration is not None else "-",
                     (job.error or "")[:60]))
    return table(rows)


def type_rows(registry: Registry) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "group": t.group, "queue": t.policy.queue if not t.queue_arg
         else f"(arg {t.queue_arg}, default {t.policy.queue})",
         "timeout": t.policy.timeout, "tries": t.policy.tries, "backoff": list(t.policy.backoff),
         "unique": t.policy.unique if isinstance(t.policy.unique, bool)
         else list(t.policy.unique), "router_lock": t.policy.router_lock,
         "legacy": list(t.legacy), "description": t.description.splitlines()[0]
         if t.description else ""}
        for t in sorted(registry.types.values(), key=lambda t: t.name)
    ]


def format_types(rows: list[dict[str, Any]]) -> str:
    lines = [("TYPE", "GROUP", "QUEUE", "TIMEOUT", "TRIES", "BACKOFF", "LEGACY")]
    for row in rows:
        lines.append((row["name"], row["group"], row["queue"], f"{row['timeout']:g}",
                      str(row["tries"]), ",".join(f"{b:g}" for b in row["backoff"]) or "-",
                      ",".join(row["legacy"]) or "-"))
    return table(lines)


def format_init(summary: dict[str, Any]) -> str:
    applied = summary["migrations_applied"]
    done = f"applied migrations {applied}" if applied else "schema already current"
    return (f"data dir {summary['data_dir']}\ndatabase {summary['database']} "
            f"(schema {summary['schema_version']}, {done})\nqueue backend "
            f"{summary['queue_backend']}")


def format_stats(data: dict[str, Any]) -> str:
    lines = [("QUEUE", "QUEUED", "SCHEDULED", "RUNNING", "MESSAGES", "OLDEST QUEUED",
              "LAST CANARY")]
    for name, q in data["queues"].items():
        lines.append((name, str(q["queued"]), str(q["scheduled"]), str(q["running"]),
                      str(q["messages"]), _age(q["oldest_queued_seconds"]),
                      _age(q["last_canary_seconds"])))
    out = [table(lines), "", f"since {data['since']}:"]
    rows = [("TYPE", "SUCCEEDED", "FAILED", "RETRIES", "CANCELLED", "P50", "P95", "FAIL RATE")]
    for name, t in data["types"].items():
        rows.append((name, str(t["succeeded"]), str(t["failed"]), str(t["retries"]),
                     str(t["cancelled"]), _seconds(t["p50"]), _seconds(t["p95"]),
                     f"{t['failure_rate'] * 100:.1f}%" if t["failure_rate"] is not None
                     else "-"))
    out.append(table(rows) if len(rows) > 1 else "no finished jobs")
    return "\n".join(out)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def _progress(job: Job) -> str | None:
    if job.progress_done is None:
        return None
    return f"{job.progress_done}/{job.progress_total}" if job.progress_total else \
        str(job.progress_done)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _local(moment: dt.datetime | None, tz: dt.tzinfo | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(tz or dt.UTC).isoformat(timespec="seconds")


def _short_time(moment: dt.datetime, tz: dt.tzinfo | None) -> str:
    age = utcnow() - moment
    local = moment.astimezone(tz or dt.UTC)
    return local.strftime("%H:%M:%S") if age < dt.timedelta(days=1) \
        else local.strftime("%Y-%m-%d")


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)


# -- routers -----------------------------------------------------------------------------------

def list_routers() -> list[Router]:
    """Every router the data store knows, enabled first, by name."""
    return list(Router.select().order_by(Router.enabled.desc(), Router.name))


def router_dict(router: Router) -> dict[str, Any]:
    return {
        "name": router.name, "host": router.host, "port": router.port,
        "username": router.username, "tls": router.tls, "auth_mode": router.auth_mode,
        "enabled": router.enabled, "expected_identity": router.expected_identity,
        "status": router.status, "status_reason": router.status_reason,
        "last_error": router.last_error, "latency_ms": router.latency_ms,
        "uptime": router.uptime, "version": router.version, "board_name": router.board_name,
        "identity": router.identity, "cpu_load": router.cpu_load,
        "memory_used_percent": router.memory_used_percent,
        "checked_at": _iso(router.checked_at),
        "status_changed_at": _iso(router.status_changed_at),
    }


def format_router_table(routers: list[Router]) -> str:
    if not routers:
        return "no routers (declare [[routers]] in the config, then run `ispqueue init`)"
    rows = [("NAME", "ADDRESS", "TLS", "ENABLED", "STATUS", "LATENCY", "VERSION", "CHECKED",
             "REASON")]
    for router in routers:
        rows.append((router.name, f"{router.host}:{router.port}", _yes(router.tls),
                     _yes(router.enabled), router.status, _millis(router.latency_ms),
                     router.version or "-", _ago(router.checked_at),
                     (router.status_reason or "")[:60]))
    return table(rows)


def health_dict(health: Health) -> dict[str, Any]:
    probe = health.probe
    return {
        "router": probe.router, "ok": probe.error is None, "status": health.status,
        "reasons": health.reasons, "error": str(probe.error) if probe.error else None,
        "identity": probe.identity, "version": probe.version, "board_name": probe.board_name,
        "uptime": probe.uptime, "latency_ms": probe.latency_ms, "cpu_load": probe.cpu_load,
        "memory_used_percent": probe.memory_used_percent, "seconds": round(probe.elapsed, 3),
        "checked_at": _iso(probe.checked_at),
    }


def format_health(health: Health) -> str:
    probe = health.probe
    lines = [f"router {probe.router}  {health.status}"]
    if probe.error is not None:
        return "\n".join([*lines, f"  error     {probe.error}"])
    lines += [f"  login     ok, checked in {probe.elapsed * 1000:.0f} ms",
              f"  identity  {probe.identity}",
              f"  version   {probe.version or '-'}  ({probe.board_name or 'board unknown'})",
              f"  latency   {_millis(probe.latency_ms)}",
              f"  uptime    {probe.uptime or '-'}",
              f"  cpu load  {_percent(probe.cpu_load)}",
              f"  memory    {_percent(probe.memory_used_percent)} used"]
    lines += [f"  warning   {reason}" for reason in health.reasons]
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _millis(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:g}%"


def _ago(moment: dt.datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((utcnow() - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
