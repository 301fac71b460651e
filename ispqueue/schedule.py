"""Fires `[schedule]` entries: at each new minute, every matching entry enqueues its jobs.

Why not Huey's periodic tasks: they go straight into a Huey queue, past the ledger, and with
several daemons each would fire them. Here each firing of an entry is first claimed with a
row in `schedule_fire` (unique on entry + wall-clock minute), so a restart within the minute
or a second scheduler on another host never fires it twice; then the jobs are enqueued like
any other.
Router types fan out one job per enabled router, `system.canary` one per queue. Missed
minutes (the daemon was down) are not replayed; daylight saving time behaves as in cron: a
repeated hour fires once, a skipped hour's entries fire at the jump.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import peewee
from loguru import logger

from ispqueue.config import QUEUES
from ispqueue.cron import CronExpression
from ispqueue.db import write_transaction
from ispqueue.errors import BadInput
from ispqueue.models import ScheduleFire

if TYPE_CHECKING:
    from ispqueue.runtime import Runtime

MAX_JUMP = dt.timedelta(hours=3)  # the largest clock change a timezone makes


class CronScheduler:
    """Turns minutes into scheduled jobs for one runtime."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.last_minute: dt.datetime | None = None

    def fire(self, now: dt.datetime) -> int:
        """Fire the entries due in the minute of `now` if not done yet; jobs enqueued."""
        minute = now.replace(second=0, microsecond=0)
        if minute == self.last_minute:
            return 0
        previous, self.last_minute = self.last_minute, minute
        count = 0
        for type_name, cron in self.rt.config.schedule.items():
            for wall in wall_minutes(cron, previous, minute):
                if cron.matches_wall_clock(wall) and self._claim(type_name, wall, minute):
                    count += self._enqueue_all(type_name)
        return count

    def _claim(self, entry: str, wall: dt.datetime, minute: dt.datetime) -> bool:
        # Keyed on the wall-clock minute: when clocks go back, 02:30 comes twice in UTC
        # but is one firing, as in cron.
        try:
            with write_transaction():
                ScheduleFire.create(entry=entry, wall_minute=wall.isoformat(timespec="minutes"),
                                    fire_at=minute)
            return True
        except peewee.IntegrityError:
            return False

    def _enqueue_all(self, type_name: str) -> int:
        job_type = self.rt.registry.get(type_name)
        count = 0
        for router, args in self._fan_out(job_type):
            try:
                self.rt.enqueue(type_name, args, router=router, source="schedule")
                count += 1
            except BadInput as exc:
                logger.error("schedule {}: {}", type_name, exc)
        return count

    def _fan_out(self, job_type: Any) -> list[tuple[str | None, dict[str, Any]]]:
        if job_type.fan_out == "routers":
            return [(r.name, {}) for r in self.rt.config.routers if r.enabled]
        if job_type.fan_out == "queues":
            workers = self.rt.config.queue.workers
            return [(None, {job_type.queue_arg: q}) for q in QUEUES if workers[q] > 0]
        return [(None, {})]

    def prune(self, keep: dt.timedelta = dt.timedelta(days=2)) -> None:
        """Forget claims older than `keep`."""
        if self.last_minute is not None:
            ScheduleFire.delete().where(ScheduleFire.fire_at < self.last_minute - keep).execute()


def wall_minutes(cron: CronExpression, previous: dt.datetime | None,
                 minute: dt.datetime) -> list[dt.datetime]:
    """The wall-clock minutes that `minute` stands for: itself, plus the minutes a
    spring-forward jump skipped since `previous` (cron runs those at the jump). A gap from
    downtime is not replayed: only a jump between two consecutive minutes counts."""
    wall = cron.wall_clock(minute)
    if previous is None or minute - previous != dt.timedelta(minutes=1):
        return [wall]
    skipped = wall - cron.wall_clock(previous)
    if dt.timedelta(minutes=1) < skipped <= MAX_JUMP:
        steps = int(skipped / dt.timedelta(minutes=1))
        return [wall - dt.timedelta(minutes=n) for n in range(steps - 1, -1, -1)]
    return [wall]
