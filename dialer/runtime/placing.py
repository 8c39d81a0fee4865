"""Placing the calls of a tick: from claimed contacts to Originates, and back when a call is not placed.

For the contacts a tick claimed (engine.py `_dial`): the campaign's own schedule, then the gate's check-and-reserve
at the clock's now (`_schedule_and_gate`); on a Redis Cluster the claims and reservations confirmed on every replica
(`_confirm_reserved`, replicas.py); then one Originate per reserved call (`_originate`). A call not placed (server
refusing, dialing stopped, lease not renewed, not confirmed, Redis failing mid-way) gives its reservation, trunk
slot and claim back (`_give_back_claim`, `_not_placed`), or, when Redis refuses even that, is remembered in
`_not_sent` so the recovery releases it instead of settling it `unknown` (outcomes.py `_resolve`). `_settle` moves a
claimed contact on by a policy Step (retry, requeue, final); the outcome paths use it too.

A mixin, like leases.py and outcomes.py: every step reads and writes the engine's state (its flights, the campaign
runners' claims, the trunk slots, `placed`, `_renewed_at` that the heartbeat sets). What it uses from Engine is
listed below (methods: `dialing_stopped`, `clock`, `_agentless`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import redis

from dialer.ami.client import NotConnected
from dialer.ami.originate import OriginateRequest, campaign_caller_id, dial_string
from dialer.ami.pool import AMIPool
from dialer.gate import Gate, Request, Reservation
from dialer.livestats import queue_attempt, queue_denial
from dialer.runtime.datastate import DataStates
from dialer.runtime.policy import Step, after_denial, schedule_opens_at, windows_from_config
from dialer.runtime.queues import Claim
from dialer.runtime.replicas import ReplicaSync
from dialer.runtime.runner import CampaignRunner, Flight
from dialer.runtime.servers import ServerWatch
from dialer.runtime.settings import RuntimeSettings
from dialer.runtime.slots import TrunkSlots
from dialer.runtime.trunk import TrunkBudget
from rules.model import Contact
from rules.recording import recording_notice

# The engine's logger: these lines were the engine's before the split, and operators and tests filter on its name.
log = logging.getLogger("dialer.runtime.engine")


class PlacingMixin:
    """Engine's path from claimed contacts to Originates (mixed into Engine; see the module docstring)."""

    redis: redis.Redis
    gate: Gate
    pool: AMIPool
    trunk: TrunkBudget
    slots: TrunkSlots
    servers: ServerWatch
    settings: RuntimeSettings
    datastate: DataStates
    replicas: ReplicaSync
    clock: Callable[[], datetime]
    dialing_stopped: Callable[[], str | None]
    _agentless: Callable[[CampaignRunner], bool]
    flights: dict[str, Flight]
    placed: int
    _tasks: set[asyncio.Task]
    _not_sent: dict[str, float]
    _renewed_at: float

    async def _place(self, r: CampaignRunner, claims: list[Claim], ai: bool) -> None:
        """Claimed contacts: the schedule, the gate and the replicas (in a worker thread), then one Originate
        task per reserved call."""
        try:
            results = await asyncio.to_thread(self._reserve, r, claims)
        except Exception:
            # Redis failed mid-way (or a bug): nothing was originated. Stop renewing these claims: their leases
            # expire and the recovery resolves each one (not reserved: requeued; reserved: released, _not_sent).
            for claim in claims:
                self._not_sent_now(claim.call_id)
                current = r.claims.get(claim.contact.contact_id)
                if current is not None and current.call_id == claim.call_id:
                    del r.claims[claim.contact.contact_id]
            await self.slots.free([(claim.server, claim.call_id) for claim in claims], ai)
            raise
        for claim, result in zip(claims, results, strict=True):
            if isinstance(result, Reservation):
                flight = Flight(claim, r.tenant, r.campaign, claim.server, time.time(),
                                jurisdictions=result.decision.jurisdictions, ai=ai)
                self.flights[claim.call_id] = flight
                r.estimators.on_originate(flight.sent_wall)
                r.minute.append(flight.sent_wall)
                task = asyncio.create_task(self._originate(r, flight))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)


    def _reserve(self, r: CampaignRunner, claims: list[Claim]) -> list[Any]:
        """The campaign schedule and the gate (below); then every contact not reserved gives its trunk slot back.
        Reservations the replicas did not confirm are given back unsent (see _confirm_reserved)."""
        results = self._schedule_and_gate(r, claims)
        results = self._confirm_reserved(r, claims, results)
        unused = [(c.server, c.call_id) for c, res in zip(claims, results, strict=True)
                  if not isinstance(res, Reservation)]
        if unused:
            self.slots.release(unused, self._agentless(r))
        return results

    def _confirm_reserved(self, r: CampaignRunner, claims: list[Claim], results: list[Any]) -> list[Any]:
        """No Originate before the claims and reservations are on every replica of the tenant's master (Redis
        Cluster): a failover would otherwise bring the contact back `ready` and call it twice. Not confirmed (a
        replica behind, the node changed, the reservation gone): each is given back unsent and the contact tried
        again shortly (no attempt counted); if the give-back is lost too, the recovery releases it (_not_sent)."""
        reserved = [i for i, res in enumerate(results) if isinstance(res, Reservation)]
        if not reserved:
            return results
        state = self.datastate.for_tenant(r.tenant)
        confirmed = self.replicas.reservations(r.tenant, [claims[i].call_id for i in reserved], run_id=state.run_id)
        if confirmed.ok:
            return results
        self._not_confirmed(r, confirmed.why, len(reserved))
        now = self.clock()
        for i in reserved:
            self._not_sent_now(claims[i].call_id)
            try:  # its trunk slot goes back with the other unused ones (_reserve)
                self.gate.release(r.tenant, claims[i].call_id, now, reason="not originated: reservation not "
                                  "confirmed on the Redis replicas")
                self._settle(r, claims[i], Step("retry", "replicas_not_confirmed", now + timedelta(seconds=5),
                                                count_attempt=False), now)
            except redis.RedisError as exc:  # the lease expires and the recovery releases it (_not_sent)
                log.error("call %s not placed and not given back yet (%s); recovery will resolve it",
                          claims[i].call_id, exc)
                current = r.claims.get(claims[i].contact.contact_id)
                if current is not None and current.call_id == claims[i].call_id:
                    del r.claims[claims[i].contact.contact_id]
            results[i] = "not confirmed"
        return results

    @staticmethod
    def _not_confirmed(r: CampaignRunner, why: str, calls: int = 0) -> None:
        """Said once a minute per campaign (and when the reason changes), not per batch or tick."""
        wall = time.time()
        if why != r.unconfirmed or wall - r.unconfirmed_at >= 60.0:
            r.unconfirmed, r.unconfirmed_at = why, wall
            log.error("campaign %s/%s: %s: %s; its contacts are tried again once the replicas acknowledge (no call "
                      "before its reservation is on every replica)", r.tenant, r.campaign,
                      f"{calls} calls not placed" if calls else "not dialed", why)

    def _not_sent_now(self, call_id: str) -> None:
        wall = time.time()
        if len(self._not_sent) > 10_000:  # bounded: entries older than an hour are long resolved
            self._not_sent = {c: t for c, t in self._not_sent.items() if wall - t < 3600}
        self._not_sent[call_id] = wall

    def _schedule_and_gate(self, r: CampaignRunner, claims: list[Claim]) -> list[Any]:
        """Campaign schedule first (no gate decision for a contact the campaign itself would not call now), then
        the gate for the others at the clock's now. Denied and out-of-schedule contacts are settled here."""
        config = r.stored.config
        windows = windows_from_config(config.get("schedule_windows"))
        campaign = r.stored.gate_campaign()
        now = self.clock()
        results: list[Any] = [None] * len(claims)
        asked: list[int] = []
        for i, claim in enumerate(claims):
            opens = schedule_opens_at(windows, claim.contact.zones, now)
            if opens is not None:
                self._settle(r, claim, Step("retry", "campaign_schedule", opens, count_attempt=False), now)
                results[i] = "schedule"
            else:
                asked.append(i)
        if asked:
            requests = [Request(Contact(claims[i].contact.phone, claims[i].contact.country,
                                        claims[i].contact.postal_code, claims[i].contact.state),
                                campaign, claims[i].call_id, claims[i].contact.contact_id) for i in asked]
            at = self.clock()  # read right before the atomic check-and-reserve
            decided = self.gate.reserve_many(requests, at)
            pipe = self.redis.pipeline(transaction=False)
            for i, result in zip(asked, decided, strict=True):
                results[i] = result
                if isinstance(result, Reservation):
                    queue_attempt(pipe, r.tenant, r.campaign, at)  # the dashboard's attempts per hour
                else:
                    self._settle(r, claims[i], after_denial(result, at), at)
                    for reason in result.reasons:
                        queue_denial(pipe, r.tenant, r.campaign, reason.code)
                    r.denied[",".join(reason.code for reason in result.reasons) or "DENIED"] += 1
            pipe.execute()
        return results

    async def _originate(self, r: CampaignRunner, flight: Flight) -> None:
        claim = flight.claim
        c = r.stored.config
        stopped = self.dialing_stopped()
        if stopped:  # between the claim and here: the data or the clock became untrustworthy
            self.flights.pop(claim.call_id, None)
            await self._give_back_claim(r, claim, "dialing stopped", False)
            return
        if time.time() - self._renewed_at > self.settings.lease_seconds * 0.75:
            # Our leases may have expired (this process stalled, or Redis was unreachable): another process may
            # already have taken this claim over. Never dial on a claim we cannot vouch for.
            self.flights.pop(claim.call_id, None)
            log.error("call %s not placed: this process's leases were not renewed in time", claim.call_id)
            await self._give_back_claim(r, claim, "lease not renewed", False)
            return
        try:
            request = OriginateRequest(
                call_id=claim.call_id, campaign_id=r.campaign, tenant=r.tenant, contact=claim.contact.phone,
                channel=dial_string(self.settings.dial_template, claim.contact.phone),
                caller_id=campaign_caller_id(c), timeout_ms=self.settings.ring_timeout * 1000,
                agent_kind="ai" if c.get("agent_kind") == "ai" else "queue", queue=str(c.get("queue") or ""),
                ai_endpoint=str(c.get("ai_endpoint") or ""), ai_disclosure=c.get("agent_kind") == "ai",
                recording_notice=recording_notice(bool(c.get("recording")), flight.jurisdictions),
                info_message=str(c.get("info_message") or ""),
                amd=bool(c.get("amd", False)))
            result = await self.pool.originate(flight.server, request, timeout=10.0)
            if result.status == "refused":  # Response: Error, no channel: not a call (dialer/runtime/servers.py)
                self.servers.refused(flight.server, result.detail)
                raise NotConnected(f"refused by {flight.server}: {result.detail}")
            self.servers.accepted(flight.server)
        except (NotConnected, ValueError) as exc:
            # Nothing was written (or the request broke the contract): no call exists; give the reservation back.
            self.flights.pop(claim.call_id, None)
            now = self.clock()
            await self._give_back_claim(r, claim, str(exc) or type(exc).__name__, isinstance(exc, ValueError), now)
            return
        except Exception:
            tracker = self.pool.trackers.get(flight.server)
            if tracker is not None and tracker.get(claim.call_id) is not None:
                # Registered, so perhaps sent: never give it back (a second call could follow); its events, the
                # reconciliation or the sweep settle it like a lost response.
                log.exception("call %s: Originate failed unexpectedly; left to the sweep", claim.call_id)
                return
            # Not registered: nothing was sent. Give everything back (the flight, its trunk channel, the gate's
            # reservation, the claim) and try the contact again later, not at once: a bug would repeat.
            log.exception("call %s not placed: unexpected error before the Originate", claim.call_id)
            self.flights.pop(claim.call_id, None)
            await self._give_back_claim(r, claim, "unexpected error", False, retry_in=60.0)
            return
        self.placed += 1
        r.placed += 1
        if result.status == "unconfirmed":
            log.warning("call %s: Originate response lost; waiting for its events or reconciliation", claim.call_id)

    async def _give_back_claim(self, r: CampaignRunner, claim: Claim, why: str, bad: bool,
                               now: datetime | None = None, retry_in: float = 1.0) -> None:
        """A reserved call that was not placed: release it and put the contact back. If Redis fails, stop renewing
        the claim: it expires and the recovery resolves it (never a lost contact)."""
        self._not_sent_now(claim.call_id)
        try:
            await asyncio.to_thread(self._not_placed, r, claim, why, now or self.clock(), bad, retry_in)
        except Exception as exc:
            log.error("call %s not placed and not given back yet (%s); recovery will resolve it", claim.call_id, exc)
            current = r.claims.get(claim.contact.contact_id)
            if current is not None and current.call_id == claim.call_id:
                del r.claims[claim.contact.contact_id]

    def _not_placed(self, r: CampaignRunner, claim: Claim, why: str, now: datetime, bad: bool,
                    retry_in: float = 1.0) -> None:
        self.gate.release(r.tenant, claim.call_id, now, reason=f"not originated: {why}")
        self.trunk.release([(claim.server, claim.call_id)], originated=False, ai=self._agentless(r))
        if bad:
            self._settle(r, claim, Step("final", "originate_invalid", count_attempt=False, detail=why), now)
        else:
            self._settle(r, claim, Step("retry", "server_unavailable", now + timedelta(seconds=retry_in),
                                        count_attempt=False), now)

    def _settle(self, r: CampaignRunner, claim: Claim, step: Step, now: datetime) -> bool:
        ts = now.timestamp()
        if step.action == "retry":
            assert step.at is not None
            done = r.queue.retry(claim, step.at.timestamp(), reason=step.reason, count_attempt=step.count_attempt,
                                 at=ts)
        elif step.action == "requeue":
            done = r.queue.requeue(claim, reason=step.reason, at=ts)
        else:
            done = r.queue.finish(claim, reason=step.reason, at=ts, count_attempt=step.count_attempt,
                                  detail=step.detail)
        if not done:
            log.warning("contact %s of %s/%s: claim no longer held by call %s (taken over?)",
                        claim.contact.contact_id, r.tenant, r.campaign, claim.call_id)
        current = r.claims.get(claim.contact.contact_id)
        if current is not None and current.call_id == claim.call_id:
            del r.claims[claim.contact.contact_id]
        return done
