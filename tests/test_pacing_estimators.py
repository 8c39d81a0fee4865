"""Estimators: settled answer rate, empirical durations with censoring, survival tables."""

from __future__ import annotations

import math
import random

import pytest

from dialer.pacing import AnswerRateEstimator, CampaignEstimators, DurationHistogram, Survival
from dialer.pacing.tracker import lognormal_quantiles


def test_answer_rate_starts_at_the_prior_and_converges() -> None:
    est = AnswerRateEstimator(window=500, prior_rate=0.5, prior_weight=20, settle_seconds=30)
    assert est.rate(0.0) == pytest.approx(0.5)
    rng = random.Random(7)
    for i in range(2000):
        est.observe(placed_at=i * 0.1, live_answer=rng.random() < 0.15)
    assert est.rate(1000.0) == pytest.approx(0.15, abs=0.04)
    assert est.observations(1000.0) == 500  # the window


def test_answer_rate_counts_a_call_only_once_its_cohort_has_settled() -> None:
    """Busy signals come back before answers: counting them on arrival would read 0% for a while."""
    est = AnswerRateEstimator(prior_rate=0.5, prior_weight=10, settle_seconds=30)
    for _ in range(100):  # 100 calls placed at t=0; the busy ones end at once
        est.observe(placed_at=0.0, live_answer=False)
    assert est.rate(5.0) == pytest.approx(0.5)  # nothing settled yet: still the prior
    for _ in range(25):
        est.observe(placed_at=0.0, live_answer=True)
    assert est.rate(31.0) == pytest.approx((25 + 5) / (125 + 10))


def test_answer_rate_window_forgets_old_outcomes() -> None:
    est = AnswerRateEstimator(window=100, prior_weight=0, settle_seconds=0)
    for i in range(100):
        est.observe(i, True)
    assert est.rate(100) == 1.0
    for i in range(100, 200):
        est.observe(i, False)
    assert est.rate(200) == 0.0


def test_duration_histogram_matches_the_sample_distribution() -> None:
    hist = DurationHistogram(step=1.0, max_seconds=600, half_life=10_000)
    rng = random.Random(3)
    samples = [rng.lognormvariate(math.log(60), 0.6) for _ in range(20_000)]
    for x in samples:
        hist.observe(x)
    s = hist.snapshot()
    assert s.mean == pytest.approx(sum(samples) / len(samples), rel=0.01)
    truth = Survival.lognormal(60, 0.6, max_seconds=600)
    for x in (10, 30, 60, 120, 300):
        assert s.at(x) == pytest.approx(truth.at(x), abs=0.02)
    # Conditional completion: 50% of calls still going at the median end within ~the next 45 s
    assert s.done_within(60, 45) == pytest.approx(truth.done_within(60, 45), abs=0.03)


def test_duration_histogram_forgets_with_its_half_life() -> None:
    hist = DurationHistogram(step=1.0, max_seconds=600, half_life=50)
    for _ in range(500):
        hist.observe(30.0)
    for _ in range(500):
        hist.observe(200.0)
    assert hist.snapshot().at(100) > 0.99  # the old 30 s regime weighs almost nothing now


def test_censored_durations_correct_the_short_bias() -> None:
    """At the start of a shift only short calls have ended: the busy agents' elapsed times say
    the long ones exist (Kaplan-Meier)."""
    hist = DurationHistogram(step=1.0, max_seconds=3600, half_life=1000)
    for x in (20.0, 25.0, 30.0, 35.0, 40.0):
        hist.observe(x)
    naive = hist.snapshot()
    corrected = hist.snapshot(censored=[45.0] * 20)
    assert naive.at(45) == 0.0
    assert corrected.at(45) == pytest.approx(20 / 25, abs=0.01)
    assert corrected.done_within(45, 10) == 0.0  # nothing known to end after 45 s
    # Without censored values the snapshot is cached until the next observation
    assert hist.snapshot() is naive
    hist.observe(50.0)
    assert hist.snapshot() is not naive


def test_survival_tables() -> None:
    s = Survival.fixed(10.0)
    assert s.at(0) == 1.0 and s.at(9.5) == 1.0 and s.at(11) == 0.0
    assert s.done_within(5, 10) == 1.0
    assert s.done_within(5, 2) == 0.0
    ln = Survival.lognormal(100, 0.5)
    assert ln.at(100) == pytest.approx(0.5, abs=0.01)
    assert ln.mean == pytest.approx(100 * math.exp(0.125))
    with pytest.raises(ValueError):
        Survival((), 1.0, 0.0)


def test_prior_quantiles_have_the_requested_mean() -> None:
    q = lognormal_quantiles(120, 0.8, points=200)
    assert sum(q) / len(q) == pytest.approx(120, rel=0.03)


def test_campaign_estimators_build_a_state_from_events() -> None:
    est = CampaignEstimators(ring_timeout=25, refresh_seconds=30)
    for i in range(300):
        now = float(i)
        if i % 5 == 0:
            est.on_live_answer(now, 6.0)
            est.on_agent_free(100.0)
        else:
            est.on_no_live_answer(now, 25.0)
    est.on_originate(299.5, 4)
    s = est.state(300.0, free_agents=3, busy_elapsed=[10.0, 50.0], ringing=[1.0], abandons=2, live_answers=60)
    assert s.answer_rate == pytest.approx(0.2, abs=0.03)
    assert s.ring_answered is not None and s.ring_answered.at(5.5) > 0.9 and s.ring_answered.at(7) < 0.2
    assert s.handle is not None and s.handle.done_within(95, 10) > 0.8  # the prior (mean 120 s) still weighs a little
    assert s.originates_last_second == 4
    assert (s.free_agents, s.busy_elapsed, s.ringing, s.abandons, s.live_answers) == (3, (10.0, 50.0), (1.0,), 2, 60)
    # Snapshots are reused within refresh_seconds (decide() stays cheap), rebuilt after.
    assert est.state(310.0, free_agents=3).handle is s.handle
    assert est.state(331.0, free_agents=3).handle is not s.handle


def test_estimates_survive_a_hand_over_through_json() -> None:
    import json

    rng = random.Random(11)
    before = CampaignEstimators()
    for i in range(3000):
        now = i * 0.5
        if rng.random() < 0.2:
            before.on_live_answer(now, rng.uniform(3, 12))
            before.on_agent_free(rng.lognormvariate(math.log(150), 0.7))
        else:
            before.on_no_live_answer(now, rng.choice((1.5, 25.0)))
    after = CampaignEstimators()
    after.load(json.loads(json.dumps(before.export())))
    for now in (1500.0, 1600.0):
        a = before.state(now, free_agents=1, busy_elapsed=[40.0, 200.0])
        b = after.state(now, free_agents=1, busy_elapsed=[40.0, 200.0])
        assert a.answer_rate == pytest.approx(b.answer_rate)
        for x in (5.0, 20.0, 100.0, 300.0):
            assert a.handle.at(x) == pytest.approx(b.handle.at(x))
            assert a.ring_answered.at(x / 20) == pytest.approx(b.ring_answered.at(x / 20))
            assert a.ring_other.at(x / 10) == pytest.approx(b.ring_other.at(x / 10))
    # Later observations weigh the same in both (the forgetting continues where it was).
    for est in (before, after):
        for _ in range(50):
            est.on_agent_free(30.0)
    assert before.handle.snapshot().at(31) == pytest.approx(after.handle.snapshot().at(31))


def test_a_malformed_hand_over_changes_nothing() -> None:
    est = CampaignEstimators()
    est.on_agent_free(100.0)
    good = est.export()
    bad = dict(good, handle={"step": 1.0, "n": 3600, "bins": "nope", "sum": 1, "observations": 1})
    with pytest.raises(ValueError):
        est.load(bad)
    assert est.export() == good
    with pytest.raises(ValueError):
        est.load({"version": 99})
