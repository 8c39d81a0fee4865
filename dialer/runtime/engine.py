"""The campaign runtime: one asyncio loop per process that dials every running campaign it holds.

Each tick, for each campaign whose lease this process holds (one pacer per campaign at a time; any process may
take a campaign over when its holder stops renewing):
  1. lifecycle: scheduled -> running when starts_at has passed; stopping -> completed once nothing is in flight;
     running -> completed once every contact is final;
  2. recovery: claims whose lease expired (a dead process's) are taken over and resolved (_resolve, outcomes.py);
  3. pacing: agents (AMI queue state) and calls in flight -> dialer.pacing.decide -> n calls, within the trunk
     channel limit and calls per second of the servers;
  4. claim n contacts (Lua; owner + lease); then (placing.py) skip those outside the campaign's own schedule,
     then the gate's check-and-reserve for all of them at the clock's now, IMMEDIATELY before the Originates; on a
     Redis Cluster the claims and reservations are first confirmed on the replicas (replicas.py: a failover cannot
     bring back a contact already called);
  5. Originate the reserved calls through AMIPool; denials go back to the queue for next_allowed_at or leave it.
Outcomes (AMIPool on_outcome): the gate records the outcome (FactStore + audit), abandons are counted (24 h and
30 days), live stats are updated, and the contact is retried per the campaign's rules or finalized.

The clock is injected (`clock() -> aware datetime`): legal windows and retry times follow it; leases and
heartbeats use the wall clock.

The engine's other ideas live beside it: heartbeats, leases and the pacing group (leases.py), the path from
claimed contacts to Originates (placing.py), outcomes and takeover (outcomes.py) as mixins of Engine; the agent feed
(agent_feed.py), trunk slots (slots.py), live figures (figures.py) and window refills (window.py) as objects it
composes; its settings and clocks (settings.py) and the data it keeps per call and campaign (runner.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import redis

from dialer import holds, redisconn
from dialer.ami.calls import Outcome
from dialer.ami.optouts import OptOutRecorder
from dialer.ami.pool import AMIPool
from dialer.campaigns import ACTIVE, CampaignError, CampaignStore, StoredCampaign
from dialer.config import AsteriskServer, Config
from dialer.facts import FactStore
from dialer.gate import Gate
from dialer.pacing import (
    PacingMode,
    PolicyError,
    RedisAbandonCounter,
    cps_window,
    decide,
)
from dialer.pacing.legal import legal_groups
from dialer.record.store import Record
from dialer.redisconn import is_cluster
from dialer.runtime.agent_feed import AgentFeed, handle_times_to
from dialer.runtime.agents import AgentBoard
from dialer.runtime.clockguard import ClockGuard, SkewLimits
from dialer.runtime.datastate import DataStates, guarded_claim
from dialer.runtime.figures import PROGRESS_EVERY as PROGRESS_EVERY
from dialer.runtime.figures import LiveFigures, final_summary
from dialer.runtime.identity import ServerIdentities
from dialer.runtime.leases import (
    _LEASE,
    _UNLEASE,
    LeasesMixin,
    campaign_lease_key,
    estimates_key,
    pbx_group,
    pbx_group_of,
    process_key,
)
from dialer.runtime.loader import load_campaign
from dialer.runtime.outcomes import OutcomesMixin
from dialer.runtime.pbx_outcomes import StoredOutcomeSweep, call_state
from dialer.runtime.pbx_queues import QueueVerdict, campaign_queue, record_dialing
from dialer.runtime.placing import PlacingMixin
from dialer.runtime.policy import (
    pacing_policy,
)
from dialer.runtime.replicas import ReplicaSync
from dialer.runtime.runner import ACTOR, CampaignRunner, Flight
from dialer.runtime.servers import ServerWatch
from dialer.runtime.settings import Clock, RuntimeSettings, trunk_of, wall_clock
from dialer.runtime.settings import offset_clock as offset_clock
from dialer.runtime.shared import SharedPacer, uses_shared_agents
from dialer.runtime.slots import TrunkSlots
from dialer.runtime.trunk import TrunkBudget, TrunkUsage, server_address
from dialer.runtime.window import RecordWindows
from dialer.usage.report import snapshot_contacts
from rules import geo

log = logging.getLogger(__name__)

CONTACTS_EVERY = 3600.0  # seconds between two readings of a tenant's contacts stored (usage metering)


ESTIMATES_EVERY = 30.0  # seconds between saves of a campaign's estimates
ESTIMATES_TTL = 24 * 3600


class Engine(LeasesMixin, OutcomesMixin, PlacingMixin):
    def __init__(self, client: redis.Redis, gate: Gate, servers: Sequence[AsteriskServer], *,
                 settings: RuntimeSettings, clock: Clock = wall_clock, process_id: str | None = None,
                 pool_options: dict[str, Any] | None = None, record: Record | None = None) -> None:
        self.redis = client
        # With settings.window, each campaign's contacts come from the record's contact store a window at a time.
        self.record = record if settings.window > 0 else None
        self.windows = RecordWindows(self.record, settings.window) if self.record is not None else None
        self.gate = gate
        self.settings = settings
        self.machine_clock = clock
        self.id = process_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.pbx = pbx_group(servers)
        # Built with the gate's AuditLog (keyed by security.secret_key): a keypress opt-out heard by the
        # OptOutRecorder is appended to the tenant's audit trail in the same transaction as the DNC write.
        self.facts = FactStore(client, audit=gate.audit)
        self.campaigns = CampaignStore(client)
        # On a Redis Cluster, the writes an irrevocable act follows are confirmed on the replicas first: the
        # reservations before the Originate, an outcome or an opt-out before the PBX's copy is deleted (replicas.py).
        self.replicas = ReplicaSync(client)
        self.optouts = OptOutRecorder.for_fact_store(
            self.facts, confirm=self._confirm_optout if self.replicas.enabled else None)  # one Redis: no thread hop
        # resolve_number: opt-outs read back from AstDB (dialer/ami/astdb.py) for calls this process did not place
        # (or no longer tracks) find their number in the gate's call index.
        self.pool = AMIPool(servers, on_outcome=self._on_outcome, on_optout=self.optouts,
                            resolve_number=gate.number_of, events="system,call,agent,user", **(pool_options or {}))
        self.runners: dict[tuple[str, str], CampaignRunner] = {}
        self.board = AgentBoard(on_handle_time=handle_times_to(self.runners), wrapup=settings.wrapup)
        # Agents are shared with every campaign and process sending calls to the same queues (Redis, atomic).
        self.shared = SharedPacer(client, self.board, self.pbx, lease_seconds=settings.lease_seconds)
        # an AstDB outcome goes only once the stored one is on every Redis replica (replicas.py)
        self.stored_outcomes = StoredOutcomeSweep(self.pool,
                                                  lambda tenant, call: call_state(client, tenant, call, self.replicas))
        self.flights: dict[str, Flight] = {}
        self.figures = LiveFigures(client, self.pool.trackers, self.board, self.shared, self.flights,
                                   self._abandon_counter)  # the dashboard's gauges, the progress lines
        # The trunk ceilings are shared with every process dialing through the same servers (Redis, atomic).
        self.trunk = TrunkBudget(client, {s.name: trunk_of(s, settings) for s in servers},
                                 lease_seconds=settings.lease_seconds)
        self.slots = TrunkSlots(self.trunk, settings.lease_seconds)  # a tick's calls over the servers' trunks
        self.identities = ServerIdentities(self.pool, self.trunk, client)  # trunks keyed by what Asterisk says
        self.placed = 0
        self._tasks: set[asyncio.Task] = set()
        self._settling: set[asyncio.Task] = set()
        self._lease = client.register_script(_LEASE)
        self._unlease = client.register_script(_UNLEASE)
        self._abandons: dict[str, RedisAbandonCounter] = {}
        self._active: list[StoredCampaign] = []
        self._active_at = -1e18
        self._stopping = False
        self._renewed_at = 0.0  # wall time of the last successful heartbeat (leases renewed)
        self._skew = 0.0  # Redis's clock minus ours (seconds), measured at each heartbeat
        self._local_time: Callable[[], float] = time.time  # this machine's clock (tests skew it)
        self.clock_guard = ClockGuard(SkewLimits(settings.clock_skew_warn, settings.clock_skew_stop))
        self.datastate = DataStates(client, who=self.id, per_tenant=is_cluster(client))
        self._unsaved: dict[str, tuple[Outcome, bool]] = {}  # call id -> outcome Redis refused (kept for recovery)
        # call id -> wall time it was given back unsent: a claim of ours the recovery finds still reserved (the give
        # back was lost with a failed-over master) was never dialed, so it is released, not settled `unknown`.
        self._not_sent: dict[str, float] = {}
        self._contacts_at: dict[str, float] = {}  # tenant -> monotonic time of its last contacts-stored reading
        # Servers refusing Originates (shutting down, restarting...) are drained: dialer/runtime/servers.py.
        self.servers = ServerWatch(self.pool.clients, {s.name: server_address(s.host, s.port) for s in servers},
                                   client, self.id, every=settings.heartbeat_seconds, ttl=settings.lease_seconds * 3)
        # The agents as Asterisk tells them (polls, member events), for pacing and the console: agent_feed.py.
        self.agent_feed = AgentFeed(client, self.pool, self.board, self.identities, self.servers, self.flights,
                                    self.runners, dialable=self._dialable, stopping=lambda: self._stopping,
                                    poll_seconds=settings.agent_poll_seconds)

    def clock(self) -> datetime:
        """Now for the law (legal hours, retries): the injected clock plus the offset to Redis's clock measured at
        each heartbeat, so a machine whose clock runs fast does not call people early."""
        return self.machine_clock() + timedelta(seconds=self._skew)

    def dialing_stopped(self) -> str | None:
        """Why no call may be placed now (Redis lost data, or the clocks disagree), None when calls may go."""
        return self.datastate.halted or self.clock_guard.stopped

    def _confirm_optout(self, tenant: str, e164: str) -> None:
        """Raise until the opt-out is on every replica (the recorder retries; the AstDB copy stays meanwhile)."""
        confirmed = self.replicas.optout(tenant, e164)
        if not confirmed.ok:
            raise redis.RedisError(f"opt-out not confirmed on the replicas: {confirmed.why}")

    # --- lifecycle -----------------------------------------------------------------------------------

    async def run(self, stop_event: asyncio.Event, abort_event: asyncio.Event | None = None) -> None:
        """Dial until stop_event is set; then stop claiming, let calls in flight finish (up to drain_seconds, or
        until abort_event is set: a second Ctrl-C), give the campaigns back and close."""
        await self.pool.start()
        await self.identities.refresh()
        await asyncio.to_thread(self._regroup, pbx_group_of(self.identities.group_names()))
        await asyncio.to_thread(self._heartbeat)
        loops = [asyncio.create_task(self._heartbeat_loop(), name="runtime-heartbeat"),
                 asyncio.create_task(self.agent_feed.run(), name="runtime-agents"),
                 asyncio.create_task(self.servers.run(), name="runtime-servers"),
                 asyncio.create_task(self.stored_outcomes.run(), name="runtime-stored-outcomes")]
        log.info("runtime %s started (%d servers)", self.id, len(self.pool.clients))
        for name, trunk in self.trunk.trunks.items():
            if trunk.limited:
                log.info("server %s: trunk ceilings %s, %s (shared by every dialer process on %s)", name,
                         f"{trunk.channels} channels" if trunk.channels else "channels unlimited",
                         f"{trunk.calls_per_second:g} calls/s" if trunk.calls_per_second else "calls/s unlimited",
                         trunk.address)
        try:
            while not stop_event.is_set():
                try:
                    await self.tick()
                except redis.RedisError as exc:
                    log.error("runtime tick: Redis unavailable (%s); retrying", exc)
                    await asyncio.sleep(1.0)
                except Exception:  # a bug must not stop every campaign of the process: log it, go on
                    log.exception("runtime tick failed; retrying")
                    await asyncio.sleep(1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_event.wait(), self.settings.tick_seconds)
        finally:
            self._stopping = self.stored_outcomes.stopping = True
            await self._drain(abort_event)
            for loop in loops:
                loop.cancel()
            for loop in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            await self.pool.close()
            with contextlib.suppress(redis.RedisError):
                await asyncio.to_thread(self.servers.clear)
            await asyncio.to_thread(self._give_back)
            log.info("runtime %s stopped: %d calls placed", self.id, self.placed)

    async def _drain(self, abort_event: asyncio.Event | None = None) -> None:
        deadline = time.monotonic() + self.settings.drain_seconds
        if self.flights or self._tasks:
            log.info("runtime %s stopping: no new calls; waiting up to %.0f s for %d calls in flight", self.id,
                     self.settings.drain_seconds, len(self.flights))
        while (self.flights or self._tasks) and time.monotonic() < deadline:
            if abort_event is not None and abort_event.is_set():
                break
            await asyncio.sleep(0.05)
        if self._settling:
            await asyncio.wait(list(self._settling), timeout=5.0)
        # the one real loss: outcomes this process still holds go with it
        for call_id, (outcome, _) in self._unsaved.items():
            log.critical("call %s: outcome %s NOT stored (Redis unreachable at shutdown); the recovery of another "
                         "process resolves it as unknown", call_id, outcome.disposition)
        if any(not task.done() for task in self._settling):
            log.critical("%d call outcomes NOT stored yet at shutdown (Redis unreachable); the recovery of another "
                         "process resolves them as unknown", sum(1 for task in self._settling if not task.done()))
        if self.flights:
            log.warning("runtime %s: %d calls still in flight at shutdown; their claims expire and another process "
                        "resolves them", self.id, len(self.flights))

    def _give_back(self) -> None:
        self.shared.release(self.shared.sync(self.flights, self.pool.trackers))  # places of calls that ended
        for runner in self.runners.values():
            if runner.held:
                self._unlease(keys=[campaign_lease_key(runner.tenant, runner.campaign, self.pbx)],
                              args=[self.id])
        self.redis.delete(process_key(self.id))

    # --- the tick ------------------------------------------------------------------------------------

    async def tick(self) -> None:
        await self.identities.refresh()
        await asyncio.to_thread(self._regroup, pbx_group_of(self.identities.group_names()))
        mono = time.monotonic()
        done = self.shared.sync(self.flights, self.pool.trackers)  # places of calls an agent took, or that ended
        if done:
            await asyncio.to_thread(self.shared.release, done)
        if mono - self._active_at >= self.settings.campaigns_seconds:
            self._active = await asyncio.to_thread(self._active_campaigns)
            self._active_at = mono
            await asyncio.to_thread(self._hold_leases)
        for stored in self._active:
            runner = self.runners.get((stored.tenant, stored.id))
            if runner is None or not runner.held or runner.completed:
                continue
            runner.stored = stored
            await self._tick_campaign(runner)
        for tenant in {r.tenant for r in self.runners.values() if r.held and not r.completed}:
            if mono - self._contacts_at.get(tenant, -1e18) >= CONTACTS_EVERY:  # the day's contacts-stored figure
                self._contacts_at[tenant] = mono
                await asyncio.to_thread(snapshot_contacts, self.redis, tenant, self.clock())

    def _tenants(self) -> list[str]:
        if self.settings.tenants:
            return list(self.settings.tenants)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in self.redis.smembers("tenants"))

    def _active_campaigns(self) -> list[StoredCampaign]:
        found, legal = [], {}
        for tenant in self._tenants():
            every = self.campaigns.list(tenant)
            found += [c for c in every if c.status in ACTIVE]
            legal[tenant] = legal_groups((c.id, c.status, c.config) for c in every)  # finished members too
        self.figures.legal = legal
        return found

    async def _tick_campaign(self, r: CampaignRunner) -> None:
        now = self.clock()
        ts = now.timestamp()
        mono = time.monotonic()
        status = r.stored.status
        if status == "scheduled":
            starts = r.stored.config.get("starts_at")
            if starts and datetime.fromisoformat(starts.replace("Z", "+00:00")) <= now:
                await asyncio.to_thread(self._move, r, "activate", now)
            return
        if self.windows is None and mono - r.loaded_at >= self.settings.reload_seconds and status in ("running",
                                                                                                        "paused"):
            # record.window = 0: the campaign's whole list from the record, queued at once
            totals = await asyncio.to_thread(load_campaign, self.redis, r.queue, r.stored.config.get("lists") or [],
                                             at=ts)
            r.loaded_at = mono
            if totals["added"] or totals["duplicates"] or totals["no_number"]:
                log.info("campaign %s/%s: queued %d new contacts (%d final as duplicate numbers, %d without a valid "
                         "number)", r.tenant, r.campaign, totals["added"], totals["duplicates"], totals["no_number"])
        if self.windows is not None and mono - r.window_at >= self.settings.window_seconds:
            r.window_at = mono
            if status == "running":
                await self.windows.refill(r.queue, r.stored.config.get("lists") or [], ts)
            else:  # paused or stopping: no refill, but contacts that left still move to the record
                await self.windows.archive(r.queue)
        if mono - r.recovered_at >= self.settings.recover_seconds:
            r.recovered_at = mono
            taken = await asyncio.to_thread(
                r.queue.take_over_expired, owner=self.id, now_wall=self._lease_clock(),
                lease_until=self._lease_clock() + self.settings.lease_seconds)
            if taken:
                await self._resolve(r, taken)
        if status == "running" and not self._stopping:
            # Kill-switches: claim nothing while held. The gate's reserve script checks the same holds for every
            # reservation, so a hold written after this read still stops the next call (dialer/holds.py).
            found = await asyncio.to_thread(holds.holds_for, self.redis, r.tenant, r.campaign)
            text = "; ".join(h.text() for h in found)
            if text != r.hold_text:
                r.hold_text = text
                r.stats_at = -1e18  # show it on the dashboard at once
                if text:
                    log.warning("campaign %s/%s held, no new calls: %s", r.tenant, r.campaign, text)
                else:
                    log.info("campaign %s/%s: hold lifted, dialing again", r.tenant, r.campaign)
            if not text:
                await self._dial(r, now)
        if mono - r.stats_at >= self.settings.stats_seconds:
            r.stats_at = mono
            gauges = self.figures.live_gauges(r)
            counts = await asyncio.to_thread(self.figures.write_stats, r, now, gauges)
            self.figures.log_progress(r, counts, gauges)
            if mono - r.saved_at >= ESTIMATES_EVERY:
                r.saved_at = mono
                data = json.dumps(r.estimators.export())
                await asyncio.to_thread(self.redis.set, estimates_key(r.tenant, r.campaign), data, ex=ESTIMATES_TTL)
            mine = any(f.campaign == r.campaign and f.tenant == r.tenant for f in self.flights.values())
            idle = counts["inflight"] == 0 and not r.claims and not mine
            exhausted = counts["ready"] == 0 and counts["waiting"] == 0
            if idle and exhausted and status == "running" and self.windows is not None:
                # the window is empty: done only if the record has nothing more for the campaign (a full pass
                # again, for members imported behind the cursor); a record that cannot say keeps it running
                exhausted = await self.windows.refill(r.queue, r.stored.config.get("lists") or [], ts, rescan=True) == 0
            if idle and (status == "stopping" or (status == "running" and exhausted)):
                await asyncio.to_thread(self._move, r, "complete", now)

    def _move(self, r: CampaignRunner, action: str, now: datetime) -> None:
        try:
            r.stored = self.campaigns.control(r.tenant, r.campaign, action, by=ACTOR, at=now)
        except (CampaignError, KeyError) as exc:
            log.info("campaign %s/%s: %s not applied (%s)", r.tenant, r.campaign, action, exc)
            return
        if r.stored.status == "completed":
            r.completed = True
            log.info("campaign %s/%s: %s -> completed; %s", r.tenant, r.campaign, action,
                     final_summary(r.queue.tally()))
        else:
            log.info("campaign %s/%s: %s -> %s", r.tenant, r.campaign, action, r.stored.status)

    # --- pacing and dialing ------------------------------------------------------------------------

    def _pacing_state(self, r: CampaignRunner, wall: float) -> Any:
        config = r.stored.config
        policy = pacing_policy(config)  # PolicyError: the caller does not dial
        servers = set(self._dialable())
        mine = [f for f in self.flights.values() if f.tenant == r.tenant and f.campaign == r.campaign]
        ringing = [wall - f.sent_wall for f in mine if not f.connected]
        answers, abandoned = r.abandon_totals  # refreshed with the live stats, every stats_seconds
        # The trunks as every process together uses them (refreshed before this tick's decision); a ceiling is
        # known only when every server has one.
        trunks = [self.trunk.trunks[name] for name in servers]
        usage = [self.slots.usage.get(name, TrunkUsage()) for name in servers]
        limit = cps = None
        if trunks and all(t.channels > 0 for t in trunks):
            limit = sum(t.channels for t in trunks)
        if trunks and all(t.calls_per_second > 0 for t in trunks):
            cps = float(sum(cps_window(t.calls_per_second)[0] for t in trunks))  # calls per window
        if policy.mode is PacingMode.AGENTLESS:
            # Sessions free on the servers, all campaigns and processes together (Redis); decide() takes this
            # campaign's ringing calls off again, so they are added back here.
            free, busy = 0, ()
            ai = sum(max(0, t.ai_sessions - u.ai_sessions_in_use) for t, u in zip(trunks, usage, strict=True))
            ai += len(ringing)
        else:
            view = self.board.view(str(config.get("queue") or ""), time.monotonic(), servers)
            free, busy, ai = view.free, view.busy_elapsed, 0
        state = r.estimators.state(
            wall, free_agents=free, busy_elapsed=busy, ringing=ringing, abandons=abandoned, live_answers=answers,
            trunk_channel_limit=limit, trunk_channels_in_use=sum(u.channels_in_use for u in usage),
            calls_per_second=cps, ai_sessions_available=ai)
        originated = sum(u.originates_in_window for u in usage)
        return policy, dataclasses.replace(state, originates_last_second=originated)

    @staticmethod
    def _agentless(r: CampaignRunner) -> bool:
        """Whether the campaign's calls hold AI sessions (agentless pacing)."""
        try:
            return pacing_policy(r.stored.config).mode is PacingMode.AGENTLESS
        except PolicyError:
            return False

    def _dialable(self) -> list[str]:
        """Servers connected and not draining (dialer/runtime/servers.py), whose identity is known and not a second
        name of another one (dialer/runtime/identity.py)."""
        return [name for name in self.servers.usable(self.pool.connected()) if self.identities.usable(name)]

    async def _dial(self, r: CampaignRunner, now: datetime) -> None:
        if self.dialing_stopped():  # said once, in one CRITICAL line, where it was detected
            return
        connected = self._dialable()
        queue = campaign_queue(r.stored.config)
        if queue:  # only servers that said, on their current connection, that the queue exists
            verdict = self.agent_feed.queue_presence.verdict(queue, {name: self.pool.clients[name].connections
                                                          for name in connected})
            await self._queue_verdict(r, verdict, now)
            if verdict.code:
                return
            connected = [name for name in connected if name in verdict.servers]
        ai = self._agentless(r)
        if any(self.trunk.limited(name, ai) for name in connected):
            self.slots.usage.update(await asyncio.to_thread(self.trunk.usage, connected, ai=ai))
        wall = time.time()
        try:
            policy, state = self._pacing_state(r, wall)  # in memory only: runs on the loop
        except PolicyError as exc:
            if r.last_reason != "policy-error":
                r.last_reason = "policy-error"
                log.error("campaign %s/%s is not dialed: %s", r.tenant, r.campaign, exc)
            return
        plan = None
        if uses_shared_agents(policy, r.stored.config):  # agents shared with other campaigns and processes
            try:
                plan = await self.shared.decide(r.tenant, r.campaign, r.stored.config, policy, state,
                                                set(connected), legal=r.abandon_totals, now=now.timestamp(),
                                                window_label=r.legal_label, joining=r.legal_joining)
            except PolicyError as exc:
                if r.last_reason != "policy-error":
                    r.last_reason = "policy-error"
                    log.error("campaign %s/%s is not dialed: %s", r.tenant, r.campaign, exc)
                return
            decision = plan.decision
        else:
            decision = decide(policy, state)
        if decision.reason != r.last_reason:
            r.last_reason = decision.reason
            why = self.shared.reason(f"{r.tenant}/{r.campaign}")[1] if plan is not None else ""
            log.info("campaign %s/%s pacing: %s%s%s", r.tenant, r.campaign, decision.reason,
                     f" (limited by {decision.limited_by})" if decision.limited_by else "", f": {why}" if why else "")
        n = min(decision.calls if plan is None else plan.calls, self.settings.max_batch)
        if n <= 0 or not connected:
            return
        behind = await asyncio.to_thread(self.replicas.behind, r.tenant) if self.replicas.enabled else ""
        if behind:  # the last batch of this master's tenants was not confirmed: no claim until a probe is
            self._not_confirmed(r, behind)
            return
        slots = await asyncio.to_thread(self.slots.reserve, self.slots.round_robin(connected, n), ai)
        if plan is not None and slots:
            try:
                granted = set(await asyncio.to_thread(self.shared.reserve, plan, [c for _, c in slots]))
            except Exception:
                await self.slots.free(slots, ai)
                raise
            if len(granted) < len(slots):  # another campaign took those agents since the snapshot
                await self.slots.free([s for s in slots if s[1] not in granted], ai)
                slots = [s for s in slots if s[1] in granted]
        if not slots:
            return
        try:
            claims = await asyncio.to_thread(
                guarded_claim, self.datastate.for_tenant(r.queue.tenant), r.queue, len(slots), owner=self.id,
                now=now.timestamp(),
                lease_until=self._lease_clock() + self.settings.lease_seconds, call_ids=[c for _, c in slots],
                servers=[s for s, _ in slots])
        except Exception:
            await self.slots.free(slots, ai)
            raise
        used = {claim.call_id for claim in claims}
        if plan is not None:
            self.shared.contacts_short(plan.key, len(slots), len(used))
        if len(used) < len(slots):  # fewer contacts ready than the trunk took: give the rest back
            await self.slots.free([slot for slot in slots if slot[1] not in used], ai)
        if not claims:
            return
        for claim in claims:
            r.claims[claim.contact.contact_id] = claim
            if claim.contact.phone[:5] not in r.prefixes:  # the country of each number prefix, once
                r.prefixes.add(claim.contact.phone[:5])
                with contextlib.suppress(Exception):
                    r.countries.add(geo.jurisdiction_for_number(claim.contact.phone)[0])
        await self._place(r, claims, ai)

    async def _queue_verdict(self, r: CampaignRunner, verdict: QueueVerdict, now: datetime) -> None:
        """Say each change once: a refusal (ERROR line, audit entry, the campaign's status), its end (INFO, audit
        entry), servers lacking the queue while others have it (WARNING). A reconnect's unchecked spell changes
        nothing said."""
        before, r.queue_verdict = r.queue_verdict, verdict
        if verdict.refused and verdict.code != r.queue_refusal:
            r.queue_refusal = verdict.code
            log.error("campaign %s/%s is not dialed: %s: %s", r.tenant, r.campaign, verdict.code, verdict.text)
            await asyncio.to_thread(record_dialing, self.redis, self.gate.audit, r.tenant, r.campaign, verdict, now)
        elif r.queue_refusal and verdict.servers:
            r.queue_refusal = ""
            log.info("campaign %s/%s: queue '%s' found on %s; dialing resumes", r.tenant, r.campaign, verdict.queue,
                     ", ".join(verdict.servers))
            await asyncio.to_thread(record_dialing, self.redis, self.gate.audit, r.tenant, r.campaign, verdict, now)
        if verdict.servers and verdict.lacking and (before is None or before.lacking != verdict.lacking):
            log.warning("campaign %s/%s: queue '%s' missing (or named otherwise) on %s: its calls go through %s only",
                        r.tenant, r.campaign, verdict.queue, ", ".join(verdict.lacking), ", ".join(verdict.servers))

def build_gate(client: redis.Redis, config: Config) -> Gate:
    """The production gate: packs from the settings, registries from Redis, audit keyed by the secret key."""
    from dialer.registry.store import RegistryStore
    from rules import load_packs

    packs = load_packs(config["rules.packs_dir"] or None)
    return Gate(client, packs, RegistryStore(client), secret_key=config["security.secret_key"], actor=ACTOR)


async def run_engine(config: Config, *, stop_event: asyncio.Event, clock: Clock = wall_clock,
                     servers: Sequence[AsteriskServer] | None = None, settings: RuntimeSettings | None = None,
                     process_id: str | None = None, ready: asyncio.Event | None = None,
                     abort_event: asyncio.Event | None = None) -> Engine:
    """Run the engine until stop_event is set (clean shutdown; abort_event cuts the wait for calls in flight
    short). `servers` defaults to the config's [[asterisk]] tables; `settings` to the config's runtime.* values.
    Returns the stopped engine (figures: .placed)."""
    client = redisconn.connect(config.redis_url)
    try:
        gate = build_gate(client, config)
        settings = settings or RuntimeSettings.from_config(config)
        record = Record.from_config(config) if settings.window > 0 else None
        try:
            engine = Engine(client, gate, servers if servers is not None else config.asterisk, settings=settings,
                            clock=clock, process_id=process_id, record=record)
            if ready is not None:
                ready.set()
            await engine.run(stop_event, abort_event)
            return engine
        finally:
            if record is not None:
                record.close()
    finally:
        client.close()
