"""Heartbeats, leases and the pacing group: what lets several dialer processes share campaigns safely.

Each heartbeat measures the offset to Redis's clock (claim leases are compared on it), renews this process's
record, the claims it holds, its places on shared agents and its calls' trunk channels. Each campaign is paced by
one process per group of Asterisk servers (`pbx_group`), which holds the campaign's lease; the group is renamed
once the servers say who they are (`_regroup`).

A mixin, not a composed object: these methods read and write the engine's own state on every tick (the clock
offset `_skew` that Engine.clock() adds, `_renewed_at` that the Originate and outcome paths check, the campaigns
held in `runners`, the group name `pbx`), and tests set `_local_time` on the engine to skew its clock. Moving that
state out would change every caller for no gain in clarity. What it uses from Engine is listed below.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import redis

from dialer.config import AsteriskServer
from dialer.pacing import CampaignEstimators
from dialer.runtime.clockguard import ClockGuard
from dialer.runtime.datastate import DataStates
from dialer.runtime.queues import ContactQueue
from dialer.runtime.runner import CampaignRunner, Flight
from dialer.runtime.settings import RuntimeSettings
from dialer.runtime.shared import SharedPacer
from dialer.runtime.trunk import TrunkBudget, server_address

if TYPE_CHECKING:
    from dialer.campaigns import StoredCampaign

# The engine's logger: these lines were the engine's before the split, and operators and tests filter on its name.
log = logging.getLogger("dialer.runtime.engine")


def process_key(process_id: str) -> str:
    return f"dialer:runtime:process:{process_id}"


def campaign_lease_key(tenant: str, campaign: str, pbx: str) -> str:
    """The pacing lease of a campaign on one set of Asterisk servers (`pbx_group`)."""
    return f"t:{{{tenant}}}:campaign:{campaign}:runtime:lease:{pbx}"


def estimates_key(tenant: str, campaign: str) -> str:
    """The pacing estimates of a campaign, saved by its pacer so a successor does not start from the priors."""
    return f"t:{{{tenant}}}:campaign:{campaign}:runtime:estimates"


def pbx_group(servers: Sequence[AsteriskServer]) -> str:
    """Which agents a process sees: a short name for the set of servers it dials through. Processes on the same
    servers see the same agents, so only one of them paces a campaign (the others stand by); processes on
    different servers pace their own agents and share the campaign's queue. Until a server has said who it is,
    it is named by its address; the engine then regroups on identities (`pbx_group_of`,
    `ServerIdentities.group_names`), so two processes that reach one PBX by two addresses share one lease."""
    return pbx_group_of(server_address(s.host, s.port) for s in servers)


def pbx_group_of(names: Iterable[str]) -> str:
    """The group of servers named by their identities (dialer/runtime/identity.py) or addresses."""
    return hashlib.sha256(",".join(sorted(set(names))).encode()).hexdigest()[:12]


# Take or keep a lease: SET NX, or extend when we already hold it. KEYS: lease. ARGV: owner, ms. Returns 1 held.
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_UNLEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeasesMixin:
    """Engine's heartbeat, leases and pacing group (mixed into Engine; see the module docstring)."""

    redis: redis.Redis
    id: str
    pbx: str
    settings: RuntimeSettings
    placed: int
    flights: dict[str, Flight]
    runners: dict[tuple[str, str], CampaignRunner]
    shared: SharedPacer
    trunk: TrunkBudget
    datastate: DataStates
    clock_guard: ClockGuard
    _active: list[StoredCampaign]
    _lease: Any  # the registered _LEASE and _UNLEASE scripts
    _unlease: Any
    _stopping: bool
    _renewed_at: float
    _skew: float
    _local_time: Callable[[], float]

    def _regroup(self, group: str) -> None:
        """Move to the group named by the servers' identities (once they are known, or when a server turns out to
        be another Asterisk): the campaigns this process paces keep their leases under the new name unless
        another process on the same PBX already holds one there, in which case that process paces them."""
        if group == self.pbx:
            return
        old, self.pbx = self.pbx, group
        self.shared.pool.pbx = group
        ms = int(self.settings.lease_seconds * 1000)
        for runner in self.runners.values():
            if not runner.held:
                continue
            runner.held = bool(self._lease(keys=[campaign_lease_key(runner.tenant, runner.campaign, group)],
                                           args=[self.id, ms]))
            self._unlease(keys=[campaign_lease_key(runner.tenant, runner.campaign, old)], args=[self.id])
            if not runner.held:
                log.warning("runtime %s: campaign %s/%s is paced by another process on the same Asterisk", self.id,
                            runner.tenant, runner.campaign)
        log.info("runtime %s: servers identified; pacing group %s (was %s, by address)", self.id, group, old)

    def _hold_leases(self) -> None:
        ms = int(self.settings.lease_seconds * 1000)
        for stored in self._active:
            key = (stored.tenant, stored.id)
            held = bool(self._lease(keys=[campaign_lease_key(*key, self.pbx)], args=[self.id, ms]))
            runner = self.runners.get(key)
            if runner is None and held:
                estimators = CampaignEstimators(ring_timeout=self.settings.ring_timeout)
                saved = self.redis.get(estimates_key(*key))
                if saved:
                    try:
                        estimators.load(json.loads(saved))
                    except ValueError as exc:  # keep the priors
                        log.warning("campaign %s/%s: saved pacing estimates not usable (%s)", *key, exc)
                queue = ContactQueue(self.redis, stored.tenant, stored.id)
                converted = queue.upgrade_layout()  # a queue written before the compact layout, once
                if converted:
                    log.warning("campaign %s/%s: queue converted to the compact layout (%d contacts)", *key, converted)
                runner = self.runners[key] = CampaignRunner(stored.tenant, stored.id, queue, estimators, stored)
                log.info("runtime %s: now pacing campaign %s/%s%s", self.id, stored.tenant, stored.id,
                         " (saved estimates adopted)" if saved else "")
            if runner is not None:
                if runner.held and not held:
                    log.warning("runtime %s: lost campaign %s/%s to another process", self.id, *key)
                runner.held = held

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:  # the flag as well as cancel(): see AgentFeed.run
            try:
                await asyncio.to_thread(self._heartbeat, self._held_claims(), self._flight_calls())
            except redis.RedisError as exc:
                log.error("runtime heartbeat: Redis unavailable (%s)", exc)
            await asyncio.sleep(self.settings.heartbeat_seconds)

    def _held_claims(self) -> dict[tuple[str, str], list[str]]:
        """Contact ids of every claim this process holds, per campaign (on the loop: a consistent snapshot)."""
        held: dict[tuple[str, str], list[str]] = {}
        for flight in self.flights.values():
            held.setdefault((flight.tenant, flight.campaign), []).append(flight.claim.contact.contact_id)
        for key, r in self.runners.items():
            held.setdefault(key, []).extend(r.claims)
        return held

    def _flight_calls(self) -> dict[bool, dict[str, list[str]]]:
        """Call ids of the calls this process waits on, by AI or not, per server (their trunk channels and AI
        sessions are renewed)."""
        calls: dict[bool, dict[str, list[str]]] = {False: {}, True: {}}
        for call_id, flight in self.flights.items():
            calls[flight.ai].setdefault(flight.server, []).append(call_id)
        return calls

    def _lease_clock(self) -> float:
        """Now on Redis's clock, for claim leases: they are compared by processes on other machines, whose clocks
        may drift (one running 15 s ahead would otherwise take over live claims). The offset is measured at each
        heartbeat."""
        return self._local_time() + self._skew

    def _measure_skew(self) -> None:
        before = self._local_time()
        seconds, micros = self.redis.time()
        after = self._local_time()
        self._skew = seconds + micros / 1e6 - (before + after) / 2
        self.clock_guard.observe(self._skew, after - before)

    def _heartbeat(self, held: dict[tuple[str, str], list[str]] | None = None,
                   calls: dict[bool, dict[str, list[str]]] | None = None) -> None:
        wall = time.time()
        self._measure_skew()
        self.datastate.beat()
        self._heartbeat_writes(self._lease_clock(), held or {})
        self._renewed_at = wall
        self.shared.renew()
        for ai, by_server in (calls or {}).items():
            if by_server:
                self.trunk.renew(by_server, ai=ai)

    def _heartbeat_writes(self, wall: float, held: dict[tuple[str, str], list[str]]) -> None:
        lease_until = wall + self.settings.lease_seconds
        self.redis.set(process_key(self.id), json.dumps({"at": wall, "pbx": self.pbx, "placed": self.placed,
                                                          "in_flight": len(self.flights)}),
                       px=int(self.settings.lease_seconds * 1000))
        for (tenant, campaign), ids in held.items():
            r = self.runners.get((tenant, campaign))
            if r is not None and ids:
                r.queue.renew(self.id, list(dict.fromkeys(ids)), lease_until)

