"""One campaign's decision on a pool of agents it shares with other campaigns: the runtime's rule and the
simulator's, one implementation (dialer/runtime/shared.py and dialer/simulate.py both call `plan_on_pool`).

The observation is the whole pool: its free agents, its busy agents, and every campaign's calls in flight towards
it (the "ringing" calls; a free agent another campaign's call is heading for is not free for this one). Then:

1. the legal rules (dialer.pacing.guard.abandon_verdict): over the cap, no room for one more abandon, or no room in
   the short-window guard: only calls with an agent reserved;
2. **each campaign gets its entitled share whatever its mode.** A progressive campaign (or one held by a legal rule)
   places a call only for an agent no call in flight may take. Paced on the whole pool next to a predictive
   campaign (which keeps more calls in flight than there are free agents, by design) it would never find one: it
   was starved (and a campaign held at `cap-room` would never earn the answers that end the hold). So such a
   campaign (`reserves`) is given its **slice of the free agents** (`apportion` of the free agents between the
   campaigns that want them: priority, then weight, capped at demand), less the agents the others' calls in
   flight will want (a reserving campaign's: one each; an overdialing one's: as many as they answer but with
   probability HOLD_EPS, at this campaign's estimates), and paces progressive on it with its own calls;
   every other campaign paces on the free agents less the reserving campaigns' slices (or their calls in flight,
   if more), and while a campaign held by a legal rule (`held` in its claim) has not filled its slice, or a
   reserving campaign has calls in flight, counts on none of the busy agents freeing up: on a crowded queue those
   are what the reserved agents are cut from;
3. decide() (dialer.pacing.guard.decide_within) says how many lines the pool may carry (calls in flight + the new
   calls this campaign wants); `apportion` splits them between the campaigns that want them (a progressive
   campaign's slice is its share already).

Pure: counts and ages in, plan out.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from dialer.pacing.guard import AbandonGuard, GuardWindow, Verdict, abandon_verdict, decide_within
from dialer.pacing.model import Decision, PacingMode, PacingPolicy, PacingState
from dialer.pacing.sharing import ShareClaim, apportion, entitlement

__all__ = ["PoolPlan", "free_slices", "plan_on_pool"]


@dataclass(frozen=True)
class PoolPlan:
    """calls: new calls to place now. lines: the pool's calls in flight after them, at most (this campaign's pacing
    figure). share: this campaign's calls in flight after them, at most. claim: what it publishes for the others."""

    verdict: Verdict
    decision: Decision
    calls: int
    lines: int
    share: int
    claim: ShareClaim


# A busy agent's time on its call (seconds) past any survival table: staffed, but not expected to free up.
NOT_FREEING = 1e9


def reserves(policy: PacingPolicy) -> bool:
    """Campaigns that place a call only for an agent of their own: progressive."""
    return policy.mode is PacingMode.PROGRESSIVE


def free_slices(free: int, claims: Sequence[ShareClaim]) -> dict[str, int]:
    """Each campaign's slice of the pool's `free` agents: `apportion` over the campaigns' demands, each capped at
    the free agents (a campaign cannot use more agents than are free)."""
    return apportion(free, [dataclasses.replace(c, demand=min(free, c.demand)) for c in claims])


# A reserving campaign leaves to the overdialing campaigns' calls in flight as many agents as they answer but with
# probability HOLD_EPS (their answers are a Poisson-binomial count, worked out exactly). Expected answers plus one
# standard deviation (the rule before) was exceeded about one decision in six: the surplus answers, first in the
# queue, took the agent the reserving campaign had counted on, and its caller was abandoned (issue 15: a
# progressive campaign abandoned 1 of 111 answers, a held power campaign's reserved call took its legal window
# to 3.57%; BENCHMARKS.md "Reserved calls on a shared queue").
HOLD_EPS = 1e-4


def held_answers(ages: Sequence[float], count: int, state: PacingState) -> int:
    """The least h with P(answers of `count` calls in flight > h) <= HOLD_EPS. The calls are `count` of `ages` (the
    pool's calls in flight not this campaign's; which are whose is not observed, so the `count` most likely to be
    answered are taken), each answered with its chance given how long it has rung (decide's model); every call is
    counted as answered while there are no estimates."""
    if count <= 0:
        return 0
    p, ring, other = state.answer_rate, state.ring_answered, state.ring_other
    if not 0.0 < p < 1.0 or ring is None or other is None or len(ages) < count:
        return count
    chances = []
    for age in ages:
        live = p * ring.at(age)
        total = live + (1.0 - p) * other.at(age)
        chances.append(live / total if total > 0.0 else p)
    chances.sort(reverse=True)
    dist = [1.0]  # dist[k] = P(k answers)
    for pj in chances[:count]:
        dist = [a * (1.0 - pj) + b * pj for a, b in zip([*dist, 0.0], [0.0, *dist], strict=True)]
    tail = 0.0  # P(X > h)
    for h in range(count, -1, -1):
        if tail > HOLD_EPS:
            return h + 1
        tail += dist[h]
    return 0


def _minus(ages: Sequence[float], mine: Sequence[float]) -> list[float]:
    """The ages of `ages` less one occurrence of each of `mine` (the others' calls in flight)."""
    left = Counter(mine)
    out = []
    for age in ages:
        if left[age] > 0:
            left[age] -= 1
        else:
            out.append(age)
    return out


def _part(busy: Sequence[float], share: float) -> tuple[float, ...]:
    """`share` of the busy agents, evenly spread over how long they have been busy."""
    if share >= 1.0 or not busy:
        return tuple(busy)
    ordered = sorted(busy)
    keep = round(len(ordered) * share)
    return tuple(ordered[min(len(ordered) - 1, int(j / share))] for j in range(keep))


def plan_on_pool(policy: PacingPolicy, state: PacingState, *, key: str, mine: Sequence[float],
                 others: Sequence[ShareClaim], legal: tuple[int, int] | None, weight: float = 1.0, priority: int = 0,
                 guard: AbandonGuard | None = None, window: GuardWindow | None = None,
                 window_label: str = "legal window", contacts: int | None = None, joining: str = "") -> PoolPlan:
    """`state`: the pool's observation (free_agents and busy_elapsed of the pool, ringing: the ages of every
    campaign's calls in flight towards it) with this campaign's estimates and ceilings. `mine`: the ages of this
    campaign's calls in flight (among the ringing). `others`: the other campaigns' claims (calls in flight + new
    calls they last asked for). `legal`: (live answers, abandons) over the legal window (None: no legal hold, only
    for the benchmark's fixed-ratio oracle, never the runtime). `contacts`: how many new
    calls it has contacts for, when that is known to be short. `joining`: the legal campaign it joined moments ago
    (dialer.pacing.legal; `legal` is then already its share of that campaign's window)."""
    verdict = Verdict(False) if legal is None else abandon_verdict(
        policy.abandon_cap, legal, window_label=window_label, guard=guard, window=window, joining=joining)
    others = [c for c in others if c.key != key]
    total, n_mine = len(state.ringing), len(mine)
    free = state.free_agents
    seen = state
    mine_reserves = policy.mode is not PacingMode.AGENTLESS and (reserves(policy) or verdict.reserved_only)
    slice_wanted: int | None = None
    if others and (mine_reserves or any(c.reserves for c in others)):
        wants = free if contacts is None else min(free, n_mine + contacts)
        slices = free_slices(free, [ShareClaim(key, wants, weight, priority, n_mine, mine_reserves), *others])
        if mine_reserves:
            # Its slice, less what the others hold beyond theirs (a reserving campaign's calls in flight each hold
            # an agent; another campaign's, at most its slice): paced progressive on it with its own calls.
            overdialed = sum(c.in_flight for c in others if not c.reserves)
            held = sum(c.in_flight for c in others if c.reserves) + held_answers(
                _minus(state.ringing, mine), overdialed, state)
            seen = dataclasses.replace(state, free_agents=max(0, min(slices[key], free - held)), ringing=tuple(mine))
            slice_wanted = max(0, slices[key] - n_mine)  # its claim: what its slice would take, held back or not
        else:
            # A reserving campaign's slice is its own: the agents it has not filled with calls yet, and those its
            # calls in flight are heading for (each has an agent reserved; among the ringing calls it counts only at
            # its chance of an answer, so without this its agent would be overdialed on).
            kept = sum(max(slices[c.key], c.in_flight) for c in others if c.reserves)
            # of the busy agents who will free up, it counts on its weight's part only (the others' slices are cut
            # from the free agents, which the busy ones become)
            sharing = weight + sum(c.weight for c in others if c.reserves and c.demand > 0 and c.priority >= priority)
            busy = _part(state.busy_elapsed, weight / sharing)
            if any((c.held and slices[c.key] > c.in_flight) or (c.reserves and c.in_flight > 0) for c in others):
                # A campaign held by a legal rule is waiting for its slice, or a reserving campaign has calls in
                # flight (each with an agent it counted on): count on none of the busy agents freeing up (they are
                # what its slice is cut from), so this campaign's answers stay within the free agents left to it.
                # The queue serves answered callers first come first served: answers placed ahead of agents that
                # had not freed in time took the reserved agent before the reserved call was answered (issue 15:
                # a progressive campaign's caller abandoned on shared-queue, seed 3). (Still staffed: not freeing.)
                busy = (NOT_FREEING,) * len(busy)
            seen = dataclasses.replace(state, free_agents=max(0, free - kept), busy_elapsed=busy)
    decision = decide_within(policy, seen, verdict)
    wanted = decision.wanted if slice_wanted is None else max(decision.wanted, slice_wanted)
    if contacts is not None:
        wanted = min(wanted, contacts)
    if mine_reserves and others:  # its slice is its share; the pool may not have more in flight than it saw
        lines, share = total + decision.calls, n_mine + decision.calls
    else:
        lines = total + decision.wanted
        if others:
            # Its demand is the pool's lines it would carry, not the new calls left once the others' calls fill
            # them: with the pool full that was its own calls in flight, so whoever filled the pool first kept it
            # (two power campaigns of equal weight: 1,300 and 150 calls in 2 h). The apportion then gives each its
            # part of the lines, and one holding more places nothing until its calls end.
            wanted = max(wanted, lines - n_mine)
            if contacts is not None:
                wanted = min(wanted, contacts)
        # alone: apportion of one claim is its demand (skipped: this runs every tick of every simulated second)
        share = n_mine + wanted if not others else entitlement(
            lines, ShareClaim(key, n_mine + wanted, weight, priority), others)
    calls = max(0, min(decision.calls, share - n_mine))
    claim = ShareClaim(key, wanted, weight, priority, reserves=mine_reserves,
                       held=mine_reserves and verdict.reserved_only and not reserves(policy))
    return PoolPlan(verdict, decision, calls, lines, share, claim)
