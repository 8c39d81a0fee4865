"""A cap is a cap (dialer/pacing/guard.py) and the short-window counters (dialer/pacing/recent.py)."""

from __future__ import annotations

import pytest

from dialer.pacing import PacingMode, PacingPolicy, PacingState, PolicyError, Survival, decide
from dialer.pacing.guard import AbandonGuard, GuardWindow, Verdict, abandon_verdict, decide_within, guard_window
from dialer.pacing.recent import RecentAbandons, RedisRecentAbandons


def state(**kw) -> PacingState:
    flat = Survival(tuple(max(0.0, 1 - i / 30) for i in range(31)), 1.0, 15.0)
    base = dict(now=0.0, free_agents=4, busy_elapsed=(10.0,) * 6, ringing=(), answer_rate=0.2, ring_answered=flat,
                ring_other=flat, handle=flat)
    return PacingState(**{**base, **kw})


def test_over_the_legal_cap_only_reserved_calls():
    verdict = abandon_verdict(0.03, (93, 47), window_label="24 h window")
    assert verdict.reserved_only and verdict.reason == "cap-reached"
    assert "50.5% (47 of 93 answered) over the 24 h window is over the 3.0% cap" in verdict.text
    at_cap = abandon_verdict(0.03, (100, 3))  # at the cap, not over it, but no room for one more
    assert at_cap.reserved_only and at_cap.reason == "cap-room"
    assert "3 abandoned of 100 answered over the legal window leaves no room for one more" in at_cap.text
    assert not abandon_verdict(0.03, (134, 3)).reserved_only  # 4 of 134 is 2.99%: room for one more
    # a young window: the first abandon of 25 answers would be 4%, so nothing that could be abandoned is placed
    assert abandon_verdict(0.03, (0, 0)).reason == "cap-room"
    assert abandon_verdict(0.03, (33, 0)).reason == "cap-room"
    assert not abandon_verdict(0.03, (34, 0)).reserved_only


@pytest.mark.parametrize("mode", ["progressive", "power", "predictive"])
def test_reserved_only_is_progressive_on_every_call_in_flight(mode):
    policy = PacingPolicy(mode=mode, power_ratio=3.0, enforce_cap=True)
    s = state(ringing=(1.0,))
    capped = decide_within(policy, s, Verdict(True, "cap-reached", "why"))
    assert capped.calls == 3 and capped.mode is PacingMode(mode)
    # progressive already places only reserved calls: its decision (and reason) is unchanged
    assert capped.reason == ("progressive" if mode == "progressive" else "cap-reached")
    assert decide_within(policy, s, Verdict(False)) == decide(policy, s)
    # nobody staffed stays "no-agents" whatever the verdict
    assert decide_within(policy, state(free_agents=0, busy_elapsed=()), Verdict(True, "cap-reached")).reason \
        == "no-agents"


def test_power_over_the_cap_no_longer_dials_its_ratio():
    """The issue's second run: 47 abandoned of 93 answered, power kept its pace."""
    policy = PacingPolicy(mode="power", power_ratio=3.0)
    s = state(abandons=47, live_answers=93)
    verdict = abandon_verdict(policy.abandon_cap, (s.live_answers, s.abandons))
    assert decide_within(policy, s, verdict).calls == 4


def test_short_window_guard_is_the_simulators_clock_window_budget():
    guard = AbandonGuard(minutes=15)
    # 100 answers expected (the previous window's), 1 abandon so far: room 3 - 1 - 1 = 1 of 3, scale (1/3)^2
    v = abandon_verdict(0.03, (1000, 0), guard=guard, window=GuardWindow(0.0, 40, 1, 100))
    assert not v.reserved_only and v.scale == pytest.approx(1 / 9)
    v = abandon_verdict(0.03, (1000, 0), guard=guard, window=GuardWindow(0.0, 40, 2, 100))  # no room left
    assert v.reserved_only and v.reason == "guard-window" and "2 of 40 answered) in this 15-minute window" in v.text
    # a fresh window with no history: no room until the window has answers enough (3% of 33 is one abandon)
    assert abandon_verdict(0.03, (1000, 0), guard=guard, window=GuardWindow(0.0, 10, 0, 0)).reserved_only
    assert not abandon_verdict(0.03, (1000, 0), guard=AbandonGuard(), window=GuardWindow(0.0, 10, 5, 0)).reserved_only
    assert not abandon_verdict(0.03, (1000, 0), guard=AbandonGuard(15, 0.10), window=GuardWindow(0.0, 40, 0, 0)) \
        .reserved_only
    # the legal cap wins when both hold
    assert abandon_verdict(0.03, (10, 5), guard=guard, window=GuardWindow(0.0, 10, 5, 0)).reason == "cap-reached"
    assert guard_window(1000.0, AbandonGuard(minutes=15)) == (0.0, 900.0, 1000.0)


def test_the_guard_scale_slows_the_overdial():
    policy = PacingPolicy(mode="power", power_ratio=3.0)
    s = state()
    assert decide_within(policy, s, Verdict(False, scale=0.25)).calls == decide(
        PacingPolicy(mode="power", power_ratio=1.5), s).calls == 6


def test_guard_settings_from_the_campaign():
    assert AbandonGuard.from_campaign({}) == AbandonGuard(0, None)
    assert AbandonGuard.from_campaign({"abandon_guard_minutes": 15, "abandon_guard_cap": 0.02}) == \
        AbandonGuard(15, 0.02)
    for bad in ({"abandon_guard_minutes": -1}, {"abandon_guard_minutes": 2000}, {"abandon_guard_minutes": "15"},
                {"abandon_guard_minutes": 15, "abandon_guard_cap": 2}):
        with pytest.raises(PolicyError):
            AbandonGuard.from_campaign(bad)


def test_recent_counter_rolls_by_the_second():
    c = RecentAbandons(keep=3600)
    for t, x in ((0.0, False), (100.0, True), (899.0, False), (950.0, True)):
        c.record(t, x)
    assert c.totals(950.0, 900) == (3, 2)  # (50, 950]
    assert c.totals(1000.5, 900) == (2, 1)
    assert c.between(800.0, 950.0) == (2, 1)
    assert c.totals(5000.0, 900) == (0, 0)  # (and the events past `keep` are gone)


def test_redis_recent_counter_counts_a_call_once(redis_client):
    c = RedisRecentAbandons(redis_client, "acme")
    c.record("camp", "call-1", 1000.0, False)
    c.record("camp", "call-2", 1100.0, True)
    c.record("camp", "call-2", 1100.0, True)  # replayed after a crash
    assert c.totals("camp", 1100.0, 900) == (2, 1)
    assert c.totals("camp", 1950.0, 900) == (1, 1)
    assert c.between("camp", 900.0, 1050.0, 1200.0) == [(1, 0), (1, 1)]
    assert RedisRecentAbandons(redis_client, "beta").totals("camp", 1100.0, 900) == (0, 0)
    with pytest.raises(ValueError):
        c.record("a:b", "x", 1.0, False)
