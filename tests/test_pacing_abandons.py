"""Abandon counters over the regulatory windows: the pure core and the Redis one (real redis-server)."""

from __future__ import annotations

import random

import pytest
import redis

from dialer.pacing import ABANDON_WINDOWS, AbandonCounter, RedisAbandonCounter, window_for
from dialer.pacing.abandons import DAY, HOUR

T0 = 1_800_000_000.0  # a fixed UNIX time (2027-01-15); nothing here reads a clock


def test_windows_per_jurisdiction() -> None:
    assert window_for("US") == 30 * DAY
    assert window_for("gb") == window_for("UK") == DAY
    assert window_for("ZZ") == DAY  # unknown: the stricter, shorter window
    assert set(ABANDON_WINDOWS) >= {"US", "GB"}


def test_pure_counter_sums_the_window() -> None:
    counter = AbandonCounter()
    counter.record(T0 - 40 * DAY, abandoned=True)  # outside both windows
    counter.record(T0 - 10 * DAY, abandoned=True)  # in 30 days only
    for _ in range(9):
        counter.record(T0 - 10 * DAY, abandoned=False)
    counter.record(T0 - 2 * HOUR, abandoned=True)  # in both
    for _ in range(99):
        counter.record(T0 - HOUR, abandoned=False)
    assert counter.totals(T0, DAY) == (100, 1)
    assert counter.totals(T0, 30 * DAY) == (110, 2)
    stats = counter.stats(T0)
    assert stats.rate_24h == pytest.approx(0.01)
    assert stats.rate_30d == pytest.approx(2 / 110)
    assert counter.rate(T0 + 60 * DAY, DAY) is None  # no answers: no rate, not 0%
    counter.prune(T0)
    assert counter.totals(T0, 60 * DAY) == (110, 2)  # the 40-day-old bucket is gone


def test_redis_counter_matches_the_pure_core(redis_client: redis.Redis) -> None:
    store = RedisAbandonCounter(redis_client, tenant="acme")
    pure = AbandonCounter()
    rng = random.Random(5)
    for i in range(600):
        at = T0 - rng.uniform(0, 35 * DAY)
        abandoned = rng.random() < 0.04
        assert store.record("c1", f"call-{i}", at, abandoned)
        pure.record(at, abandoned)
    for window in (DAY, 30 * DAY):
        assert store.totals("c1", T0, window) == pure.totals(T0, window)
    assert store.stats("c1", T0) == pure.stats(T0)
    assert store.stats("c1", T0).as_dict()["answers_30d"] == pure.totals(T0, 30 * DAY)[0]


def test_redis_counter_counts_a_call_once(redis_client: redis.Redis) -> None:
    """A replayed outcome (another process, a restart) does not count twice."""
    store = RedisAbandonCounter(redis_client, tenant="acme")
    assert store.record("c1", "call-1", T0, abandoned=True) is True
    assert store.record("c1", "call-1", T0 + 1, abandoned=True) is False
    assert store.record("c1", "call-2", T0, abandoned=False) is True
    assert store.totals("c1", T0, DAY) == (2, 1)


def test_redis_counter_keys_are_tenant_scoped_and_expire(redis_client: redis.Redis) -> None:
    a = RedisAbandonCounter(redis_client, tenant="acme")
    b = RedisAbandonCounter(redis_client, tenant="globex")
    a.record("c1", "x", T0, abandoned=True)
    assert b.totals("c1", T0, DAY) == (0, 0)
    keys = sorted(k.decode() for k in redis_client.keys("*"))
    assert keys and all(k.startswith("t:{acme}:") for k in keys)
    assert all(redis_client.ttl(k) > 0 for k in keys)
    with pytest.raises(ValueError):
        RedisAbandonCounter(redis_client, tenant="a:b")
    with pytest.raises(ValueError):
        a.record("c1:seen:1", "y", T0, abandoned=False)


def test_redis_counter_prunes_old_buckets(redis_client: redis.Redis) -> None:
    store = RedisAbandonCounter(redis_client, tenant="acme")
    store.record("c1", "old", T0 - 31 * DAY, abandoned=True)
    store.record("c1", "new", T0 - DAY / 2, abandoned=False)
    assert store.prune("c1", T0) == 2  # the old bucket's answers and abandons fields
    assert store.totals("c1", T0, 60 * DAY) == (1, 0)
