"""What becomes of each call: its outcome recorded (gate: FactStore, audit, usage; abandons counted; the contact
retried or finalized) exactly once, through Redis outages; and the calls of a process that died, taken over and
resolved (`_resolve`: never reserved -> requeued; outcome recorded -> settled from it; reserved without outcome ->
asked of its server, tracked here if still up, unknown if gone).

A mixin, not a composed object: the AMI pool calls `_on_outcome` for every call, the takeover adds calls to the
engine's `flights` and settles contacts through the engine's `_settle`, outcomes Redis refused wait in `_unsaved`
for the engine's own recovery, and `_renewed_at` (leases.py) decides when a claim is the recovery's. These are the
engine's state on every path; what it uses from Engine is listed below (methods: `_settle` and `_not_placed`,
placing.py; `_agentless`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis

from dialer.ami.calls import Outcome
from dialer.ami.client import AMIError
from dialer.ami.pool import AMIPool
from dialer.facts import attempt_from_json, person_key
from dialer.gate import Gate, call_index_key
from dialer.livestats import queue_disposition
from dialer.pacing import RedisAbandonCounter
from dialer.runtime.call_record import call_figures
from dialer.runtime.pbx_outcomes import forget_stored, settle_with_pbx
from dialer.runtime.policy import GATE_OUTCOME, RetryPolicy, Step
from dialer.runtime.queues import Claim, TakenOver
from dialer.runtime.replicas import ReplicaSync
from dialer.runtime.runner import ACTOR, CampaignRunner, Flight
from dialer.runtime.settings import RuntimeSettings
from dialer.runtime.shared import SharedPacer
from dialer.runtime.trunk import TrunkBudget
from dialer.usage import meter
from dialer.usage.budgets import check_budgets
from dialer.usage.plan import cached_plan

# The engine's logger: these lines were the engine's before the split, and operators and tests filter on its name.
log = logging.getLogger("dialer.runtime.engine")

GATE_TO_DISPOSITION = {"failed": "failed", "refused": "busy", "reserved": "unknown"}


class OutcomesMixin:
    """Engine's call outcomes and takeover resolution (mixed into Engine; see the module docstring)."""

    redis: redis.Redis
    gate: Gate
    pool: AMIPool
    trunk: TrunkBudget
    shared: SharedPacer
    settings: RuntimeSettings
    clock: Callable[[], datetime]
    flights: dict[str, Flight]
    runners: dict[tuple[str, str], CampaignRunner]
    _settling: set[asyncio.Task]
    _unsaved: dict[str, tuple[Outcome, bool]]
    _not_sent: dict[str, float]
    replicas: ReplicaSync
    _abandons: dict[str, RedisAbandonCounter]
    _renewed_at: float

    def _on_outcome(self, server: str, outcome: Outcome) -> Any:
        flight = self.flights.pop(outcome.call_id, None)
        if flight is None:
            log.warning("outcome of call %s (%s) for no call of this process", outcome.call_id, outcome.disposition)
            return None
        r = self.runners.get((flight.tenant, flight.campaign))
        if r is None:
            return None
        task = asyncio.ensure_future(self._settle_outcome(server, r, flight, outcome))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    async def _settle_outcome(self, server: str, r: CampaignRunner, flight: Flight, outcome: Outcome) -> None:
        """The stored outcome where the events could not know it (dialer/runtime/pbx_outcomes.py), then record;
        the AstDB entry is deleted once the outcome is stored."""
        outcome = await settle_with_pbx(self.pool, server, outcome, taken_over=flight.taken_over)
        disposition = str(outcome.disposition)
        live = outcome.answered_at is not None and disposition in ("answered", "abandoned", "opted_out")
        wall = time.time()
        if live:
            r.estimators.on_live_answer(wall, max(0.0, (outcome.answered_at or wall) - flight.sent_wall))
        else:
            r.estimators.on_no_live_answer(wall, max(0.0, outcome.ended_at - flight.sent_wall))
        if await asyncio.to_thread(self._record_outcome, r, flight, outcome, live):
            await forget_stored(self.pool, server, outcome)

    def _record_outcome(self, r: CampaignRunner, flight: Flight, outcome: Outcome, live: bool) -> bool:
        """True once stored and on every replica of the tenant's master (Redis Cluster: only then may the PBX's copy
        go; replicas.py). Retries through a Redis outage until the outcome is stored, or until the claim's lease
        lapsed (the takeover path owns it then: this process's recovery stores the outcome when it takes the claim
        back, see _resolve). Never given up while Redis may come back: the outcome is a fact. An outcome the
        serving master no longer has (a failover lost it) is stored again.

        Stored, and the replicas did not acknowledge it in time (one behind, frozen, its link cut): False after that
        one check, the PBX's copy kept; StoredOutcomeSweep deletes it once the replicas have the outcome. Waiting here
        instead would hold a worker thread for as long as the replica stays behind, with the heartbeat's and every
        other tenant's Redis calls queued behind a handful of such outcomes (the default executor's few threads)."""
        claim = flight.claim
        disposition = str(outcome.disposition)
        delay, failures, stored = 0.2, 0, False
        while True:
            try:
                if not stored:
                    self._store_outcome(r, flight, outcome, live)
                    stored = True
                kept = self.replicas.outcome(r.tenant, claim.contact.phone, claim.call_id)
                if kept.ok:
                    if failures:
                        log.warning("call %s: outcome %s stored after %d failed attempts", claim.call_id,
                                    disposition, failures)
                    return True
                if kept.behind:  # on the serving master, not yet on all its replicas
                    log.warning("call %s: outcome %s stored, not on every Redis replica yet (%s); its PBX copy is "
                                "kept until it is (StoredOutcomeSweep)", claim.call_id, disposition, kept.why)
                    return False
                failures += 1
                stored = not kept.missing  # gone from the serving master: store it again
                if failures == 1 or kept.missing:
                    log.error("call %s: outcome %s not confirmed on the Redis replicas yet (%s); %s", claim.call_id,
                              disposition, kept.why, "storing it again" if kept.missing else "checking again")
            except redis.RedisError as exc:
                failures += 1
                if failures == 1:
                    log.error("call %s: outcome not stored yet (%s); retrying until Redis is back", claim.call_id,
                              exc)
            if time.time() - self._renewed_at > self.settings.lease_seconds:
                # Our leases lapsed: the claim is the recovery's now (this process's, which stores the outcome
                # kept here, or another's, which asks the PBX). Keep the outcome for the takeover.
                self._unsaved[claim.call_id] = (outcome, live)
                current = r.claims.get(claim.contact.contact_id)
                if current is not None and current.call_id == claim.call_id:
                    del r.claims[claim.contact.contact_id]
                log.error("call %s: outcome %s kept in memory for the recovery (Redis unreachable longer than the "
                          "claim lease)", claim.call_id, disposition)
                return False
            time.sleep(delay)
            delay = min(1.0, delay * 2)  # never sleep long past Redis's return

    def _store_outcome(self, r: CampaignRunner, flight: Flight, outcome: Outcome, live: bool) -> None:
        claim = flight.claim
        disposition = str(outcome.disposition)
        # its channel (and AI session) is free
        self.trunk.release([(flight.server, claim.call_id)], originated=True, ai=flight.ai)
        now = self.clock()
        # what the call counts for (billing), metered exactly once in the outcome's own transaction
        usage = meter.CallUsage(outcome.answered_at, outcome.ended_at, ai=flight.ai,
                                recorded=bool(r.stored.config.get("recording")))
        metered = meter.measures(usage, cached_plan(self.redis, r.tenant).rounding)
        queue = r.stored.config.get("queue")
        call = call_figures(outcome, campaign=r.campaign, contact_id=claim.contact.contact_id,
                            sent_wall=flight.sent_wall, ai=flight.ai, server=flight.server,
                            queue=str(queue) if queue else None,
                            wrapup_seconds=self.settings.wrapup.of(str(queue)) if queue else 0.0)
        self.gate.record_outcome(r.tenant, claim.call_id, GATE_OUTCOME.get(disposition, "unknown"), now,
                                 e164=claim.contact.phone, actor=ACTOR, metered=metered, call=call)
        if live:
            self._abandon_counter(r.tenant).record(r.campaign, claim.call_id, now.timestamp(),
                                                   bool(outcome.abandoned))
            self.shared.recent_counter(r.tenant).record(r.campaign, claim.call_id, now.timestamp(),
                                                        bool(outcome.abandoned))  # short-window guard
        policy = RetryPolicy.from_config(r.stored.config, unknown_cooloff=self.settings.unknown_cooloff)
        step = policy.after_call(disposition, claim.attempts + 1, now)
        if step.action == "final":
            step = dataclasses.replace(step, detail=step.detail or disposition)
        self._settle_final_disposition(r, claim, step, now, disposition)
        pipe = self.redis.pipeline(transaction=False)
        queue_disposition(pipe, r.tenant, r.campaign, disposition, now)
        pipe.execute()
        try:  # budget alerts and the hard stop: never in the way of storing the outcome
            check_budgets(self.redis, r.tenant, now)
        except Exception as exc:
            log.warning("tenant %s: budgets not checked after call %s (%s); checked after the next call", r.tenant,
                        claim.call_id, exc)

    def _settle_final_disposition(self, r: CampaignRunner, claim: Claim, step: Step, now: datetime,
                                  disposition: str) -> None:
        if step.action == "final":
            done = r.queue.finish(claim, reason=step.reason, at=now.timestamp(), count_attempt=True,
                                  detail=step.detail, disposition=disposition)
            current = r.claims.get(claim.contact.contact_id)
            if current is not None and current.call_id == claim.call_id:
                del r.claims[claim.contact.contact_id]
            if not done:
                log.warning("contact %s: claim of call %s no longer held", claim.contact.contact_id, claim.call_id)
        else:
            self._settle(r, claim, step, now)

    def _abandon_counter(self, tenant: str) -> RedisAbandonCounter:
        counter = self._abandons.get(tenant)
        if counter is None:
            counter = self._abandons[tenant] = RedisAbandonCounter(self.redis, tenant)
        return counter

    async def _resolve(self, r: CampaignRunner, taken: list[TakenOver]) -> None:
        """Claims of a process that died. Never reserved at the gate: back to ready. Outcome already recorded:
        settle from it. Reserved without outcome: the call may be up, ask its server (CoreShowChannels): still up
        -> keep tracking it here; gone -> outcome unknown (counted, cooled off)."""
        ask: dict[str, list[Claim]] = {}
        popped: dict[str, float] = {}  # calls of _not_sent this pass resolves
        try:
            for t in taken:
                claim = t.claim
                r.claims[claim.contact.contact_id] = claim
                if claim.call_id in self.flights:  # our own claim, whose lease lapsed (a stall): still ours, tracked
                    continue
                sent_back = self._not_sent.pop(claim.call_id, None)
                if sent_back is not None:
                    popped[claim.call_id] = sent_back
                    # Given back unsent by this process, and the give-back lost (a failover): never dialed, so released
                    # and tried again like any reservation not originated (not `unknown`, which would cool off a day).
                    log.warning("campaign %s/%s: call %s was never placed (its give-back was lost): released",
                                r.tenant, r.campaign, claim.call_id)
                    await asyncio.to_thread(self._not_placed, r, claim, "recovered: never placed", self.clock(), False)
                    del popped[claim.call_id]
                    continue
                unsaved = self._unsaved.pop(claim.call_id, None)
                if unsaved is not None:  # our own call whose outcome Redis refused earlier: store it now
                    flight = Flight(claim, r.tenant, r.campaign, claim.server, time.time(), ai=self._agentless(r))
                    await asyncio.to_thread(self._record_outcome, r, flight, unsaved[0], unsaved[1])
                    continue
                log.warning("campaign %s/%s: taking over call %s of process %s", r.tenant, r.campaign, claim.call_id,
                            t.previous_owner)
                outcome = await asyncio.to_thread(self._recorded_outcome, r.tenant, claim)
                now = self.clock()
                if outcome == "not-reserved":
                    await asyncio.to_thread(self._settle, r, claim, Step("requeue", "recovered_not_reserved"), now)
                elif outcome != "reserved":
                    disposition = GATE_TO_DISPOSITION.get(outcome, outcome)
                    policy = RetryPolicy.from_config(r.stored.config, unknown_cooloff=self.settings.unknown_cooloff)
                    step = policy.after_call(disposition, claim.attempts + 1, now)
                    await asyncio.to_thread(self._settle_final_disposition, r, claim, step, now, disposition)
                else:
                    ask.setdefault(claim.server, []).append(claim)
        except Exception:
            # Redis failed (or a bug) mid-way: the claims of this pass not resolved yet must not be renewed (the
            # heartbeat renews r.claims): their leases lapse and a later pass resolves them again. Renewed, they
            # would stay claimed, never called nor settled, for as long as this process lives.
            self._not_sent.update(popped)
            for t in taken:
                current = r.claims.get(t.claim.contact.contact_id)
                if current is not None and current.call_id == t.claim.call_id and t.claim.call_id not in self.flights:
                    del r.claims[t.claim.contact.contact_id]
            raise
        connected = self.pool.connected()
        for server in [s for s in ask if s not in self.pool.clients and connected]:
            # Placed through a server this process does not know by that name (configured differently): look for
            # the channel on one we know; if the call is not there it is treated as gone (unknown, cooled off).
            ask.setdefault(connected[0], []).extend(ask.pop(server))
        for server, claims in ask.items():
            client = self.pool.clients.get(server)
            tracker = self.pool.trackers.get(server)
            if client is None or tracker is None or not client.connected:
                log.warning("calls of server %s cannot be resolved now (not connected); retrying", server or "?")
                for claim in claims:  # not renewed: the lease expires again and a later pass retries
                    r.claims.pop(claim.contact.contact_id, None)
                continue
            # Counted on this server's trunk (and AI sessions) again before they are tracked: the dead process's
            # entries expired. Those found gone below are released by their outcome, which can only come after.
            agentless = self._agentless(r)
            try:
                await asyncio.to_thread(self.trunk.renew, {server: [c.call_id for c in claims]}, adopt=True,
                                        ai=agentless)
            except redis.RedisError as exc:
                log.warning("server %s: taken-over calls not counted on its trunk (%s)", server, exc)
            wall = time.time()
            for claim in claims:
                tracker.register(claim.call_id, r.campaign, r.tenant, claim.contact.phone,
                                 wall - self.settings.lease_seconds, ring_timeout=self.settings.ring_timeout)
                self.flights[claim.call_id] = Flight(claim, r.tenant, r.campaign, server,
                                                     wall - self.settings.lease_seconds, ai=agentless, taken_over=True)
            try:
                listing = await client.event_list("CoreShowChannels", timeout=10.0)
            except AMIError as exc:
                log.warning("AMI %s: reconciliation failed (%s); the sweep settles these calls", server, exc)
                continue
            outcomes = tracker.reconcile(listing.events, time.time(), min_age=2.0)
            for outcome in outcomes:
                self._on_outcome(server, outcome)
            alive = [c.call_id for c in claims if tracker.get(c.call_id) is not None]
            log.warning("server %s: of %d taken-over calls, %d still up (tracked here), %d gone (outcome from AstDB, "
                        "else unknown)",
                        server, len(claims), len(alive), len(claims) - len(alive))

    def _recorded_outcome(self, tenant: str, claim: Claim) -> str:
        """not-reserved, reserved (no outcome yet) or the outcome the gate recorded for this call."""
        raw = self.redis.hget(person_key(tenant, claim.contact.phone, "att"), claim.call_id)
        if raw is None:
            # The attempt is gone: never reserved (or released). The call index says whether it ever was.
            return "reserved" if self.redis.exists(call_index_key(tenant, claim.call_id)) else "not-reserved"
        return attempt_from_json(raw).outcome

