"""The sharing policy (dialer/pacing/sharing.py): priority tiers, weighted max-min fairness, whole lines."""

from __future__ import annotations

import random

import pytest

from dialer.pacing.sharing import ShareClaim, apportion, entitlement


def test_equal_campaigns_split_evenly_and_demand_caps_a_share():
    assert apportion(6, [ShareClaim("a", 10), ShareClaim("b", 10)]) == {"a": 3, "b": 3}
    # b only wants 1 line: a takes what b does not need
    assert apportion(6, [ShareClaim("a", 10), ShareClaim("b", 1)]) == {"a": 5, "b": 1}
    # everyone satisfied: each gets its demand, the pool is not over-given
    assert apportion(10, [ShareClaim("a", 2), ShareClaim("b", 3)]) == {"a": 2, "b": 3}


def test_three_campaigns_whole_lines_never_exceed_the_pool():
    got = apportion(7, [ShareClaim("a", 9), ShareClaim("b", 9), ShareClaim("c", 9)])
    assert sum(got.values()) == 7 and sorted(got.values()) == [2, 2, 3]
    assert got["a"] == 3  # equal remainders: the key decides, the same in every process


def test_weights_split_in_proportion_when_demand_exceeds_the_pool():
    assert apportion(12, [ShareClaim("a", 50, weight=2), ShareClaim("b", 50, weight=1)]) == {"a": 8, "b": 4}
    # the heavy campaign needs only 3: the light one gets the rest
    assert apportion(12, [ShareClaim("a", 3, weight=5), ShareClaim("b", 50)]) == {"a": 3, "b": 9}


def test_higher_priority_is_served_first():
    got = apportion(6, [ShareClaim("low", 10, priority=0), ShareClaim("high", 4, priority=5)])
    assert got == {"high": 4, "low": 2}
    assert apportion(3, [ShareClaim("low", 10), ShareClaim("high", 4, priority=1)]) == {"high": 3, "low": 0}


def test_entitlement_and_empty_or_negative_pools():
    assert entitlement(6, ShareClaim("a", 6), [ShareClaim("b", 6), ShareClaim("a", 1)]) == 3  # its own stale claim
    assert apportion(0, [ShareClaim("a", 5)]) == {"a": 0}
    assert apportion(-3, [ShareClaim("a", 5)]) == {"a": 0}
    assert apportion(5, []) == {}


def test_bad_claims_are_refused():
    with pytest.raises(ValueError):
        ShareClaim("a", -1)
    with pytest.raises(ValueError):
        ShareClaim("a", 1, weight=0)
    with pytest.raises(ValueError):
        apportion(3, [ShareClaim("a", 1), ShareClaim("a", 2)])


def test_random_claims_keep_the_invariants():
    rng = random.Random(7)
    for _ in range(2000):
        claims = [ShareClaim(f"c{i}", rng.randint(0, 30), rng.choice([0.5, 1, 2, 3]), rng.choice([0, 0, 1]))
                  for i in range(rng.randint(1, 5))]
        total = rng.randint(0, 60)
        got = apportion(total, claims)
        assert sum(got.values()) == min(total, sum(c.demand for c in claims))
        assert all(0 <= got[c.key] <= c.demand for c in claims)
        # max-min: an unsatisfied campaign gets, per unit of weight, no less than another of its tier (to a line)
        for a in claims:
            for b in claims:
                if a.priority == b.priority and got[a.key] < a.demand :
                    assert (got[a.key] + 1) / a.weight >= (got[b.key] - 1) / b.weight - 1e-6
        assert apportion(total, list(reversed(claims))) == got  # order-independent
