"""A tick's calls spread over this process's servers and their trunk slots taken: each server is asked for its
share (round robin, starting where the last tick stopped); what a full server could not take is offered to the
servers that took all theirs. The ceilings themselves are shared by every process in Redis (dialer/runtime/trunk.py).

Plain composition: the engine owns one `TrunkSlots` over its TrunkBudget and reads `usage` (the last counts Redis
gave, per server name) for its pacing decisions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import redis

from dialer.runtime.trunk import TrunkBudget, TrunkUsage

# The engine's logger: these lines were the engine's before the split, and operators and tests filter on its name.
log = logging.getLogger("dialer.runtime.engine")


class TrunkSlots:
    def __init__(self, trunk: TrunkBudget, lease_seconds: float) -> None:
        self.trunk = trunk
        self.lease_seconds = lease_seconds  # how long a slot not given back lasts (its reservation expires)
        self.usage: dict[str, TrunkUsage] = {}  # the last counts Redis gave, per server name
        self._rr = 0

    def round_robin(self, names: list[str], n: int) -> dict[str, int]:
        """n calls spread over the servers, starting where the last tick stopped."""
        share = dict.fromkeys(names, 0)
        for i in range(n):
            share[names[(self._rr + i) % len(names)]] += 1
        self._rr += n
        return share

    def reserve(self, share: dict[str, int], ai: bool = False) -> list[tuple[str, str]]:
        """(server, call id) for each call the servers' trunks (and AI sessions, `ai`) take now, all processes
        together: each server is asked for its share; what a full server could not take is offered to the servers
        that took all theirs."""
        wanted = {name: [uuid.uuid4().hex for _ in range(k)] for name, k in share.items() if k}
        granted, usage = self.trunk.reserve(wanted, ai=ai)
        self.usage.update(usage)
        slots = [(name, call_id) for name, ids in granted.items() for call_id in ids]
        shortfall = sum(len(ids) - len(granted.get(name, [])) for name, ids in wanted.items())
        roomy = [name for name, ids in wanted.items() if len(granted.get(name, [])) == len(ids)]
        if shortfall and roomy:
            extra = {name: [uuid.uuid4().hex for _ in range(k)]
                     for name, k in self.round_robin(roomy, shortfall).items() if k}
            try:
                more, usage = self.trunk.reserve(extra, ai=ai)
            except redis.RedisError:
                self.release(slots, ai)  # (the caller never sees them)
                raise
            self.usage.update(usage)
            slots += [(name, call_id) for name, ids in more.items() for call_id in ids]
        return slots

    def release(self, slots: list[tuple[str, str]], ai: bool) -> None:
        """Trunk reservations no Originate will use (if Redis refuses, they expire after one lease)."""
        try:
            self.trunk.release(slots, originated=False, ai=ai)
        except redis.RedisError as exc:
            log.warning("%d trunk reservations not given back (%s); they expire within %.0f s", len(slots), exc,
                        self.lease_seconds)

    async def free(self, slots: list[tuple[str, str]], ai: bool) -> None:
        await asyncio.to_thread(self.release, slots, ai)

