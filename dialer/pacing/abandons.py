"""Abandoned calls per campaign over the regulators' rolling windows.

An abandon is a live answer with no agent connected within 2 s. The rate is abandons / live
answers (an abandoned call is also a live answer). Regulators measure it over different windows:
the US TSR per campaign over 30 days, Ofcom (UK) over 24 hours. We keep hourly buckets and sum
the buckets of the window; the window therefore covers the current partial hour plus the
previous whole hours (24 h window = up to 24 h 59 min of data), which only ever dilutes a
spike over a slightly longer span, and the dashboard shows both windows.

`AbandonCounter` is the pure core (in-process, used by the simulator and tests);
`RedisAbandonCounter` keeps the same buckets in Redis for several dialer processes, counting
each call at most once (replayed events after a crash do not double count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ABANDON_WINDOWS",
    "DAY",
    "AbandonCounter",
    "AbandonStats",
    "RedisAbandonCounter",
    "hour_of",
    "window_for",
]

HOUR = 3600
DAY = 24 * HOUR

# Jurisdiction (ISO 3166 alpha-2) -> measurement window in seconds. Data a lawyer may change.
ABANDON_WINDOWS: dict[str, int] = {
    "US": 30 * DAY,  # 16 CFR 310.4(b)(4)(i): 3% of live answers per campaign per 30-day period
    "GB": DAY,  # Ofcom statement on persistent misuse: 3% of live calls per campaign per 24 hours
}
# Unknown jurisdiction: the shorter window is the stricter (a spike cannot hide in a month).
DEFAULT_WINDOW = DAY


def window_for(jurisdiction: str) -> int:
    """The abandon measurement window for a jurisdiction (UK is accepted for GB)."""
    code = jurisdiction.upper()
    if code == "UK":
        code = "GB"
    return ABANDON_WINDOWS.get(code, DEFAULT_WINDOW)


def hour_of(at: float) -> int:
    """The hourly bucket (hours since the epoch) of a UNIX time."""
    return int(at // HOUR)


def _hours(now: float, window: int) -> range:
    last = hour_of(now)
    return range(last - (window // HOUR) + 1, last + 1)


@dataclass(frozen=True)
class AbandonStats:
    """Counts and rates for one campaign over 24 h and 30 days (rates None without answers)."""

    answers_24h: int
    abandons_24h: int
    answers_30d: int
    abandons_30d: int

    @property
    def rate_24h(self) -> float | None:
        return self.abandons_24h / self.answers_24h if self.answers_24h else None

    @property
    def rate_30d(self) -> float | None:
        return self.abandons_30d / self.answers_30d if self.answers_30d else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "answers_24h": self.answers_24h,
            "abandons_24h": self.abandons_24h,
            "rate_24h": self.rate_24h,
            "answers_30d": self.answers_30d,
            "abandons_30d": self.abandons_30d,
            "rate_30d": self.rate_30d,
        }


class AbandonCounter:
    """In-process hourly buckets of (live answers, abandons) for one campaign."""

    def __init__(self, keep: int = 30 * DAY) -> None:
        self.keep = keep
        self._buckets: dict[int, list[int]] = {}

    def record(self, at: float, abandoned: bool) -> None:
        """Count one live answer at `at`, abandoned or not."""
        bucket = self._buckets.setdefault(hour_of(at), [0, 0])
        bucket[0] += 1
        if abandoned:
            bucket[1] += 1

    def totals(self, now: float, window: int) -> tuple[int, int]:
        """(live answers, abandons) over the window ending at `now`."""
        answers = abandons = 0
        for hour in _hours(now, window):
            bucket = self._buckets.get(hour)
            if bucket:
                answers += bucket[0]
                abandons += bucket[1]
        return answers, abandons

    def rate(self, now: float, window: int) -> float | None:
        answers, abandons = self.totals(now, window)
        return abandons / answers if answers else None

    def stats(self, now: float) -> AbandonStats:
        a24, x24 = self.totals(now, DAY)
        a30, x30 = self.totals(now, 30 * DAY)
        return AbandonStats(a24, x24, a30, x30)

    def prune(self, now: float) -> None:
        oldest = hour_of(now) - self.keep // HOUR
        for hour in [h for h in self._buckets if h < oldest]:
            del self._buckets[hour]


# KEYS[1] counts hash, KEYS[2] the bucket's seen-calls set; ARGV: hour, call id, abandoned (0|1),
# counts TTL, seen TTL. Returns 1 when counted, 0 when the call was already counted.
_RECORD = """
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('HINCRBY', KEYS[1], 'a:' .. ARGV[1], 1)
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'x:' .. ARGV[1], 1) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class RedisAbandonCounter:
    """Hourly abandon buckets of a tenant's campaigns in Redis.

    Keys: `t:{tenant}:abandons:{campaign}` (hash, fields `a:{hour}` live answers and
    `x:{hour}` abandons) and `t:{tenant}:abandons:{campaign}:seen:{hour}` (set of call ids
    already counted in that bucket, kept 2 days). A call is always counted in the bucket of its
    answer time, so a replay of the same outcome lands in the same set and is ignored.
    """

    KEEP_SECONDS = 31 * DAY
    SEEN_SECONDS = 2 * DAY

    def __init__(self, redis: Any, tenant: str) -> None:
        if not tenant or ":" in tenant:
            raise ValueError("tenant must be a non-empty id without ':'")
        self.redis = redis
        self.tenant = tenant
        self._record = redis.register_script(_RECORD)

    def _key(self, campaign: str) -> str:
        if not campaign or ":" in campaign:  # would collide with the :seen: keys
            raise ValueError("campaign must be a non-empty id without ':'")
        return f"t:{{{self.tenant}}}:abandons:{campaign}"

    def record(self, campaign: str, call_id: str, answered_at: float, abandoned: bool) -> bool:
        """Count one live answer (abandoned or not); False if this call was already counted."""
        hour = hour_of(answered_at)
        key = self._key(campaign)
        counted = self._record(
            keys=[key, f"{key}:seen:{hour}"],
            args=[hour, call_id, "1" if abandoned else "0", self.KEEP_SECONDS, self.SEEN_SECONDS],
        )
        return bool(counted)

    def totals(self, campaign: str, now: float, window: int) -> tuple[int, int]:
        """(live answers, abandons) over the window ending at `now`."""
        hours = list(_hours(now, window))
        fields = [f"a:{h}" for h in hours] + [f"x:{h}" for h in hours]
        values = self.redis.hmget(self._key(campaign), fields)
        n = len(hours)
        answers = sum(int(v) for v in values[:n] if v is not None)
        abandons = sum(int(v) for v in values[n:] if v is not None)
        return answers, abandons

    def stats(self, campaign: str, now: float) -> AbandonStats:
        a24, x24 = self.totals(campaign, now, DAY)
        a30, x30 = self.totals(campaign, now, 30 * DAY)
        return AbandonStats(a24, x24, a30, x30)

    def totals_of(self, campaigns: Sequence[str], now: float, window: int) -> tuple[int, int]:
        """(live answers, abandons) of several campaigns together over the window ending at `now`: a legal
        campaign's window (dialer/pacing/legal.py), read in one round trip."""
        hours = list(_hours(now, window))
        fields = [f"a:{h}" for h in hours] + [f"x:{h}" for h in hours]
        pipe = self.redis.pipeline(transaction=False)
        for campaign in campaigns:
            pipe.hmget(self._key(campaign), fields)
        answers = abandons = 0
        n = len(hours)
        for values in pipe.execute():
            answers += sum(int(v) for v in values[:n] if v is not None)
            abandons += sum(int(v) for v in values[n:] if v is not None)
        return answers, abandons

    def stats_of(self, campaigns: Sequence[str], now: float) -> AbandonStats:
        return AbandonStats(*self.totals_of(campaigns, now, DAY), *self.totals_of(campaigns, now, 30 * DAY))

    def prune(self, campaign: str, now: float) -> int:
        """Drop buckets older than 30 days (the hash TTL handles idle campaigns)."""
        oldest = hour_of(now) - 30 * DAY // HOUR
        key = self._key(campaign)
        stale = [f for f in (f.decode() if isinstance(f, bytes) else f for f in self.redis.hkeys(key))
                 if int(f.split(":", 1)[1]) < oldest]
        return int(self.redis.hdel(key, *stale)) if stale else 0
