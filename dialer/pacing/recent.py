"""Live answers and abandons of a campaign over a short rolling window (minutes), for the short-window guard.

The legal windows (abandons.py) are hourly buckets over 24 h or 30 days; the guard needs "the last 15 minutes" to
the second. `RecentAbandons` is the pure core (the simulator, tests); `RedisRecentAbandons` keeps the same figures
in Redis for every dialer process: two sorted sets per campaign, call id -> answer time (live answers; abandons),
so an outcome replayed after a crash is counted once (ZADD of the same member), trimmed past the longest window.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

__all__ = ["KEEP_SECONDS", "RecentAbandons", "RedisRecentAbandons"]

KEEP_SECONDS = 24 * 3600  # the longest guard window (abandon_guard_minutes <= 1440)


class RecentAbandons:
    """In-process: (answer time, abandoned) of recent live answers."""

    def __init__(self, keep: float = KEEP_SECONDS) -> None:
        self.keep = keep
        self._events: deque[tuple[float, bool]] = deque()

    def record(self, at: float, abandoned: bool) -> None:
        self._events.append((at, abandoned))

    def totals(self, now: float, window: float) -> tuple[int, int]:
        """(live answers, abandons) answered in (now - window, now]."""
        return self.between(now - window, now)

    def between(self, start: float, end: float) -> tuple[int, int]:
        """(live answers, abandons) answered in (start, end]."""
        while self._events and self._events[0][0] <= end - self.keep:
            self._events.popleft()
        answers = abandons = 0
        for at, abandoned in reversed(self._events):
            if at <= start:
                break
            if at <= end:
                answers += 1
                abandons += abandoned
        return answers, abandons


_RECORD = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1] - ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


class RedisRecentAbandons:
    """Keys `t:{tenant}:abandons:{campaign}:recent:a` (live answers) and `...:recent:x` (abandons), scores in UNIX
    seconds of the answer."""

    def __init__(self, redis: Any, tenant: str) -> None:
        if not tenant or ":" in tenant:
            raise ValueError("tenant must be a non-empty id without ':'")
        self.redis = redis
        self.tenant = tenant
        self._record = redis.register_script(_RECORD)

    def _keys(self, campaign: str) -> list[str]:
        if not campaign or ":" in campaign:
            raise ValueError("campaign must be a non-empty id without ':'")
        base = f"t:{{{self.tenant}}}:abandons:{campaign}:recent"
        return [f"{base}:a", f"{base}:x"]

    def record(self, campaign: str, call_id: str, answered_at: float, abandoned: bool) -> None:
        self._record(keys=self._keys(campaign),
                     args=[repr(float(answered_at)), call_id, "1" if abandoned else "0", KEEP_SECONDS])

    def totals(self, campaign: str, now: float, window: float) -> tuple[int, int]:
        """(live answers, abandons) answered in (now - window, now]."""
        return self.between(campaign, now - window, now)[0]

    def between(self, campaign: str, *edges: float) -> list[tuple[int, int]]:
        """(live answers, abandons) answered in each span between consecutive edges, (e0, e1], (e1, e2] ..."""
        pipe = self.redis.pipeline(transaction=False)
        for low, high in itertools.pairwise(edges):
            for key in self._keys(campaign):
                pipe.zcount(key, f"({float(low)!r}", repr(float(high)))
        raw = pipe.execute()
        return [(int(raw[i]), int(raw[i + 1])) for i in range(0, len(raw), 2)]
