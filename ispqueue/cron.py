"""Cron expressions for `[schedule]`, evaluated in the configured timezone.

Field parsing is Huey's `crontab` (strict mode); we add the five-field string form, the
`@hourly`-style aliases and timezone conversion. Note Huey's rule, which differs from Vixie
cron: when both day-of-month and day-of-week are restricted, both must match.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from huey import crontab

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}
FIELDS = ("minute", "hour", "day", "month", "day_of_week")


class CronExpression:
    """A parsed five-field cron expression; `matches(moment)` checks one minute."""

    def __init__(self, text: str, timezone: ZoneInfo):
        self.text = text
        self.timezone = timezone
        parts = ALIASES.get(text.strip(), text).split()
        if len(parts) != 5:
            raise ValueError(f"expected 5 fields (minute hour day month weekday), got {text!r}")
        try:
            self._validate = crontab(**dict(zip(FIELDS, parts, strict=True)), strict=True)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None

    def matches(self, moment: dt.datetime) -> bool:
        """True when the minute of `moment` (aware) is one this expression fires on."""
        return self.matches_wall_clock(self.wall_clock(moment))

    def matches_wall_clock(self, local: dt.datetime) -> bool:
        """The same, for a naive wall-clock time in this expression's timezone."""
        return self._validate(local)

    def wall_clock(self, moment: dt.datetime) -> dt.datetime:
        """`moment` (aware) as a naive wall-clock time in this expression's timezone."""
        return moment.astimezone(self.timezone).replace(tzinfo=None)

    def __repr__(self) -> str:
        return f"CronExpression({self.text!r})"
