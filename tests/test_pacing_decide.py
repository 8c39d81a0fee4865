"""decide(): each mode on a simulated clock, the hard ceilings, the abandon-cap back-off."""

from __future__ import annotations

import importlib
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.pacing import (
    CampaignEstimators,
    PacingMode,
    PacingPolicy,
    PacingState,
    PolicyError,
    RecentOriginates,
    Survival,
    decide,
    expected_overflow,
)
from dialer.pacing.decide import ROOM_EPS

RING = Survival.lognormal(6.0, 0.5, step=0.5, max_seconds=120)
OTHER = Survival.lognormal(15.0, 0.8, step=0.5, max_seconds=180)
HANDLE = Survival.lognormal(90.0, 0.8, step=1.0, max_seconds=3600)


def state(**changes: object) -> PacingState:
    """A predictive-ready observation: estimates present, no ceilings unless given."""
    base = PacingState(
        now=1000.0,
        free_agents=5,
        answer_rate=0.2,
        ring_answered=RING,
        ring_other=OTHER,
        handle=HANDLE,
        abandons=0,
        live_answers=1000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def policy(mode: str, **changes: object) -> PacingPolicy:
    return PacingPolicy(mode=PacingMode(mode), **changes)  # type: ignore[arg-type]


# -- modes ------------------------------------------------------------------------------------


def test_progressive_one_call_per_free_agent_minus_calls_in_flight() -> None:
    d = decide(policy("progressive"), state(free_agents=5, ringing=(1.0, 2.0)))
    assert (d.calls, d.reason, d.limited_by) == (3, "progressive", None)
    assert decide(policy("progressive"), state(free_agents=2, ringing=(1.0, 2.0, 3.0))).calls == 0


def test_power_places_ratio_lines_per_free_agent() -> None:
    assert decide(policy("power", power_ratio=2.5), state(free_agents=4)).calls == 10
    assert decide(policy("power", power_ratio=2.5), state(free_agents=4, ringing=(1.0,) * 7)).calls == 3
    assert decide(policy("power", power_ratio=3.0), state(free_agents=0, busy_elapsed=(10.0,))).calls == 0


@pytest.mark.parametrize("mode", ["progressive", "power", "predictive"])
def test_zero_agents_zero_calls(mode: str) -> None:
    d = decide(policy(mode), state(free_agents=0, busy_elapsed=(), calls_per_second=100, trunk_channel_limit=500))
    assert (d.calls, d.reason) == (0, "no-agents")


def test_agentless_is_bounded_by_free_ai_sessions() -> None:
    assert decide(policy("agentless"), state(free_agents=0, ai_sessions_available=8, ringing=(1.0,) * 3)).calls == 5
    assert decide(policy("agentless"), state(ai_sessions_available=2, ringing=(1.0,) * 3)).calls == 0
    assert decide(policy("agentless"), state(ai_sessions_available=0)).calls == 0


def test_predictive_dials_ahead_of_the_answer_rate_for_idle_agents() -> None:
    d = decide(policy("predictive"), state(free_agents=10, answer_rate=0.2))
    # About free / answer rate, held back by the risk budget: far more than progressive's 10.
    assert 30 <= d.calls <= 50, d
    assert d.reason == "predictive"
    # A higher answer rate needs fewer calls for the same agents.
    assert decide(policy("predictive"), state(free_agents=10, answer_rate=0.4)).calls < d.calls


def test_predictive_counts_agents_about_to_free_up() -> None:
    """Agents deep into their calls are likely to finish within the ring time; fresh ones are not."""
    fresh = decide(policy("predictive"), state(free_agents=2, busy_elapsed=(1.0,) * 40))
    near_median = decide(policy("predictive"), state(free_agents=2, busy_elapsed=(90.0,) * 40))
    told = decide(policy("predictive"), state(free_agents=2, busy_elapsed=(1.0,) * 30, agents_freeing=(3.0,) * 10))
    assert fresh.calls < near_median.calls < told.calls
    long_busy = near_median
    assert long_busy.detail["agents_expected"] > fresh.detail["agents_expected"]


def test_predictive_counts_calls_already_ringing() -> None:
    idle = decide(policy("predictive"), state(free_agents=10))
    young = decide(policy("predictive"), state(free_agents=10, ringing=(1.0,) * 20))
    old = decide(policy("predictive"), state(free_agents=10, ringing=(22.0,) * 20))
    assert young.calls < idle.calls
    # Calls unanswered after 22 s will rarely be answered: they hold back less than fresh ones.
    assert young.calls < old.calls <= idle.calls


def test_predictive_backs_off_towards_progressive_as_abandons_near_the_cap() -> None:
    p = policy("predictive", abandon_cap=0.03)
    calls = []
    reasons = []
    for abandons in range(0, 45, 3):  # measured rate 0% .. 4.4% of 1000 answers
        d = decide(p, state(free_agents=10, abandons=abandons, live_answers=1000))
        calls.append(d.calls)
        reasons.append(d.reason)
    assert calls == sorted(calls, reverse=True), calls
    assert calls[0] > calls[-1] == 10  # at/over the cap: progressive (one call per free agent)
    assert reasons[0] == "predictive" and "backoff" in reasons and reasons[-1] == "cap-reached"
    over = decide(p, state(free_agents=10, ringing=(1.0,) * 4, abandons=40, live_answers=1000))
    assert (over.calls, over.reason) == (6, "cap-reached")


def test_power_backs_off_at_the_cap_unless_told_not_to() -> None:
    at_cap = state(free_agents=4, abandons=50, live_answers=1000)
    assert decide(policy("power", power_ratio=3.0), at_cap).calls == 4
    assert decide(policy("power", power_ratio=3.0, enforce_cap=False), at_cap).calls == 12


def test_predictive_without_estimates_is_progressive() -> None:
    d = decide(policy("predictive"), state(free_agents=3, handle=None))
    assert (d.calls, d.reason) == (3, "no-estimates")
    d = decide(policy("predictive"), state(free_agents=3, answer_rate=0.0))
    assert (d.calls, d.reason) == (3, "no-estimates")


def test_predictive_never_exceeds_the_lines_per_agent_sanity_ceiling() -> None:
    d = decide(policy("predictive", max_lines_per_agent=3.0), state(free_agents=10, answer_rate=0.02))
    assert d.calls == 30


def test_invalid_policy_names_the_field() -> None:
    with pytest.raises(PolicyError, match=r"pacing\.mode"):
        PacingPolicy(mode="turbo")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match=r"pacing\.abandon_cap"):
        PacingPolicy(abandon_cap=1.5)
    with pytest.raises(PolicyError, match=r"pacing\.power_ratio"):
        PacingPolicy(power_ratio=0.5)


# -- ceilings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["progressive", "power", "predictive", "agentless"])
def test_trunk_and_cps_ceilings_cut_every_mode(mode: str) -> None:
    s = state(free_agents=40, ai_sessions_available=40)
    unlimited = decide(policy(mode, power_ratio=3.0), s)
    assert unlimited.calls > 6
    trunk = decide(policy(mode, power_ratio=3.0), replace(s, trunk_channel_limit=30, trunk_channels_in_use=26))
    assert (trunk.calls, trunk.limited_by, trunk.wanted) == (4, "trunk", unlimited.calls)
    cps = decide(policy(mode, power_ratio=3.0), replace(s, calls_per_second=10, originates_last_second=4))
    assert (cps.calls, cps.limited_by) == (6, "cps")
    full = decide(policy(mode, power_ratio=3.0), replace(s, trunk_channel_limit=30, trunk_channels_in_use=31))
    assert full.calls == 0


@settings(max_examples=300, deadline=None)
@given(
    mode=st.sampled_from(list(PacingMode)),
    free=st.integers(0, 60),
    busy=st.lists(st.floats(0, 2000), max_size=60),
    ringing=st.lists(st.floats(0, 40), max_size=120),
    answer_rate=st.floats(0, 1),
    abandons=st.integers(0, 100),
    answers=st.integers(0, 2000),
    limit=st.none() | st.integers(0, 300),
    in_use=st.integers(0, 300),
    cps=st.none() | st.floats(0, 50),
    last_second=st.integers(0, 60),
    sessions=st.integers(0, 60),
)
def test_ceilings_hold_for_any_observation(
    mode: PacingMode, free: int, busy: list[float], ringing: list[float], answer_rate: float, abandons: int,
    answers: int, limit: int | None, in_use: int, cps: float | None, last_second: int, sessions: int,
) -> None:
    s = state(
        free_agents=free, busy_elapsed=tuple(busy), ringing=tuple(ringing), answer_rate=answer_rate,
        abandons=abandons, live_answers=answers, trunk_channel_limit=limit, trunk_channels_in_use=in_use,
        calls_per_second=cps, originates_last_second=last_second, ai_sessions_available=sessions,
    )
    d = decide(PacingPolicy(mode=mode, power_ratio=2.5), s)
    assert 0 <= d.calls <= d.wanted or d.calls == d.wanted == 0
    if limit is not None:
        assert d.calls <= max(0, limit - in_use)
    if cps is not None:
        assert d.calls <= max(0, int(cps) - last_second)
    if mode is PacingMode.PROGRESSIVE:
        assert d.calls <= free and (d.calls == 0 or d.calls + len(ringing) <= free)
    if mode is PacingMode.AGENTLESS:
        assert d.calls == 0 or d.calls + len(ringing) <= sessions
    if mode is not PacingMode.AGENTLESS and free == 0 and not busy:
        assert d.calls == 0


def test_calls_per_second_holds_over_a_simulated_clock() -> None:
    """Ticking every 100 ms with plenty of idle agents, no 1-second span ever exceeds the ceiling."""
    est = CampaignEstimators()
    placed: list[float] = []
    p = policy("predictive")
    for tick in range(50):
        now = tick * 0.1
        s = est.state(now, free_agents=200, calls_per_second=25)
        d = decide(p, s)
        est.on_originate(now, d.calls)
        placed.extend([now] * d.calls)
    assert len(placed) >= 100  # the ceiling, not the agents, was the limit
    for start in placed:
        in_window = sum(1 for t in placed if start <= t < start + 1.0 - 1e-9)
        assert in_window <= 25


def test_recent_originates_forgets_after_a_second() -> None:
    window = RecentOriginates()
    window.record(10.0, 3)
    window.record(10.5, 2)
    assert window.count(10.6) == 5
    assert window.count(11.0) == 2
    assert window.count(11.5) == 0


def test_expected_overflow_matches_the_normal_formula() -> None:
    import math
    import random

    assert expected_overflow(0.0, 1.0) == pytest.approx(1 / math.sqrt(2 * math.pi))
    assert expected_overflow(3.0, 0.0) == 3.0 and expected_overflow(-3.0, 0.0) == 0.0
    assert expected_overflow(50.0, 1.0) == pytest.approx(50.0)
    rng = random.Random(9)
    sample = [max(0.0, rng.gauss(-1.0, 2.0)) for _ in range(200_000)]
    assert expected_overflow(-1.0, 4.0) == pytest.approx(sum(sample) / len(sample), rel=0.02)


def test_policy_from_campaign_settings() -> None:
    p = PacingPolicy.from_mapping({"mode": "power", "power_ratio": 3, "abandon_cap": 0.02, "enforce_cap": True})
    assert (p.mode, p.power_ratio, p.abandon_cap) == (PacingMode.POWER, 3.0, 0.02)
    assert PacingPolicy.from_mapping(p.as_dict()) == p
    with pytest.raises(PolicyError, match="unknown setting 'power_raito'"):
        PacingPolicy.from_mapping({"power_raito": 3})
    with pytest.raises(PolicyError, match=r"pacing\.abandon_cap: expected a number"):
        PacingPolicy.from_mapping({"abandon_cap": "3%"})
    with pytest.raises(PolicyError, match=r"pacing\.mode"):
        PacingPolicy.from_mapping({"mode": "turbo"})


def test_policy_from_a_campaign_configuration() -> None:
    p = PacingPolicy.from_campaign({"pacing_mode": "predictive", "pacing_ratio": 1, "abandon_cap": 0.02})
    assert (p.mode, p.abandon_cap, p.power_ratio) == (PacingMode.PREDICTIVE, 0.02, 2.0)
    assert PacingPolicy.from_campaign({"pacing_mode": "power", "pacing_ratio": 3}).power_ratio == 3.0
    assert PacingPolicy.from_campaign({"pacing_mode": "predictive", "agent_kind": "ai"}).mode is PacingMode.AGENTLESS
    assert PacingPolicy.from_campaign({}).mode is PacingMode.PROGRESSIVE
    with pytest.raises(PolicyError, match="preview"):
        PacingPolicy.from_campaign({"pacing_mode": "preview"})


def test_a_fresh_power_campaign_dials_its_ratio() -> None:
    """No answers yet, no abandons: the supervisor's ratio applies from the first call (it used to start backed off
    to about 1.5 lines per agent by the small-sample margin meant for predictive); it still falls back near the cap."""
    fresh = decide(policy("power", power_ratio=3.0), state(free_agents=1, live_answers=0))
    assert (fresh.calls, fresh.reason) == (3, "power")
    early = decide(policy("power", power_ratio=3.0), state(free_agents=1, abandons=3, live_answers=20))
    assert early.calls < 3 and early.reason in ("backoff", "cap-reached")  # 3 of 20 answers abandoned: 15%


def test_a_small_window_under_the_cap_keeps_part_of_the_risk_budget() -> None:
    """Issue 15 s. 4: 3 abandons of 120 answers (2.5%) is under the cap. The one-standard-error margin alone
    (3.1% here) used to make that progressive for hours; now predictive keeps a floor of its risk budget, and
    is progressive only when the raw or smoothed rate reaches the cap."""
    p = policy("predictive", abandon_cap=0.03)
    small = decide(p, state(free_agents=3, abandons=3, live_answers=120))
    assert small.reason == "backoff" and small.calls > 3
    assert decide(p, state(free_agents=3, abandons=4, live_answers=120)).reason == "cap-reached"  # raw 3.3%
    assert decide(p, state(free_agents=3, abandons=1, live_answers=20)).reason == "cap-reached"  # raw 5%
    assert decide(p, state(free_agents=3, abandons=0, live_answers=0)).calls > 3  # a fresh window dials ahead


def test_the_calls_in_flight_stay_within_the_room_under_the_cap() -> None:
    """Room for one more abandon is not room for two (issue 15): calls placed within seconds are answered together,
    and three campaigns on 8 agents ended days at 3.1-4.9% with two or three abandons within 20 s at room one. So
    the overflow of the calls in flight, with ROOM_Z standard deviations, must fit in the room; while the room is
    one or two abandons only the free agents count, not the busy ones expected to free up."""
    p = policy("predictive", abandon_cap=0.03)
    busy = tuple(float(e) for e in range(20, 200, 10))  # 18 agents on calls, several about to finish
    roomy = decide(p, state(free_agents=2, busy_elapsed=busy, live_answers=1000, abandons=10))  # room 20
    tight = decide(p, state(free_agents=2, busy_elapsed=busy, live_answers=40, abandons=0))  # room 1
    assert roomy.detail["room"] == 20 and tight.detail["room"] == 1
    assert tight.calls < roomy.calls
    # at room one, with 2 free agents at 20% live answers, the answers expected plus 4 deviations fit 3 agents
    assert tight.calls <= 3
    # (with no room at all the legal hold, cap-room, decides: test_a_small_window_under_the_cap_keeps_part_of_...)


def _binomial_tail(n: int, p: float, above: int) -> float:
    """P(Binomial(n, p) > above), summed directly."""
    return sum(math.comb(n, i) * p**i * (1.0 - p) ** (n - i) for i in range(above + 1, n + 1))


@pytest.mark.parametrize("answer", [0.05, 0.1, 0.2])
@pytest.mark.parametrize("free", [1, 2, 3, 5, 10])
@pytest.mark.parametrize(("answers", "abandons"), [(40, 0), (70, 0), (100, 1), (134, 2)])
@pytest.mark.parametrize("in_flight", [0, 5, 20])
def test_the_overflow_exceeds_a_small_room_with_chance_at_most_room_eps(
    answer: float, free: int, answers: int, abandons: int, in_flight: int
) -> None:
    """At room one or two only the free agents are counted on, and calls just placed (age 0) are each answered with
    the answer rate: the answers are Binomial(in flight + placed, p), and the window breaks its cap when more than
    free + k of them come, k the abandons still lawful ((A + k) / (N + k) <= cap). Checked against the binomial
    summed directly, whenever the decision placed more than progressive's floor."""
    p = policy("predictive", abandon_cap=0.03)
    d = decide(p, state(free_agents=free, answer_rate=answer, live_answers=answers, abandons=abandons,
                        ringing=(0.0,) * in_flight))
    assert d.detail["room"] in (1, 2)
    lawful = math.floor((0.03 * answers - abandons) / 0.97 + 1e-9)
    if d.calls > max(0, free - in_flight):
        assert _binomial_tail(in_flight + d.calls, answer, free + lawful) <= ROOM_EPS * (1.0 + 1e-9)


def test_a_small_room_refuses_what_the_normal_approximation_lets_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: at 5% live answers the answers in flight are a few unlikely events, skewed like a Poisson count, and
    mean + ROOM_Z sd understates their tail. Room one (40 answers, no abandon), 3 free agents, nothing ringing: the
    normal check lets 14 calls through, and P(more than 4 of 14 answered) is 4.3e-4, over ROOM_EPS; the exact tail
    places 10 (6.4e-5)."""
    p = policy("predictive", abandon_cap=0.03)
    s = state(free_agents=3, answer_rate=0.05, live_answers=40, abandons=0)
    exact = decide(p, s)
    monkeypatch.setattr(importlib.import_module("dialer.pacing.decide"), "ROOM_TAIL_MAX", 0)  # the normal check alone
    normal = decide(p, s)
    assert (normal.calls, exact.calls) == (14, 10)
    assert _binomial_tail(normal.calls, 0.05, 3 + 1) > ROOM_EPS >= _binomial_tail(exact.calls, 0.05, 3 + 1)


def test_the_risk_budget_rises_while_the_measured_rate_is_well_under_the_back_off() -> None:
    """Issue 15: predictive_target is a model quantity; at 25 agents with short calls it ended days at 0.9% under a
    3% cap. While the rate with its margin is under backoff_start x cap the budget rises with the unused part (up
    to 3 x the target at 0%), and is the target itself from backoff_start on; a young window (large margin) gets no
    rise."""
    p = policy("predictive", abandon_cap=0.03)
    alphas = [decide(p, state(free_agents=10, abandons=a, live_answers=5000)).detail["alpha"] for a in (0, 30, 60, 90)]
    assert alphas == sorted(alphas, reverse=True), alphas
    assert 0.29 < alphas[0] <= 0.3  # 0 of 5000 (smoothed 0.03%): nearly 3 x 10%
    assert 0.1 < alphas[2] < alphas[1] < alphas[0]  # 0.6%, 1.2%: less and less rise
    assert alphas[3] <= 0.1  # 1.8% (plus a sliver of margin): backoff_start, no rise (a little back-off)
    assert decide(p, state(free_agents=10, abandons=0, live_answers=0)).detail["alpha"] < 0.1  # fresh: backed off
    calm = decide(p, state(free_agents=10, abandons=0, live_answers=5000))
    assert calm.calls > decide(replace(p, predictive_target=0.1), state(free_agents=10, abandons=90,
                                                                        live_answers=5000)).calls
    # never over 0.5, whatever the rise
    assert decide(replace(p, predictive_target=0.4), state(abandons=0, live_answers=5000)).detail["alpha"] == 0.5


def test_the_small_sample_margin_shrinks_once_the_room_is_large(monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for more than MARGIN_ROOM (10) abandons the margin shrinks as 10 / room: 24 abandons of 1,500 answers
    (smoothed 1.59%, room 21) is under backoff_start (1.8%) with 10/21 of its margin, over it (backoff) with the whole
    one."""
    p = policy("predictive", abandon_cap=0.03)
    big = decide(p, state(free_agents=10, abandons=24, live_answers=1500))
    assert big.detail["room"] == 21 and big.reason == "predictive"
    # the whole margin whatever the room, as before issue 15's change
    monkeypatch.setattr(importlib.import_module("dialer.pacing.decide"), "MARGIN_ROOM", 10**9)
    assert decide(p, state(free_agents=10, abandons=24, live_answers=1500)).reason == "backoff"


# -- power within a small room (issue 15: a power campaign's legal window at 3.57% for an instant) ----------------


def _binomial_tail(n: int, p: float, above: int) -> float:
    """P(Binomial(n, p) > above), worked out independently of decide's tail."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(above + 1, n + 1))


def test_power_keeps_its_calls_within_a_small_room() -> None:
    # 40 answers, no abandon: room for one abandon (one lawful). 4 free agents; busy ones are not counted on at a
    # room of 1-2. Ratio 2 asks for 8 new calls: 6+ answers of 8 at 20% would abandon two, P = 1.2e-3.
    room_one = state(free_agents=4, busy_elapsed=(10.0,) * 8, abandons=0, live_answers=40)
    d = decide(policy("power", power_ratio=2.0), room_one)
    assert d.reason == "room" and 4 <= d.calls < 8
    assert _binomial_tail(d.calls, 0.2, 4 + 1) <= ROOM_EPS < _binomial_tail(d.calls + 1, 0.2, 4 + 1)
    # a large room (1000 answers: 30 abandons) leaves the ratio alone
    assert decide(policy("power", power_ratio=2.0), replace(room_one, live_answers=1000)).calls == 8
    # never below progressive: its calls each have a free agent
    crowded = replace(room_one, free_agents=2, ringing=(1.0,) * 2)
    assert decide(policy("power", power_ratio=3.0), crowded).calls >= 0
    assert decide(policy("power", power_ratio=3.0), replace(crowded, ringing=())).calls >= 2
    # no answer-rate estimate: every call may be answered, so only progressive's calls
    blind = decide(policy("power", power_ratio=2.0), replace(room_one, answer_rate=0.0))
    assert (blind.calls, blind.reason) == (4, "room")
    # the hindsight oracle's fixed ratio (enforce_cap off) is untouched
    assert decide(policy("power", power_ratio=2.0, enforce_cap=False), room_one).calls == 8


def test_power_counts_its_calls_in_flight_against_the_room() -> None:
    # 6 young calls in flight on 4 free agents at room one: 2 more lines would take the tail past the bound.
    ringing = state(free_agents=4, ringing=(0.5,) * 6, abandons=0, live_answers=40)
    d = decide(policy("power", power_ratio=2.0), ringing)
    assert d.calls < 2 and d.reason == "room"
