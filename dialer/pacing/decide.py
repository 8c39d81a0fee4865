"""How many calls to place now: one pure function per mode, then the hard ceilings.

`decide(policy, state)` is the only entry point the runtime needs. It never reads a clock,
never touches Redis, and is cheap enough to call every tick (see BENCHMARKS.md).

Reason codes (Decision.reason):
  progressive, power, predictive, agentless   the mode decided normally
  no-agents                                    nobody staffed: nothing is dialed
  no-estimates                                 predictive without estimates: progressive
  backoff                                      predictive backing off as the abandon rate nears the cap
  cap-reached                                  measured abandon rate at/over the cap: progressive
"""

from __future__ import annotations

import math

from dialer.pacing.model import CONNECT_GRACE_SECONDS, Decision, PacingMode, PacingPolicy, PacingState

__all__ = ["control_abandon_rate", "decide", "expected_overflow"]

# The measured abandon rate used for control is smoothed with this many pseudo-answers at half
# the cap, so the first abandon of a window (1 of 10 answers = 10%) does not throw a campaign
# back to progressive for the day. The legal figure reported to the dashboard is the raw one.
_PRIOR_ANSWERS = 100.0
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def control_abandon_rate(abandons: int, live_answers: int, cap: float) -> float:
    """The abandon rate the back-off reacts to (raw rate smoothed by a prior at cap/2)."""
    return (abandons + _PRIOR_ANSWERS * cap * 0.5) / (live_answers + _PRIOR_ANSWERS)


def expected_overflow(mean: float, variance: float) -> float:
    """E[max(D, 0)] for D ~ Normal(mean, variance)."""
    if variance <= 0.0:
        return mean if mean > 0.0 else 0.0
    sd = math.sqrt(variance)
    z = mean / sd
    return sd * _INV_SQRT2PI * math.exp(-0.5 * z * z) + mean * 0.5 * math.erfc(-z * _INV_SQRT2)


def decide(policy: PacingPolicy, state: PacingState) -> Decision:
    """The number of calls to place now under `policy`, given the observation `state`."""
    mode = policy.mode
    ringing = len(state.ringing)
    detail: dict[str, float] = {}
    if mode is PacingMode.AGENTLESS:
        wanted, reason = state.ai_sessions_available - ringing, "agentless"
    elif state.staffed_agents <= 0:
        wanted, reason = 0, "no-agents"
    elif mode is PacingMode.PROGRESSIVE:
        wanted, reason = state.free_agents - ringing, "progressive"
    elif mode is PacingMode.POWER:
        if policy.enforce_cap and _cap_reached(policy, state):
            wanted, reason = state.free_agents - ringing, "cap-reached"
        else:
            wanted, reason = math.floor(policy.power_ratio * state.free_agents + 0.5) - ringing, "power"
    else:
        wanted, reason = _predictive(policy, state, detail)
    wanted = max(0, wanted)
    calls, limited_by = _apply_ceilings(wanted, state)
    return Decision(calls, wanted, mode, reason, limited_by, detail)


def _cap_reached(policy: PacingPolicy, state: PacingState) -> bool:
    measured = control_abandon_rate(state.abandons, state.live_answers, policy.abandon_cap)
    return measured >= policy.abandon_cap


def _apply_ceilings(wanted: int, state: PacingState) -> tuple[int, str | None]:
    calls, limited_by = wanted, None
    if state.trunk_channel_limit is not None:
        room = max(0, state.trunk_channel_limit - state.trunk_channels_in_use)
        if room < calls:
            calls, limited_by = room, "trunk"
    if state.calls_per_second is not None:
        room = max(0, math.floor(state.calls_per_second) - state.originates_last_second)
        if room < calls:
            calls, limited_by = room, "cps"
    return calls, limited_by


def _predictive(policy: PacingPolicy, state: PacingState, detail: dict[str, float]) -> tuple[int, str]:
    """Place the most calls whose expected overflow stays within the risk budget.

    Model: a call placed now is answered after about the mean answered ring time; it needs an
    agent free by then plus the 2 s grace. Answers expected from calls in flight and new calls
    (X) are compared with agents expected free by that horizon (A): free agents, plus each busy
    agent's probability of finishing within the horizon given how long it has been busy. With
    D = X - A approximated as normal, E[max(D, 0)] is the expected number of answered calls with
    no agent; we keep it at or below `alpha * E[X]`, alpha being the risk budget, scaled down
    as the measured abandon rate approaches the cap.
    """
    progressive = state.free_agents - len(state.ringing)
    p = state.answer_rate
    ring, other, handle = state.ring_answered, state.ring_other, state.handle
    if p <= 0.0 or ring is None or other is None or handle is None:
        return progressive, "no-estimates"
    cap = policy.abandon_cap
    measured = control_abandon_rate(state.abandons, state.live_answers, cap)
    if measured >= cap:
        return progressive, "cap-reached"
    start = policy.backoff_start * cap
    scale = 1.0 if measured <= start else (cap - measured) / (cap - start)
    alpha = policy.predictive_target * scale

    horizon = ring.mean + CONNECT_GRACE_SECONDS
    agents_mean = float(state.free_agents)
    agents_var = 0.0
    done_within = handle.done_within
    for elapsed in state.busy_elapsed:
        q = done_within(elapsed, horizon)
        agents_mean += q
        agents_var += q * (1.0 - q)
    agents_mean += sum(1 for t in state.agents_freeing if t <= horizon)

    # A call still ringing after `age` seconds is less likely to be answered than a new one.
    answers_mean = 0.0
    answers_var = 0.0
    ring_at, other_at = ring.at, other.at
    q_other = 1.0 - p
    for age in state.ringing:
        live = p * ring_at(age)
        total = live + q_other * other_at(age)
        if total > 0.0:
            pj = live / total
            answers_mean += pj
            answers_var += pj * (1.0 - pj)

    new_var = p * (1.0 - p)

    def acceptable(n: int) -> bool:
        expected = answers_mean + n * p
        over = expected_overflow(expected - agents_mean, answers_var + n * new_var + agents_var)
        return over <= alpha * expected

    hi = max(0, math.floor(policy.max_lines_per_agent * state.staffed_agents) - len(state.ringing))
    if alpha <= 0.0 or not acceptable(0):
        n = 0
    elif acceptable(hi):
        n = hi
    else:  # acceptable(n) holds on [0, n*] (the overflow is convex in n): bisect for n*
        lo = 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if acceptable(mid):
                lo = mid
            else:
                hi = mid
        n = lo
    detail.update(
        horizon=horizon,
        agents_expected=agents_mean,
        answers_in_flight=answers_mean,
        alpha=alpha,
        measured_abandon_rate=measured,
    )
    if n < progressive:
        n = progressive
    return n, ("predictive" if scale >= 1.0 else "backoff")
