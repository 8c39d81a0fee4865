"""The pure callee/agent models: seeded, validated, and the reference's last-digit mode."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from dialer.sandbox.behaviour import (
    AgentProfile,
    CalleeProfile,
    Duration,
    Fate,
    ProfileError,
    reference_plan,
)


def test_same_seed_same_plans() -> None:
    profile = CalleeProfile()

    def run(seed: int) -> list:
        rng = random.Random(seed)
        return [profile.sample(rng) for _ in range(200)]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_fate_frequencies_follow_probabilities() -> None:
    profile = CalleeProfile(answer=0.5, busy=0.2, congestion=0.1, failed=0.0, machine=0.0, optout=0.0)
    rng = random.Random(1)
    counts = Counter(profile.sample(rng).fate for _ in range(20000))
    assert abs(counts[Fate.ANSWER] / 20000 - 0.5) < 0.02
    assert abs(counts[Fate.BUSY] / 20000 - 0.2) < 0.02
    assert abs(counts[Fate.CONGESTION] / 20000 - 0.1) < 0.02
    assert abs(counts[Fate.NO_ANSWER] / 20000 - 0.2) < 0.02
    assert counts[Fate.FAILED] == 0


def test_machines_never_opt_out_and_optout_share() -> None:
    profile = CalleeProfile(answer=1.0, busy=0, congestion=0, machine=0.3, optout=0.5)
    rng = random.Random(3)
    plans = [profile.sample(rng) for _ in range(10000)]
    assert all(p.optout_after is None for p in plans if p.machine)
    humans = [p for p in plans if not p.machine]
    share = sum(p.optout_after is not None for p in humans) / len(humans)
    assert abs(share - 0.5) < 0.03
    assert abs(sum(p.machine for p in plans) / len(plans) - 0.3) < 0.03


def test_no_answer_rings_forever() -> None:
    profile = CalleeProfile(answer=0, busy=0, congestion=0)
    plan = profile.sample(random.Random(0))
    assert plan.fate is Fate.NO_ANSWER and plan.ring_seconds == math.inf


def test_invalid_profiles_are_refused_with_the_field_named() -> None:
    with pytest.raises(ProfileError, match="answer"):
        CalleeProfile(answer=1.5)
    with pytest.raises(ProfileError, match="exceeds 1"):
        CalleeProfile(answer=0.8, busy=0.3)
    with pytest.raises(ProfileError, match=r"callee: unknown key 'anwser'"):
        CalleeProfile.from_mapping({"anwser": 0.5}, "callee")
    with pytest.raises(ProfileError, match=r"agents\.talk"):
        AgentProfile.from_mapping({"talk": {"kind": "lognormal"}})
    with pytest.raises(ProfileError, match="unknown duration kind"):
        Duration.from_value({"kind": "gamma"}, "x")


def test_durations_from_config_values() -> None:
    assert Duration.from_value(3, "x") == Duration.fixed(3.0)
    assert Duration.from_value([2, 5], "x") == Duration.uniform(2.0, 5.0)
    d = Duration.from_value({"kind": "lognormal", "median": 100, "sigma": 0.5, "low": 10, "high": 300}, "x")
    rng = random.Random(5)
    samples = sorted(d.sample(rng) for _ in range(5001))
    assert samples[0] >= 10 and samples[-1] <= 300
    assert 85 < samples[2500] < 115  # the median


def test_agent_profile_defaults_match_reference_queue() -> None:
    plan = AgentProfile().sample(random.Random(9))
    assert 5 <= plan.talk_seconds <= 15 and plan.wrapup_seconds == 2 and plan.ring_seconds == 0


@pytest.mark.parametrize(
    ("number", "fate", "ring", "stay"),
    [
        ("5550001", Fate.ANSWER, 2.0, 20.0),
        ("5550002", Fate.BUSY, 0.0, 0.0),
        ("5550003", Fate.NO_ANSWER, math.inf, 0.0),
        ("5550004", Fate.CONGESTION, 0.0, 0.0),
        ("5550005", Fate.ANSWER, 1.0, 4.0),
        ("5550006", Fate.ANSWER, 1.0, 10.0),
        ("+33145678900", Fate.ANSWER, 1.0, 10.0),
    ],
)
def test_reference_last_digit(number: str, fate: Fate, ring: float, stay: float) -> None:
    plan = reference_plan(number)
    assert (plan.fate, plan.ring_seconds, plan.stay_seconds) == (fate, ring, stay)


def test_reference_additions() -> None:
    assert reference_plan("5550008").machine
    assert reference_plan("5550007").optout_after == 0.5
    # The reference dialed 5550006 as an ordinary 1 s / 10 s answer: it must stay that way.
    assert reference_plan("5550006") == reference_plan("5550009")
    assert not reference_plan("5550006").machine and reference_plan("5550006").optout_after is None
