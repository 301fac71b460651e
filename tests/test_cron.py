"""Cron expressions: five fields, aliases, evaluation in the configured timezone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from ispqueue.cron import CronExpression

UTC = ZoneInfo("UTC")
DHAKA = ZoneInfo("Asia/Dhaka")
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> dt.datetime:
    """An aware UTC moment from 'YYYY-MM-DD HH:MM'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def firings(cron: CronExpression, start: str, hours: int) -> list[dt.datetime]:
    first = at(start)
    minutes = (first + dt.timedelta(minutes=m) for m in range(hours * 60))
    return [moment for moment in minutes if cron.matches(moment)]


@pytest.mark.parametrize("text, fires, quiet", [
    ("* * * * *", ["2026-12-04 10:17"], []),
    ("*/15 * * * *", ["2026-12-04 10:00", "2026-12-04 10:45"], ["2026-12-04 10:10"]),
    ("5 2 * * *", ["2026-12-04 02:05"], ["2026-12-04 02:06", "2026-12-04 03:05"]),
    ("0 9-17/4 * * *", ["2026-12-04 09:00", "2026-12-04 13:00", "2026-12-04 17:00"],
     ["2026-12-04 11:00", "2026-12-04 18:00"]),
    ("0,30 6 * * *", ["2026-12-04 06:00", "2026-12-04 06:30"], ["2026-12-04 06:15"]),
    ("0 0 1 * *", ["2026-12-01 00:00", "2027-01-01 00:00"], ["2026-12-02 00:00"]),
    ("0 0 * 12 *", ["2026-12-09 00:00"], ["2026-11-09 00:00"]),
    # 2026-12-04 is a Friday (5), 2026-12-06 a Sunday (0, also spelled 7).
    ("0 8 * * 1-5", ["2026-12-04 08:00"], ["2026-12-06 08:00", "2026-12-05 08:00"]),
    ("0 8 * * 0", ["2026-12-06 08:00"], ["2026-12-07 08:00"]),
    ("0 8 * * 7", ["2026-12-06 08:00"], ["2026-12-07 08:00"]),
])
def test_five_field_expressions(text: str, fires: list[str], quiet: list[str]) -> None:
    cron = CronExpression(text, UTC)
    for moment in fires:
        assert cron.matches(at(moment)), moment
    for moment in quiet:
        assert not cron.matches(at(moment)), moment


@pytest.mark.parametrize("alias, same_as", [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
])
def test_aliases_fire_like_their_expansion(alias: str, same_as: str) -> None:
    alias_cron, plain = CronExpression(alias, UTC), CronExpression(same_as, UTC)
    start = at("2026-11-29 00:00")  # a Sunday, two days before a month starts
    for hour in range(0, 24 * 4, 1):
        for minute in (0, 1, 30):
            moment = start + dt.timedelta(hours=hour, minutes=minute)
            assert alias_cron.matches(moment) == plain.matches(moment), moment
    assert alias_cron.text == alias


def test_alias_with_surrounding_space() -> None:
    assert CronExpression(" @hourly ", UTC).matches(at("2026-12-04 10:00"))


def test_seconds_do_not_matter() -> None:
    cron = CronExpression("30 10 * * *", UTC)
    assert cron.matches(at("2026-12-04 10:30") + dt.timedelta(seconds=59, microseconds=9))


def test_dhaka_two_am_is_eight_pm_utc_the_day_before() -> None:
    cron = CronExpression("0 2 * * *", DHAKA)
    assert firings(cron, "2026-12-03 00:00", 48) == [at("2026-12-03 20:00"),
                                                     at("2026-12-04 20:00")]
    assert not cron.matches(at("2026-12-04 02:00"))


def test_moment_in_another_zone_is_converted() -> None:
    cron = CronExpression("0 2 * * *", DHAKA)
    new_york = dt.datetime(2026, 12, 3, 15, 0, tzinfo=ZoneInfo("America/New_York"))
    assert cron.matches(new_york)  # 15:00 EST = 20:00 UTC = 02:00 in Dhaka


def test_day_boundary_follows_the_zone() -> None:
    # 18:30 UTC on Saturday is already Sunday 00:30 in Dhaka.
    cron = CronExpression("30 0 * * 0", DHAKA)
    assert cron.matches(at("2026-12-05 18:30"))
    assert not cron.matches(at("2026-12-06 18:30"))


def test_berlin_follows_summer_time() -> None:
    cron = CronExpression("0 3 * * *", BERLIN)
    # Before the spring change Berlin is UTC+1, after it UTC+2 (change: 2026-03-29 01:00 UTC).
    assert firings(cron, "2026-03-28 00:00", 72) == [
        at("2026-03-28 02:00"), at("2026-03-29 01:00"), at("2026-03-30 01:00")]
    # And back in autumn (change: 2026-10-25 01:00 UTC).
    assert firings(cron, "2026-10-24 00:00", 72) == [
        at("2026-10-24 01:00"), at("2026-10-25 02:00"), at("2026-10-26 02:00")]


def test_hourly_in_berlin_across_the_spring_change() -> None:
    # The local hour 02:00-03:00 does not exist on the change day; hourly runs stay hourly.
    cron = CronExpression("0 * * * *", BERLIN)
    start = at("2026-03-28 22:00")
    assert firings(cron, "2026-03-28 22:00", 6) == [start + dt.timedelta(hours=h)
                                                   for h in range(6)]


@pytest.mark.parametrize("text, named", [
    ("* * * *", "expected 5 fields"),
    ("* * * * * *", "expected 5 fields"),
    ("", "expected 5 fields"),
    ("@yearly-ish", "expected 5 fields"),
    ("61 * * * *", "61"),
    ("* 24 * * *", "24"),
    ("* * 0 * *", "0"),
    ("* * * 13 *", "13"),
    ("* * * * 8", "8"),
    ("*/0 * * * *", "step"),
    ("x * * * *", "x"),
])
def test_bad_expressions_are_rejected_with_the_text(text: str, named: str) -> None:
    with pytest.raises(ValueError) as caught:
        CronExpression(text, UTC)
    message = str(caught.value)
    assert repr(text) in message
    assert named in message


def test_repr_shows_the_text() -> None:
    assert repr(CronExpression("*/5 * * * *", UTC)) == "CronExpression('*/5 * * * *')"
