"""Local-time constraints (weekly windows, closed weekdays, public holidays) in IANA zones, and the
search for the first instant at which a set of such constraints is open in every zone at once.

Each constraint is about one zone and answers two questions for an instant `t`:
`blocks(t)` and `opens_after(t)`: the earliest instant > t at which *it* stops blocking (None: never
within the horizon). `earliest_open` iterates to a fixpoint: jump to the latest of the blockers'
opening instants, re-check everything there, repeat. DST is handled by zoneinfo: every local wall
time is turned into an instant through the zone's rules, never through a fixed offset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import holidays

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
HORIZON = timedelta(days=400)


def parse_window(text: str) -> tuple[int, int]:
    """"10:00-13:00" -> (36000, 46800) seconds after local midnight; end exclusive ("24:00" allowed)."""
    m = _WINDOW.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError('expected "HH:MM-HH:MM"')
    start = int(m.group(1)) * 3600 + int(m.group(2)) * 60
    end = int(m.group(3)) * 3600 + int(m.group(4)) * 60
    if end > 86400 or end <= start:
        raise ValueError('expected "HH:MM-HH:MM" with the end after the start, within one day')
    return start, end


def format_window(window: tuple[int, int]) -> str:
    s, e = window
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}-{e // 3600:02d}:{e % 3600 // 60:02d}"


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_instant(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time. In a DST gap the wall time does not exist; zoneinfo then
    reads it with the pre-transition offset, which lands just after the gap: the first valid instant."""
    if seconds >= 86400:
        return local_instant(day + timedelta(days=1), seconds - 86400, tz)
    wall = datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60, seconds % 60), tzinfo=tz)
    return wall.astimezone(UTC)


def _seconds(local: datetime) -> float:
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


@lru_cache(maxsize=4096)
def holiday_calendar(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    """Public holidays of a country (and subdivision) in a year, from the `holidays` package: date -> name."""
    return dict(holidays.country_holidays(country, subdiv=subdivision, years=year).items())


def holiday_dates(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    return holiday_calendar(country, subdivision, year)


def holiday_name(country: str, subdivision: str | None, day: date) -> str:
    return str(holiday_calendar(country, subdivision, day.year).get(day, "holiday"))


class Constraint(Protocol):
    def blocks(self, t: datetime) -> bool: ...

    def opens_after(self, t: datetime) -> datetime | None: ...


# Each location constraint remembers its answers per instant (an answer depends only on the instant, and a
# constraint is shared by every contact of a place checked at that instant: `dialer gate check` asks the same
# questions for thousands of lines). Bounded per constraint.
_ANSWERS_MAX = 1024
_NONE = object()


def _answers() -> dict[datetime, Any]:
    return {}


def _remember(memo: dict[datetime, Any], t: datetime, value: Any) -> Any:
    if len(memo) >= _ANSWERS_MAX:
        memo.clear()
    memo[t] = value
    return value


@dataclass(frozen=True)
class WeeklyWindows:
    """Calls allowed only inside these local windows (index 0 = Monday). A day without windows is closed."""

    tz: ZoneInfo
    days: tuple[tuple[tuple[int, int], ...], ...]
    _blocked: dict[datetime, Any] = field(default_factory=_answers, compare=False, hash=False, repr=False)
    _opens: dict[datetime, Any] = field(default_factory=_answers, compare=False, hash=False, repr=False)

    def blocks(self, t: datetime) -> bool:
        found = self._blocked.get(t)
        if found is None:
            local = t.astimezone(self.tz)
            s = _seconds(local)
            found = _remember(self._blocked, t, not any(a <= s < b for a, b in self.days[local.weekday()]))
        return found

    def opens_after(self, t: datetime) -> datetime | None:
        found = self._opens.get(t)
        if found is None:
            found = _remember(self._opens, t, self._opens_after(t))
        return None if found is _NONE else found

    def _opens_after(self, t: datetime) -> Any:
        today = t.astimezone(self.tz).date()
        for offset in range(9):
            day = today + timedelta(days=offset)
            for start, _end in self.days[day.weekday()]:
                instant = local_instant(day, start, self.tz)
                if instant > t:
                    return instant
        return _NONE


@dataclass(frozen=True)
class ClosedDays:
    """No calls on these local dates: weekdays (0 = Monday) and/or public holidays."""

    tz: ZoneInfo
    weekdays: frozenset[int] = frozenset()
    holiday_calendars: tuple[tuple[str, str | None], ...] = ()  # (country, holidays subdivision)
    _blocked: dict[datetime, Any] = field(default_factory=_answers, compare=False, hash=False, repr=False)
    _opens: dict[datetime, Any] = field(default_factory=_answers, compare=False, hash=False, repr=False)

    def closed(self, day: date) -> bool:
        if day.weekday() in self.weekdays:
            return True
        return any(day in holiday_dates(c, s, day.year) for c, s in self.holiday_calendars)

    def blocks(self, t: datetime) -> bool:
        found = self._blocked.get(t)
        if found is None:
            found = _remember(self._blocked, t, self.closed(t.astimezone(self.tz).date()))
        return found

    def opens_after(self, t: datetime) -> datetime | None:
        found = self._opens.get(t)
        if found is None:
            found = _remember(self._opens, t, self._opens_after(t))
        return None if found is _NONE else found

    def _opens_after(self, t: datetime) -> Any:
        day = t.astimezone(self.tz).date()
        for _ in range(400):
            day += timedelta(days=1)
            if not self.closed(day):
                return local_instant(day, 0, self.tz)
        return _NONE


@dataclass(frozen=True)
class NotBefore:
    """Blocked until a fixed instant (a cap, a cool-off, a retry spacing)."""

    instant: datetime

    def blocks(self, t: datetime) -> bool:
        return t < self.instant

    def opens_after(self, t: datetime) -> datetime | None:
        return self.instant if self.instant > t else None


def earliest_open(constraints: Sequence[Constraint], t: datetime, horizon: timedelta = HORIZON) -> datetime | None:
    """The first instant >= t at which no constraint blocks; None if there is none within the horizon
    (e.g. zones so far apart that their windows never overlap)."""
    limit = t + horizon
    while t <= limit:
        blockers = [c for c in constraints if c.blocks(t)]
        if not blockers:
            return t
        nexts = [c.opens_after(t) for c in blockers]
        if any(n is None for n in nexts):
            return None
        t = max(n for n in nexts if n is not None)
    return None


def weekly_days(windows: dict[str, Iterable[tuple[int, int]]]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """{"mon": [(s, e), ...], ...} -> a 7-tuple indexed by weekday."""
    return tuple(tuple(sorted(windows.get(day, ()))) for day in WEEKDAYS)
