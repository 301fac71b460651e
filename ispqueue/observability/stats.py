"""Numbers for `ispqueue stats`: per-queue depth and per-type outcomes, from the ledger."""

from __future__ import annotations

from typing import Any

from peewee import fn

from ispqueue.config import QUEUES
from ispqueue.db import utcnow
from ispqueue.models import Job, JobEvent


def collect_stats(rt: Any, since: str) -> dict[str, Any]:
    """Queue depths now, and per-type counts and durations for jobs finished since `since`."""
    from ispqueue.observability.logs import parse_since

    start = parse_since(since)
    return {"since": start.isoformat(timespec="seconds"), "queues": _queues(rt),
            "types": _types(start)}


def _queues(rt: Any) -> dict[str, dict[str, Any]]:
    counts = {(q, s): n for q, s, n in Job.select(Job.queue, Job.status, fn.COUNT(Job.id))
              .where(Job.status.in_(("queued", "scheduled", "retrying", "running")))
              .group_by(Job.queue, Job.status).tuples()}
    oldest = dict(Job.select(Job.queue, fn.MIN(Job.queued_at)).where(Job.status == "queued")
                  .group_by(Job.queue).tuples())
    # The dead-man's switch: how long since each queue last ran a canary end to end.
    canaries = dict(Job.select(Job.queue, fn.MAX(Job.finished_at))
                    .where(Job.type == "system.canary", Job.status == "succeeded")
                    .group_by(Job.queue).tuples())
    now = utcnow()
    result = {}
    for name in QUEUES:
        first, canary = _moment(oldest.get(name)), _moment(canaries.get(name))
        result[name] = {
            "queued": counts.get((name, "queued"), 0),
            "scheduled": counts.get((name, "scheduled"), 0) + counts.get((name, "retrying"), 0),
            "running": counts.get((name, "running"), 0),
            "messages": rt.queues.depth(name),
            "oldest_queued_seconds": (now - first).total_seconds() if first else None,
            "last_canary_seconds": (now - canary).total_seconds() if canary else None,
        }
    return result


def _moment(value: Any) -> Any:
    # SQLite returns aggregates of datetime columns as text.
    return Job.queued_at.python_value(value) if isinstance(value, str) else value


def _types(start: Any) -> dict[str, dict[str, Any]]:
    finished = (Job.select(Job.type, Job.status, Job.duration)
                .where(Job.finished_at >= start, Job.status.in_(("succeeded", "failed",
                                                                 "cancelled"))).tuples())
    retries = dict(JobEvent.select(Job.type, fn.COUNT(JobEvent.id)).join(Job)
                   .where(JobEvent.status == "retrying", JobEvent.at >= start)
                   .group_by(Job.type).tuples())
    by_type: dict[str, dict[str, Any]] = {}
    for type_name, status, duration in finished:
        entry = by_type.setdefault(type_name, {"succeeded": 0, "failed": 0, "cancelled": 0,
                                               "durations": []})
        entry[status] += 1
        if duration is not None and status == "succeeded":
            entry["durations"].append(duration)
    for type_name, entry in by_type.items():
        durations = sorted(entry.pop("durations"))
        done = entry["succeeded"] + entry["failed"]
        entry["retries"] = retries.get(type_name, 0)
        entry["p50"] = percentile(durations, 0.50)
        entry["p95"] = percentile(durations, 0.95)
        entry["failure_rate"] = entry["failed"] / done if done else None
    return dict(sorted(by_type.items()))


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return None
    rank = max(1, round(fraction * len(values) + 0.5 - 1e-9))
    return values[min(rank, len(values)) - 1]
