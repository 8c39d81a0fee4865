"""Pacing a campaign whose agents other campaigns (and other dialer processes) also send calls to.

For each tick of a campaign with human agents (the engine calls `plan`, then `reserve`):

1. the queue's agents: its free agents (the AMI agent board's figure) and its busy agents, together with every
   queue that shares members with it, each agent counted once (agentpool.pool_free);
2. every campaign's calls in flight towards them (the shared pool in Redis) are the "ringing" calls of the pacing
   observation: a free agent that another campaign's call is heading for is not free for this one;
3-4. dialer.pacing.pool.plan_on_pool (pure, the simulator's too): the abandon guard (over its legal cap, no room
   for one more abandon, or no room under its short-window ceiling: only calls with an agent reserved), a
   progressive campaign's slice of the free agents, decide() on that observation (how many lines the pool may
   carry), and dialer.pacing.sharing's split of those lines between the campaigns that want them;
5. the reservation in Redis (atomic) grants places only while the pool's calls in flight stay within those lines
   and the campaign's within its share: two campaigns deciding at the same instant cannot both take the last agent.

A place is held from the reservation until an agent takes the call (AgentConnect) or it ends; `sync` gives back
the places of calls that connected or ended, `renew` is the heartbeat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from dialer.pacing import PacingMode, PacingPolicy, PacingState
from dialer.pacing.decide import room_why
from dialer.pacing.guard import AbandonGuard, GuardWindow, Verdict, guard_window
from dialer.pacing.model import Decision
from dialer.pacing.pool import plan_on_pool
from dialer.pacing.recent import RedisRecentAbandons
from dialer.pacing.sharing import ShareClaim
from dialer.runtime.agentpool import AgentPool, PoolSnapshot, link_queues, pool_free
from dialer.runtime.agents import NOT_INUSE, UNKNOWN, AgentBoard

__all__ = ["QueueFigures", "SharePlan", "SharedPacer", "campaign_key", "queue_figures", "sharing_settings"]

RECENT_EVERY = 1.0  # seconds between reads of a campaign's short-window counts
SHORT_SECONDS = 2.0  # how long a grant that found too few contacts caps the campaign's demand
PUBLISH_EVERY = 1.0  # seconds between demand updates of a campaign that places nothing (the records live 3 s)


def campaign_key(tenant: str, campaign: str) -> str:
    return f"{tenant}/{campaign}"


def sharing_settings(config: Mapping[str, Any]) -> tuple[float, int]:
    """(weight, priority) of a campaign on shared agents: `pacing_weight` (default 1), `pacing_priority` (0)."""
    weight, priority = config.get("pacing_weight", 1.0), config.get("pacing_priority", 0)
    return float(weight) if isinstance(weight, (int, float)) and weight > 0 else 1.0, \
        int(priority) if isinstance(priority, int) else 0


@dataclass(frozen=True)
class QueueFigures:
    """One queue's agents now. staffed = free + on_call + wrapup + paused (every logged-in member)."""

    staffed: int = 0
    free: int = 0
    on_call: int = 0
    wrapup: int = 0
    paused: int = 0

    def gauges(self) -> dict[str, float]:
        return {"queue_staffed": self.staffed, "queue_free": self.free, "queue_on_call": self.on_call,
                "queue_wrapup": self.wrapup, "queue_paused": self.paused}


def queue_figures(board: AgentBoard, queue: str, now: float, servers: set[str] | None = None) -> QueueFigures:
    """Logged-in members split by state: paused; on a call (in a call or device in use); free (the board's figure,
    which holds back agents Asterisk does not offer calls to yet: wrap-up); wrap-up is the rest."""
    view = board.view(queue, now, servers)
    members = [m for _, m in board.members(queue, servers)]
    paused = sum(1 for m in members if m.paused)
    on_call = sum(1 for m in members if m.staffed and (m.in_call or m.status not in (NOT_INUSE, UNKNOWN)))
    free = min(view.free, max(0, view.staffed - on_call))
    wrapup = max(0, view.staffed - on_call - free)
    return QueueFigures(free + on_call + wrapup + paused, free, on_call, wrapup, paused)


@dataclass(frozen=True)
class PoolView:
    """What the board says of a group of queues sharing agents."""

    queues: tuple[str, ...]
    free: int
    busy_elapsed: tuple[float, ...]


@dataclass
class SharePlan:
    """One campaign's decision on its shared agents, and the ceilings its reservation is checked against."""

    key: str
    queues: tuple[str, ...]
    decision: Decision
    verdict: Verdict
    calls: int  # new calls to place (before the reservation)
    max_total: int  # the pool's calls in flight after the reservation, at most
    max_mine: int  # this campaign's, at most (its share)
    claim: ShareClaim  # what it publishes for the others' split (new calls wanted, weight, priority)
    in_flight: int  # this campaign's calls in flight towards the pool (at the snapshot)
    pool_in_flight: int
    free: int  # the pool's free agents


@dataclass
class _Campaign:
    last: SharePlan | None = None
    short_of_contacts: int | None = None  # its last grant found only this many contacts ready
    short_at: float = -1e18  # when (contacts come due for retries: the figure holds for SHORT_SECONDS)
    window: GuardWindow | None = None
    recent_at: float = -1e18
    published: tuple[float, ShareClaim | None] = (-1e18, None)
    figures: QueueFigures = field(default_factory=QueueFigures)


class SharedPacer:
    """The engine's helper for campaigns with human agents (agentless campaigns never use it)."""

    def __init__(self, client: redis.Redis, board: AgentBoard, pbx: str, *, lease_seconds: float) -> None:
        self.redis = client
        self.board = board
        self.pool = AgentPool(client, pbx, lease_seconds=lease_seconds)
        self._campaigns: dict[str, _Campaign] = {}
        self._recent: dict[str, RedisRecentAbandons] = {}

    def _state_of(self, key: str) -> _Campaign:
        found = self._campaigns.get(key)
        if found is None:
            found = self._campaigns[key] = _Campaign()
        return found

    # --- observation (on the event loop: the board changes there) -----------------------------------------

    def observe(self, queue: str, now: float, servers: set[str] | None) -> PoolView:
        """The free and busy agents of `queue` and of every queue sharing members with it, each agent once."""
        known = self.board.queues() | {queue}
        logged_in = {q: [ident for ident, m in self.board.members(q, servers)
                         if m.staffed or m.paused] for q in known}
        group = link_queues(logged_in)[queue]
        free = {q: self.board.view(q, now, servers).free for q in group}
        free_members: dict[str, list[str]] = {}
        busy: dict[str, float] = {}
        for q in group:
            wrapup = self.board.wrapup.of(q)
            for ident, m in self.board.members(q, servers):
                if m.free(now, wrapup):
                    free_members.setdefault(q, []).append(ident)
                elif m.staffed:
                    busy[ident] = now - m.busy_since if m.busy_since is not None else 0.0
        return PoolView((queue, *(q for q in group if q != queue)), pool_free(free, free_members, group),
                        tuple(busy.values()))

    # --- Redis (in a thread) ------------------------------------------------------------------------------

    def snapshot(self, key: str, tenant: str, campaign: str, view: PoolView, guard: AbandonGuard,
                 now: float) -> tuple[PoolSnapshot, GuardWindow | None]:
        """Every campaign's calls in flight towards the pool, and (guard on) this campaign's counts in the guard's
        clock window and the previous one (read at most once a second; `now`: the engine clock's UNIX time)."""
        snap = self.pool.snapshot(view.queues)
        st = self._state_of(key)
        if not guard.on:
            st.window = None
        elif time.monotonic() - st.recent_at >= RECENT_EVERY or st.window is None:
            before, start, end = guard_window(now, guard)
            (previous, _), (answers, abandons) = self.recent_counter(tenant).between(campaign, before, start, end)
            st.window = GuardWindow(start, answers, abandons, previous)
            st.recent_at = time.monotonic()
        return snap, st.window

    def recent_counter(self, tenant: str) -> RedisRecentAbandons:
        counter = self._recent.get(tenant)
        if counter is None:
            counter = self._recent[tenant] = RedisRecentAbandons(self.redis, tenant)
        return counter

    async def decide(self, tenant: str, campaign: str, config: Mapping[str, Any], policy: PacingPolicy,
                     state: PacingState, servers: set[str] | None, *, legal: tuple[int, int], now: float,
                     window_label: str = "legal window", joining: str = "") -> SharePlan:
        """observe (on the loop), snapshot (thread), plan. Raises PolicyError for a bad guard setting."""
        key = campaign_key(tenant, campaign)
        guard = AbandonGuard.from_campaign(config)
        view = self.observe(str(config.get("queue")), time.monotonic(), servers)
        snap, window = await asyncio.to_thread(self.snapshot, key, tenant, campaign, view, guard, now)
        plan = self.plan(key, config, policy, state, view, snap, legal=legal, window_label=window_label,
                         guard=guard, window=window, joining=joining)
        st = self._state_of(key)
        at, claim = st.published
        if plan.calls <= 0 and (claim != plan.claim or time.monotonic() - at >= PUBLISH_EVERY):
            st.published = (time.monotonic(), plan.claim)
            await asyncio.to_thread(self.publish, plan)
        return plan

    # --- the decision (pure but for this campaign's memory) ------------------------------------------------

    def plan(self, key: str, config: Mapping[str, Any], policy: PacingPolicy, state: PacingState, view: PoolView,
             snap: PoolSnapshot, *, legal: tuple[int, int], window_label: str, guard: AbandonGuard,
             window: GuardWindow | None = None, joining: str = "") -> SharePlan:
        """`state`: the campaign's own observation (estimates, trunk); its agents and calls in flight are replaced
        by the pool's. `legal`: (live answers, abandons) over its legal window (a legal campaign's member: its share,
        dialer/pacing/legal.py); `window`: the guard's; `joining`: the legal campaign it joined moments ago."""
        weight, priority = sharing_settings(config)
        pool_state = dataclasses.replace(state, free_agents=view.free, busy_elapsed=view.busy_elapsed,
                                         agents_freeing=(), ringing=snap.ages())
        st = self._state_of(key)
        short = st.short_of_contacts if time.monotonic() - st.short_at < SHORT_SECONDS else None
        pooled = plan_on_pool(policy, pool_state, key=key, mine=snap.ages(key), others=snap.claims(), legal=legal,
                              weight=weight, priority=priority, guard=guard, window=window,
                              window_label=window_label, contacts=short, joining=joining)
        plan = SharePlan(key, view.queues, pooled.decision, pooled.verdict, pooled.calls, pooled.lines, pooled.share,
                         pooled.claim, snap.in_flight(key), snap.in_flight(), view.free)
        st.last = plan
        return plan

    def reserve(self, plan: SharePlan, call_ids: Sequence[str]) -> list[str]:
        """Places for these calls (in a thread): the atomic check against every process's calls in flight."""
        granted, _, _ = self.pool.reserve(plan.queues, plan.key, call_ids, max_total=plan.max_total,
                                          max_mine=plan.max_mine, claim=plan.claim)
        self._state_of(plan.key).published = (time.monotonic(), plan.claim)
        return granted

    def publish(self, plan: SharePlan) -> None:
        """Publish the campaign's demand without placing calls (its share of a full pool still counts)."""
        self.pool.reserve(plan.queues, plan.key, [], max_total=0, max_mine=0, claim=plan.claim)

    def contacts_short(self, key: str, granted: int, used: int) -> None:
        """A grant found fewer contacts ready than places: claim no more than that until a grant is used whole."""
        st = self._state_of(key)
        st.short_of_contacts, st.short_at = (used, time.monotonic()) if used < granted else (None, -1e18)

    # --- places held ---------------------------------------------------------------------------------------

    def sync(self, flights: Mapping[str, Any], trackers: Mapping[str, Any]) -> list[str]:
        """Call ids whose place can be given back: an agent took the call, or it is no longer in flight."""
        done = []
        for call_id in list(self.pool.held):
            flight = flights.get(call_id)
            if flight is None:
                done.append(call_id)
                continue
            tracker = trackers.get(flight.server)
            attempt = tracker.get(call_id) if tracker is not None else None
            if flight.connected or (attempt is not None and attempt.connected_at is not None):
                done.append(call_id)
        return done

    def release(self, call_ids: Sequence[str]) -> None:
        self.pool.release(call_ids)

    def renew(self) -> None:
        self.pool.renew()

    # --- figures -------------------------------------------------------------------------------------------

    def gauges(self, key: str, config: Mapping[str, Any], now: float, servers: set[str] | None) -> dict[str, Any]:
        """The dashboard's figures: the campaign's queue (staffed = free + on a call + wrap-up + paused), its calls
        in flight towards it and its share of the pool's lines, and why it paces as it does."""
        st = self._state_of(key)
        figures = queue_figures(self.board, str(config.get("queue") or ""), now, servers)
        plan = st.last
        values: dict[str, Any] = {**figures.gauges(), "in_flight": 0, "share": 0.0}
        if plan is not None:
            values["in_flight"] = plan.in_flight
            values["share"] = round(plan.max_mine / plan.max_total, 4) if plan.max_total > 0 else 0.0
        return values

    def reason(self, key: str) -> tuple[str, str]:
        """(reason code, text) of the campaign's last decision."""
        plan = self._state_of(key).last
        if plan is None:
            return "", ""
        if plan.verdict.reserved_only and plan.decision.reason == plan.verdict.reason:
            return plan.decision.reason, plan.verdict.text
        if plan.decision.reason == "room":  # power cut by the room under its cap (decide._power_within_room)
            return "room", room_why(plan.decision)
        return plan.decision.reason, ""

    def limited_by(self, key: str) -> str:
        """The hard ceiling that cut the campaign's last decision: "trunk" (channels full), "cps", or ""."""
        plan = self._state_of(key).last
        return (plan.decision.limited_by or "") if plan is not None else ""


def uses_shared_agents(policy: PacingPolicy, config: Mapping[str, Any]) -> bool:
    """Campaigns with human agents in a queue: every mode but agentless."""
    return policy.mode is not PacingMode.AGENTLESS and bool(config.get("queue"))
