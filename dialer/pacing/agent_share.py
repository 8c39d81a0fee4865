"""How campaigns that share a pool of agents split its free agents: a pure function per policy.

Each campaign paces on its own share: `decide()` sees `free_agents` = its share, `busy_elapsed` = the
agents on its own calls, `ringing` = its own calls in flight. Summed over campaigns, no agent is counted
twice, so progressive campaigns sharing a queue never abandon (issue 15, section 0).

`proportional_to_demand` is the simulator's policy (the runtime's may differ; the simulator takes any
function with this signature):

* A campaign keeps the agents it was given while its calls are still ringing (`committed`, worked out by
  the caller: at most its previous share; for progressive and power its calls in flight, for predictive
  the answers expected from them plus one standard deviation). Taking them away would let another
  campaign dial against the same agents, and the ringing calls would find nobody.
* Each campaign is entitled to a part of the whole pool (free agents plus agents on calls) in proportion
  to weight x demand, where demand is how many agents it could use (0 when it has nothing to dial). The
  rest of the free agents goes to campaigns below their entitlement, in proportion to how far below they
  are (or, when none is, to weight x demand), by largest remainder; ties go to the campaign holding fewest
  agents per weight, then to the earlier one.
* When agents left so that the commitments exceed the free agents, the commitments shrink in the same
  proportion (the calls in flight may then be abandoned: there is nobody for them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["SharePolicy", "ShareRequest", "proportional_to_demand"]


@dataclass(frozen=True)
class ShareRequest:
    """One campaign's claim on a pool's free agents at one tick.

    weight: its priority (>= 0; 0 = only what nobody else wants).
    demand: agents it could use now (0: nothing to dial).
    committed: agents it holds for its calls in flight (min(calls in flight, previous share)).
    held: agents busy on its calls (for ties).
    """

    weight: float
    demand: float
    committed: int = 0
    held: int = 0


SharePolicy = Callable[[int, Sequence[ShareRequest]], list[int]]


def _largest_remainder(total: int, claims: Sequence[float], order: Sequence[int]) -> list[int]:
    """Integers summing to `total` (when the claims allow), proportional to claims."""
    weight = sum(claims)
    if total <= 0 or weight <= 0:
        return [0] * len(claims)
    exact = [total * c / weight for c in claims]
    shares = [math.floor(x) for x in exact]
    left = total - sum(shares)
    for i in sorted(order, key=lambda i: -(exact[i] - shares[i]))[:left]:
        shares[i] += 1
    return shares


def proportional_to_demand(free: int, requests: Sequence[ShareRequest]) -> list[int]:
    """Each campaign's share of `free` agents (a list in the order of `requests`; sum <= free)."""
    n = len(requests)
    if n == 0 or free <= 0:
        return [0] * n
    committed = [max(0, r.committed) for r in requests]
    total_committed = sum(committed)
    ties = sorted(range(n), key=lambda i: (requests[i].held / requests[i].weight if requests[i].weight > 0
                                           else math.inf, i))
    if total_committed >= free:
        return _largest_remainder(free, committed, ties)
    rest = free - total_committed
    claims = [r.weight * max(0.0, r.demand) for r in requests]
    if sum(claims) <= 0:  # only weight-0 campaigns want agents: share by demand
        claims = [max(0.0, r.demand) for r in requests]
    pool = free + sum(max(0, r.held) for r in requests)
    total_claims = sum(claims)
    deficits = [max(0.0, pool * claims[i] / total_claims - requests[i].held - committed[i]) if total_claims else 0.0
                for i in range(n)]
    extra = _largest_remainder(rest, deficits if sum(deficits) > 0 else claims, ties)
    # Never more than a campaign's demand: hand what is over to the others, in tie order.
    over = 0
    for i, r in enumerate(requests):
        cap = max(0, math.floor(r.demand))
        if extra[i] > cap:
            over += extra[i] - cap
            extra[i] = cap
    for i in ties:
        if over <= 0:
            break
        room = max(0, math.floor(requests[i].demand)) - extra[i]
        give = min(room, over)
        extra[i] += give
        over -= give
    return [c + e for c, e in zip(committed, extra, strict=True)]
