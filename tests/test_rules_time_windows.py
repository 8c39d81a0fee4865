"""Local windows across zones: the earliest instant open everywhere, DST by zone rules."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from rules.time_windows import (
    ClosedDays,
    NotBefore,
    WeeklyWindows,
    earliest_open,
    local_instant,
    parse_window,
    weekly_days,
    zone,
)

EVERY_DAY_10_11 = weekly_days({d: [parse_window("10:00-11:00")] for d in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                                         "sun")})


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_windows_that_never_overlap_have_no_opening():
    paris = WeeklyWindows(zone("Europe/Paris"), EVERY_DAY_10_11)
    tokyo = WeeklyWindows(zone("Asia/Tokyo"), EVERY_DAY_10_11)
    assert earliest_open([paris, tokyo], utc(2026, 1, 12)) is None
    assert earliest_open([paris], utc(2026, 1, 12)) == utc(2026, 1, 12, 9)


def test_opening_in_every_zone_and_after_a_not_before():
    paris = WeeklyWindows(zone("Europe/Paris"), weekly_days({"mon": [parse_window("09:00-18:00")]}))
    london = WeeklyWindows(zone("Europe/London"), weekly_days({"mon": [parse_window("09:00-18:00")]}))
    # 09:00 London = 10:00 Paris
    assert earliest_open([paris, london], utc(2026, 1, 12, 7)) == utc(2026, 1, 12, 9)
    # a cap clearing after Monday's window closes pushes to the next Monday
    assert earliest_open([paris, NotBefore(utc(2026, 1, 12, 17, 30))], utc(2026, 1, 12, 7)) == utc(2026, 1, 19, 8)


def test_closed_days_skip_consecutive_holidays():
    # Christmas 25 Dec and, in Alsace-Moselle, 26 Dec 2025 (Thursday, Friday), then a weekend rule
    days = ClosedDays(zone("Europe/Paris"), weekdays=frozenset({5, 6}), holiday_calendars=(("FR", "6AE"),))
    assert days.blocks(utc(2025, 12, 25, 12)) and days.blocks(utc(2025, 12, 26, 12))
    assert days.opens_after(utc(2025, 12, 25, 12)) == utc(2025, 12, 28, 23)  # Monday 29 Dec, 00:00 Paris


def test_local_instant_in_a_dst_gap_lands_after_the_gap():
    # 02:30 does not exist in New York on 2026-03-08; the first valid instant after is 03:30 EDT (07:30Z)
    assert local_instant(date(2026, 3, 8), 2 * 3600 + 1800, zone("America/New_York")) == utc(2026, 3, 8, 7, 30)
    assert local_instant(date(2026, 3, 8), 8 * 3600, zone("America/New_York")) == utc(2026, 3, 8, 12)
    assert local_instant(date(2026, 3, 7), 8 * 3600, zone("America/New_York")) == utc(2026, 3, 7, 13)


@pytest.mark.parametrize("text", ["10-13", "10:00-13:00 ", "25:00-26:00", "13:00-10:00", "10:00-10:00", "", None])
def test_parse_window_rejects(text):
    with pytest.raises(ValueError):
        parse_window(text)


def test_parse_window_end_of_day():
    assert parse_window("20:00-24:00") == (72000, 86400)
