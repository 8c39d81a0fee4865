"""How many calls to place now: one pure function per mode, then the hard ceilings.

`decide(policy, state)` is the only entry point the runtime needs. It never reads a clock,
never touches Redis, and is cheap enough to call every tick (see BENCHMARKS.md).

Reason codes (Decision.reason):
  progressive, power, predictive, agentless   the mode decided normally
  no-agents                                    nobody staffed: nothing is dialed
  no-estimates                                 predictive without estimates: progressive
  backoff                                      predictive or power backing off as the abandon rate nears the cap
  cap-reached                                  measured abandon rate at/over the cap: progressive
  room                                         power placing fewer lines than its ratio: with the room under the
                                               cap a few abandons, more calls in flight could overflow past it
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

from dialer.pacing.model import CONNECT_GRACE_SECONDS, Decision, PacingMode, PacingPolicy, PacingState

__all__ = ["control_abandon_rate", "decide", "expected_overflow", "room_why"]

# The measured abandon rate used for control is smoothed with this many pseudo-answers at half
# the cap, so the first abandon of a window (1 of 10 answers = 10%) does not throw a campaign
# back to progressive for the day. The legal figure reported to the dashboard is the raw one.
_PRIOR_ANSWERS = 100.0
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def control_abandon_rate(abandons: int, live_answers: int, cap: float, *, margin: bool = True) -> float:
    """The abandon rate the back-off reacts to: the window's rate smoothed by a prior at cap/2,
    plus (margin) one standard error. The margin matters for small campaigns, whose rate at the
    end of the window swings most; with thousands of answers it all but vanishes. It also means
    predictive starts a fresh window backed off (2.7% with a 3% cap and no answers yet) and
    reaches its full risk budget after about 50 live answers without an abandon."""
    n = live_answers + _PRIOR_ANSWERS
    # Abandons are a subset of live answers; an inconsistent observation (more abandons than
    # answers, from counters read at different instants) is read as the worst case, never a crash.
    rate = min(1.0, (abandons + _PRIOR_ANSWERS * cap * 0.5) / n)
    return rate + math.sqrt(rate * (1.0 - rate) / n) if margin else rate


def expected_overflow(mean: float, variance: float) -> float:
    """E[max(D, 0)] for D ~ Normal(mean, variance)."""
    if variance <= 0.0:
        return mean if mean > 0.0 else 0.0
    sd = math.sqrt(variance)
    z = mean / sd
    return sd * _INV_SQRT2PI * math.exp(-0.5 * z * z) + mean * 0.5 * math.erfc(-z * _INV_SQRT2)


class _OverflowTail:
    """P(D > room) for the overflow D = X - Y of the calls in flight (see _predictive), worked out exactly.

    X, the answers, is a sum of independent Bernoulli(p_j) (each ringing call's, then each new call's); Y, the agents
    free by the horizon, is `sure` plus a sum of independent Bernoulli(q_i) (the busy agents'). Both are
    Poisson-binomial counts: X(ringing) - (Y - sure) is convolved once per decision, truncated where the room's
    question stops (all mass of X at or past `top` in one cell), then each number of new calls tried adds a binomial,
    a walk over at most `top` terms. Exact for the model however skewed the counts are (a normal approximation is
    not: a small room's risk is a few unlikely answers, whose tail past mean + 4 sd is far heavier)."""

    __slots__ = ("need", "survival", "zmax")

    def __init__(self, ringing: list[tuple[float, int]], freeing: list[float], sure: int, room: int) -> None:
        zmax = len(freeing)
        self.need = need = room + sure + 1  # D > room  <=>  X(ringing) - Z + B(new) >= need
        top = need + zmax  # X at or past top exceeds the room whatever Z and the new calls: one cell
        x = [1.0] + [0.0] * top
        for pj, m in ringing:
            qj = 1.0 - pj
            for _ in range(m):
                last = x[top] + x[top - 1] * pj
                x = [x[0] * qj, *[lo * pj + hi * qj for lo, hi in itertools.pairwise(x[:-1])], last]
        z = [1.0]  # z[i] = P(Z = i), Z the busy agents finishing within the horizon
        for q in freeing:
            z = [a * (1.0 - q) + b * q for a, b in zip([*z, 0.0], [0.0, *z], strict=True)]
        # w[v + zmax] = P(X - Z = v), v from -zmax to top (the top cell is "X at or past top", kept as at top)
        w = [0.0] * (top + zmax + 1)
        for i, pi in enumerate(z):
            if pi > 0.0:
                for j, px in enumerate(x):
                    w[j - i + zmax] += pi * px
        survival = [0.0] * (len(w) + 1)  # survival[v + zmax] = P(X - Z >= v)
        for v in range(len(w) - 1, -1, -1):
            survival[v] = survival[v + 1] + w[v]
        self.survival, self.zmax = survival, zmax

    def exceeds(self, k: int, p: float) -> float:
        """P(D > room) with k more calls placed, each answered with probability p."""
        sv, zmax, need = self.survival, self.zmax, self.need
        total, mass, pmf = 0.0, 0.0, (1.0 - p) ** k if p < 1.0 else float(k == 0)
        for b in range(k + 1):  # b new answers: X - Z must reach need - b
            i = need - b + zmax
            if i <= 0:
                return min(1.0, total + (1.0 - mass))  # the rest of B's mass exceeds the room for sure
            total += pmf * (sv[i] if i < len(sv) else 0.0)
            mass += pmf
            if p >= 1.0:
                pmf = float(b + 1 == k)
            else:
                pmf *= (k - b) / (b + 1) * p / (1.0 - p)
        return min(1.0, total)


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
        ratio, reason = policy.power_ratio, "power"
        if policy.enforce_cap:
            # The supervisor chose the ratio: fall back on the smoothed measured rate only, without predictive's
            # small-sample margin (which would hold a fresh power campaign near 1 line per agent for its first
            # ~50 answers, abandons or not).
            scale = _backoff_scale(policy, state, margin=False)
            if scale < 1.0:  # lines per free agent slide from the ratio down to 1 (progressive)
                ratio, reason = 1.0 + (ratio - 1.0) * scale, ("backoff" if scale > 0.0 else "cap-reached")
        wanted = math.floor(ratio * state.free_agents + 0.5) - ringing
        if policy.enforce_cap and wanted > state.free_agents - ringing:
            wanted, held = _power_within_room(policy, state, wanted, detail)
            if held:
                reason = "room"
    else:
        wanted, reason = _predictive(policy, state, detail)
    wanted = max(0, wanted)
    calls, limited_by = _apply_ceilings(wanted, state)
    return Decision(calls, wanted, mode, reason, limited_by, detail)


def _backoff_scale(policy: PacingPolicy, state: PacingState, *, margin: bool = True) -> float:
    """1 while the measured abandon rate is under backoff_start * cap, falling linearly to 0 at
    the cap (and 0 above it). With the margin (predictive): the rate carries its small-sample margin
    (shrunk once the window has room for more than MARGIN_ROOM abandons), and under backoff_start the
    scale rises above 1, up to 1 + BOOST at a rate of 0 (see BOOST)."""
    cap = policy.abandon_cap
    measured = control_abandon_rate(state.abandons, state.live_answers, cap, margin=False)
    room = math.floor(cap * state.live_answers - state.abandons + 1e-9)
    if margin:
        se = math.sqrt(measured * (1.0 - measured) / (state.live_answers + _PRIOR_ANSWERS))
        measured += se * (MARGIN_ROOM / room if room > MARGIN_ROOM else 1.0)
    start = policy.backoff_start * cap
    if measured <= start:
        # (the rise only once the room is large: a window with room for a few abandons is paced as before)
        boosted = margin and policy.boost and start > 0.0 and room > MARGIN_ROOM
        return 1.0 + (BOOST * (1.0 - measured / start) if boosted else 0.0)
    if measured >= cap:
        return 0.0
    return (cap - measured) / (cap - start)


# Small teams: the one-standard-error margin is a third of the cap while a window holds fewer than ~150
# answers, so one or two early abandons held a 5-agent campaign at progressive for hours, at a fifth of its
# occupancy with a low answer rate (issue 15, s. 4). The margin now only scales the risk budget down to a
# floor; progressive (cap-reached) is for a window whose raw or smoothed rate is at the cap. The floor is
# FLOOR_SHARE of the budget at a rate of 0, shrinking linearly to nothing at the cap. (Measured, issue 15
# benchmark: a floor of 0.75 or a floor starting at backoff_start let a 5-agent day end above 3%; 0.5 did not.)
FLOOR_SHARE = 0.5
# The small-sample margin guards a window whose room under the cap is a few abandons: one unlucky minute empties it
# and the campaign is held (cap-room) until answers make room again. Once the room is larger than MARGIN_ROOM
# abandons, an estimate a standard error too low costs only part of a room that keeps growing with the answers, so
# the margin shrinks as MARGIN_ROOM / room (a 25-agent campaign at 5% live answers has room 10 after ~350 answers,
# 30 after ~1,100; a 5-agent campaign's room rarely passes 10 in a day, so its margin is unchanged). Issue 15:
# with the full margin a 25-agent team backed off for its first hour after two early abandons.
MARGIN_ROOM = 10
# The per-call risk budget (predictive_target) is a model quantity, and the abandon rate it yields depends on the
# team: 5 agents at 10% end days at about 2%, 25 agents with 30 s calls at 5% live answers end at 0.9%, far under a
# cap that the hindsight-best fixed ratio uses to 2.75% (a pool of 25 agents with short calls frees one every
# second or two, so an answer the model counts as "no agent at the horizon" is mostly taken within the grace). So
# the budget is closed on the measured rate: while the rate with its margin is under backoff_start x cap, the
# budget rises in proportion to the unused part, up to (1 + BOOST) x predictive_target at a rate of 0, and is back
# at predictive_target when the rate reaches backoff_start. Only once the window has room for more than MARGIN_ROOM
# abandons: with the rise from ~100 answers on (a window that had no abandon yet), a 10-agent day's legal window
# reached 3.53% for an instant (a burst of abandons at room 1-2), which the rise held to the large room does not do.
# So a small team, whose room rarely passes 10, is paced as before. (Measured, issue 15 benchmark: BOOST 2 brought
# the 25-agent cell from 16 to 20 of 20 seeds; 4 backed off more often and was no better.)
BOOST = 2.0
# Whatever the boost, the per-call budget stays within what predictive_target itself may be set to.
MAX_ALPHA = 0.5
# Standard deviations of the calls in flight's overflow kept within the room under the cap (see _predictive).
ROOM_Z = 4.0
# Up to this room (abandons), the overflow's tail is also bounded outright: P(overflow > lawful room) <= ROOM_EPS.
# The normal approximation above understates a small room's risk: the answers are a sum of a few unlikely events,
# skewed like a Poisson count, whose tail past mean + 4 sd is far heavier than the normal's (issue 15: two 10-agent
# days peaked at 3.03% and 3.37% for an instant). Past ROOM_TAIL_MAX the normal bound is left alone (a large room is
# many standard deviations wide and the skew fades).
ROOM_EPS = 1e-4
ROOM_TAIL_MAX = 10
# Up to this room (abandons), the room's check counts only the free agents, not the busy ones about to free up.
ROOM_FREE_ONLY = 2


def _room_floor(policy: PacingPolicy, state: PacingState) -> float:
    """The least share of predictive's risk budget while the window is under its cap (0 at the cap)."""
    cap = policy.abandon_cap
    if cap <= 0.0:
        return 0.0
    smoothed = control_abandon_rate(state.abandons, state.live_answers, cap, margin=False)
    raw = state.abandons / state.live_answers if state.live_answers else 0.0
    return FLOOR_SHARE * max(0.0, 1.0 - max(raw, smoothed) / cap)


def _room_and_lawful(cap: float, state: PacingState) -> tuple[int, int]:
    """(room, lawful): the abandons the legal window can take and stay at or under the cap, counted on today's
    answers (room) and with each abandon also a live answer, (A + k) / (N + k) <= cap (lawful)."""
    room = math.floor(cap * state.live_answers - state.abandons + 1e-9)
    lawful = math.floor((cap * state.live_answers - state.abandons) / (1.0 - cap) + 1e-9) if cap < 1.0 else room
    return room, lawful


def room_why(decision: Decision, window_label: str = "legal window") -> str:
    """The dashboard's text for a power decision cut by the room under the cap (reason `room`)."""
    room = int(decision.detail.get("room", 0))
    return (f"the {window_label} has room for {room} more abandon{'s' if room != 1 else ''} under the cap: fewer "
            "lines than the power ratio are placed, so that the calls in flight cannot abandon more than that "
            f"(probability under {ROOM_EPS:g}), until answers make more room")


def _power_within_room(policy: PacingPolicy, state: PacingState, wanted: int,
                       detail: dict[str, float]) -> tuple[int, bool]:
    """Power's new calls, at most `wanted`, cut while the room under the cap is 1-ROOM_TAIL_MAX abandons so that
    P(overflow of its calls in flight > lawful room) <= ROOM_EPS: predictive's exact tail bound (_OverflowTail),
    with the busy agents not counted on while the room is ROOM_FREE_ONLY or less. Never below progressive (free
    agents less calls in flight: each of those has an agent). True when the bound cut the calls.

    Without it, power checked only that the window had room for one more abandon (`cap-room`) and then placed its
    ratio's lines: two abandons at room one took a 56-answer window to 3.57% (issue 15). No room at all is the
    legal hold's (`cap-room`, guard.py), applied before decide()."""
    room, lawful = _room_and_lawful(policy.abandon_cap, state)
    if room < 1 or room > ROOM_TAIL_MAX:
        return wanted, False
    progressive = max(0, state.free_agents - len(state.ringing))
    p = state.answer_rate
    ring, other, handle = state.ring_answered, state.ring_other, state.handle
    if p <= 0.0:  # no estimate of the answer rate: every call may be answered, and no agent freeing is counted on
        return progressive, wanted > progressive
    if ring is not None and other is not None:
        pjs = [(live / total, m) for age, m in Counter(state.ringing).items()
               if (total := (live := p * ring.at(age)) + (1.0 - p) * other.at(age)) > 0.0]
    else:  # no ring-time estimates: each call in flight is answered at the answer rate
        pjs = [(p, len(state.ringing))] if state.ringing else []
    freeing: list[float] = []
    sure = state.free_agents
    if room > ROOM_FREE_ONLY and handle is not None and ring is not None:
        horizon = ring.mean + CONNECT_GRACE_SECONDS
        freeing = [q for elapsed in state.busy_elapsed
                   if (alive := handle.at(elapsed)) > 0.0
                   and (q := (alive - handle.at(elapsed + horizon)) / alive) > 0.0]
        sure += sum(1 for t in state.agents_freeing if t <= horizon)
    tail = _OverflowTail(pjs, freeing, sure, lawful)
    detail.update(room=room)
    if tail.exceeds(wanted, p) <= ROOM_EPS:
        return wanted, False
    lo, hi = progressive, wanted  # the largest count within the bound (the tail grows with the calls): bisect
    if tail.exceeds(lo, p) > ROOM_EPS:
        return progressive, True
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tail.exceeds(mid, p) <= ROOM_EPS:
            lo = mid
        else:
            hi = mid
    return lo, True


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
    no agent. We add calls while the last one's share of it (its chance of being answered with
    no agent, per expected answer) stays at or below alpha, the risk budget, which is scaled
    down as the measured abandon rate approaches the cap.
    """
    progressive = state.free_agents - len(state.ringing)
    p = state.answer_rate
    ring, other, handle = state.ring_answered, state.ring_other, state.handle
    if p <= 0.0 or ring is None or other is None or handle is None:
        return progressive, "no-estimates"
    scale = _backoff_scale(policy, state)
    if scale < 1.0:
        scale = max(scale, _room_floor(policy, state))
    if scale <= 0.0:
        return progressive, "cap-reached"
    alpha = min(policy.predictive_target * scale, max(policy.predictive_target, MAX_ALPHA))

    horizon = ring.mean + CONNECT_GRACE_SECONDS
    agents_mean = float(state.free_agents)
    agents_var = 0.0
    # Survival lookups are inlined (this loop and the next run per busy agent / ringing call
    # on every tick): values[k] = P(duration >= k * step), the last value covers the tail.
    # (Comprehensions, not a loop with two accumulators: this is most of a simulated day's run time.)
    hs, h_inv = handle.values, 1.0 / handle.step
    hn, h_tail = len(hs), handle.values[-1]
    qs = [(alive - (hs[k] if (k := int((elapsed + horizon) * h_inv)) < hn else h_tail)) / alive
          for elapsed in state.busy_elapsed
          # an agent busy longer than anything observed (alive 0) is not counted on
          if (alive := hs[k] if (k := int(elapsed * h_inv)) < hn else h_tail) > 0.0]
    agents_mean = sum(qs, agents_mean)
    agents_var = sum([q * (1.0 - q) for q in qs], agents_var)
    agents_mean += sum(1 for t in state.agents_freeing if t <= horizon)

    # A call still ringing after `age` seconds is less likely to be answered than a new one:
    # P(live | still ringing at age) = p S_live(age) / (p S_live(age) + (1 - p) S_other(age)).
    answers_mean = 0.0
    answers_var = 0.0
    rs, r_inv, rn, r_tail = ring.values, 1.0 / ring.step, len(ring.values), ring.values[-1]
    os_, o_inv, on, o_tail = other.values, 1.0 / other.step, len(other.values), other.values[-1]
    q_other = 1.0 - p
    # Calls placed at the same instant have the same age (a simulated tick places them together): each distinct
    # age is worked out once, weighted by how many calls have it.
    pjs = [(live / total, m) for age, m in Counter(state.ringing).items()
           if (total := (live := p * (rs[k] if (k := int(age * r_inv)) < rn else r_tail))
               + q_other * (os_[k] if (k := int(age * o_inv)) < on else o_tail)) > 0.0]
    answers_mean = sum([pj * m for pj, m in pjs], answers_mean)
    answers_var = sum([pj * (1.0 - pj) * m for pj, m in pjs], answers_var)

    new_var = p * (1.0 - p)
    base_mean = answers_mean - agents_mean
    base_var = answers_var + agents_var

    def overflow(n: int) -> float:
        return expected_overflow(base_mean + n * p, base_var + n * new_var)

    def acceptable(n: int) -> bool:
        """The n-th new call's expected abandons stay within alpha of its expected answers."""
        return overflow(n) - overflow(n - 1) <= alpha * p

    hi = max(0, math.floor(policy.max_lines_per_agent * state.staffed_agents) - len(state.ringing))
    # Each extra call raises the mean of D by p and its spread only by a square root, so the
    # marginal risk grows with n: acceptable() holds on [1, n*] (or nowhere); bisect for n*.
    if hi == 0 or not acceptable(1):
        n = 0
    elif acceptable(hi):
        n = hi
    else:
        lo = 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if acceptable(mid):
                lo = mid
            else:
                hi = mid
        n = lo
    # The room left under the cap (how many more abandons the legal window can take and stay at or under it):
    # the overflow of the calls in flight must stay within it with ROOM_Z standard deviations to spare, or a
    # burst of answers (several at once, no agent free) abandons more than the room. Without this, three
    # predictive campaigns on 8 agents ended 2 h days at 3.1-4.9% (4 of 24 seeds): each with room for one
    # abandon, two or three came within 20 s (issue 15). Binds while the room is small; a window with many
    # answers has room enough. With room for one or two abandons, the busy agents are not counted on at all
    # (with them counted, 2 of 13 such days still broke the cap; 3 standard deviations instead of 4, 1 of 40).
    # Measured in BENCHMARKS.md ("A held campaign on a crowded queue").
    room, lawful = _room_and_lawful(policy.abandon_cap, state)
    if room <= ROOM_FREE_ONLY:
        mean0, var0 = answers_mean - state.free_agents, answers_var
    else:
        mean0, var0 = base_mean, base_var

    # Each abandon is also a live answer, so k more abandons are lawful while (A + k) / (N + k) <= cap (lawful).
    tails: list[_OverflowTail] = []  # built on first need: most decisions are settled by the normal check

    def within_room(k: int) -> bool:
        if mean0 + k * p + ROOM_Z * math.sqrt(max(0.0, var0 + k * new_var)) > room:
            return False
        if room > ROOM_TAIL_MAX:
            return True
        if not tails:
            # The busy agents' finishing counts (a Poisson-binomial); none counted on at room <= ROOM_FREE_ONLY.
            freeing, sure = ([], state.free_agents) if room <= ROOM_FREE_ONLY else (
                qs, state.free_agents + sum(1 for t in state.agents_freeing if t <= horizon))
            tails.append(_OverflowTail(pjs, freeing, sure, lawful))
        return tails[0].exceeds(k, p) <= ROOM_EPS

    # (No room at all is the legal hold's, `cap-room` in guard.py, which the runtime and the simulator apply
    # before this; decide() alone keeps dialing ahead on a fresh window.)
    if room >= 1 and n > 0 and not within_room(n):
        lo, hi = 0, n  # the largest k within the room (the bound grows with k): bisect
        if not within_room(0):
            hi = 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if within_room(mid):
                lo = mid
            else:
                hi = mid
        n = lo
    detail.update(
        horizon=horizon,
        agents_expected=agents_mean,
        answers_in_flight=answers_mean,
        alpha=alpha,
        room=room,
    )
    if n < progressive:
        n = progressive
    return n, ("predictive" if scale >= 1.0 else "backoff")
