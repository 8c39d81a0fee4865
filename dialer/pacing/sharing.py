"""How campaigns that share one pool of agents divide its lines: a pure function every process computes alike.

Several campaigns (of one tenant or several, paced by one dialer process or several) may send calls to the same
agents. Their calls in flight are all counted against the pool's free agents (dialer/runtime/agentpool.py keeps
that count atomically in Redis); this module says how many of the pool's lines each campaign may hold.

The policy (docs/pacing.md, "Campaigns that share agents"):

1. Priority first. Campaigns with a higher `priority` are served their whole demand before a lower priority gets
   anything (VICIdial's campaign rank: agents take the highest-ranked campaign's calls first).
2. Within one priority, weighted max-min fairness ("water-filling"): each campaign is entitled to lines in
   proportion to its `weight`, never more than its `demand`; what a campaign does not need (few contacts left, a
   paused campaign) is shared by the others in proportion to their weights. So the split follows demand, and
   weights only matter when campaigns want more than there is.
3. Whole lines: largest remainder, ties broken by weight, then fewer calls in flight, then the campaign key, so
   every process that sees the same claims computes the same split and a last free line goes round.

A campaign's demand is counted in lines: the calls it has in flight towards the pool plus the new calls its pacing
wants now (for an overdialing campaign sharing the pool: the pool's lines its pacing would carry, less its own calls
in flight, so a full pool does not freeze the split where it stands; dialer/pacing/pool.py). A campaign already
holding more than its entitlement (another campaign just joined, agents left) places nothing until enough of its
calls have ended; none is cut off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ShareClaim", "apportion", "entitlement"]


@dataclass(frozen=True)
class ShareClaim:
    """One campaign's claim on a shared pool.

    key: unique in the pool ("tenant/campaign").
    demand: lines it wants in flight now (its calls in flight + the new calls its pacing wants), >= 0.
    weight: its share among campaigns of the same priority (> 0; default 1).
    priority: higher is served first (default 0).
    in_flight: of the demand, its calls already in flight (the rest is new calls).
    reserves: it places a call only for an agent of its own (progressive): it is given its slice of the free
        agents, which the others' pacing leaves to it (dialer/pacing/pool.py).
    held: it reserves because a legal rule holds it (cap-reached, cap-room, the short-window guard), not by its
        mode: until its slice is filled, the overdialing campaigns pace on the free agents left to them alone (not
        on busy agents about to free up), so their answers do not land on its agents and it earns its room.
    """

    key: str
    demand: int
    weight: float = 1.0
    priority: int = 0
    in_flight: int = 0
    reserves: bool = False
    held: bool = False

    def __post_init__(self) -> None:
        if self.demand < 0:
            raise ValueError(f"{self.key}: demand must be >= 0, got {self.demand}")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"{self.key}: weight must be a positive number, got {self.weight}")


def _water_fill(total: float, claims: Sequence[ShareClaim]) -> dict[str, float]:
    """Weighted max-min fair shares of `total` (real numbers), each capped at its demand."""
    share = {c.key: 0.0 for c in claims}
    open_ = [c for c in claims if c.demand > 0]
    left = float(total)
    while open_ and left > 1e-9:
        weights = sum(c.weight for c in open_)
        level = left / weights  # lines per unit of weight this round
        capped = [c for c in open_ if c.demand - share[c.key] <= level * c.weight + 1e-9]
        if not capped:  # nobody is satisfied: everyone takes its weighted part of what is left
            for c in open_:
                share[c.key] += level * c.weight
            return share
        for c in capped:  # these get their whole demand; the rest is shared again among the others
            left -= c.demand - share[c.key]
            share[c.key] = float(c.demand)
        open_ = [c for c in open_ if c not in capped]
    return share


def apportion(total: int, claims: Iterable[ShareClaim]) -> dict[str, int]:
    """Whole lines of a pool of `total` for each claim: priority tiers, weighted max-min fairness within a tier,
    largest remainder. Never more than a claim's demand; the sum never exceeds `total` (nor the total demand)."""
    claims = sorted(claims, key=lambda c: c.key)
    if len({c.key for c in claims}) != len(claims):
        raise ValueError("apportion: each campaign may claim once")
    out = {c.key: 0 for c in claims}
    left = max(0, int(total))
    for priority in sorted({c.priority for c in claims}, reverse=True):
        if left <= 0:
            break
        tier = [c for c in claims if c.priority == priority]
        demand = sum(c.demand for c in tier)
        if demand <= left:
            for c in tier:
                out[c.key] = c.demand
            left -= demand
            continue
        real = _water_fill(left, tier)
        whole = {k: math.floor(v + 1e-9) for k, v in real.items()}
        spare = left - sum(whole.values())
        # Largest remainder first; equal remainders: heavier weight, then fewer calls in flight (so the line goes
        # round: the key alone gave it to the same campaign every time a pool had one free agent for two), then
        # the key (deterministic everywhere).
        order = sorted(tier, key=lambda c: (-(real[c.key] - whole[c.key]), -c.weight, c.in_flight, c.key))
        for c in order:
            if spare <= 0:
                break
            if whole[c.key] < c.demand:
                whole[c.key] += 1
                spare -= 1
        out.update(whole)
        left = 0
    return out


def entitlement(total: int, mine: ShareClaim, others: Iterable[ShareClaim]) -> int:
    """The lines `mine` may hold in a pool of `total` next to the other claims (apportion's figure for it)."""
    return apportion(total, [mine, *(c for c in others if c.key != mine.key)])[mine.key]
