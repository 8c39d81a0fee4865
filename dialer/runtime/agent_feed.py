"""The agents the engine paces on, as Asterisk tells them: QueueStatus/QueueSummary polls and queue member events
into the AgentBoard (dialer/runtime/agents.py), whose handle times feed each campaign's estimators; which servers
have each campaign's queue (dialer/runtime/pbx_queues.py); the queue list for the gateway's check of new campaigns
(dialer/runtime/queue_catalog.py); and each agent's state for the console (dialer/runtime/agentstates.py).

Plain composition: the engine hands `AgentFeed` its AMI pool, board, server identities and drain watch, its calls
in flight and campaigns held (read, never written), and asks it which servers are dialable and whether it stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from dialer.ami.calls import call_id_of
from dialer.ami.client import AMIError
from dialer.ami.pool import AMIPool
from dialer.runtime import queue_catalog
from dialer.runtime.agents import AgentBoard
from dialer.runtime.agentstates import AgentStates, queue_board
from dialer.runtime.identity import ServerIdentities
from dialer.runtime.pbx_queues import QueuePresence, listed_name
from dialer.runtime.runner import CampaignRunner, Flight
from dialer.runtime.servers import ServerWatch

# The engine's logger: these lines were the engine's before the split, and operators and tests filter on its name.
log = logging.getLogger("dialer.runtime.engine")

MEMBER_EVENTS = ["QueueMemberStatus", "AgentCalled", "AgentConnect", "AgentComplete", "QueueMemberPause",
                 "QueueMemberAdded", "QueueMemberRemoved"]


def handle_times_to(runners: dict[tuple[str, str], CampaignRunner]) -> Callable[[str, float], None]:
    """The board's handle times (an agent free again after a call of ours), to every held campaign on that queue."""
    def on_handle_time(queue: str, seconds: float) -> None:
        for r in runners.values():
            if r.held and r.stored.config.get("queue") == queue:
                r.estimators.on_agent_free(seconds)

    return on_handle_time


class AgentFeed:
    def __init__(self, client: redis.Redis, pool: AMIPool, board: AgentBoard, identities: ServerIdentities,
                 servers: ServerWatch, flights: dict[str, Flight], runners: dict[tuple[str, str], CampaignRunner], *,
                 dialable: Callable[[], list[str]], stopping: Callable[[], bool], poll_seconds: float) -> None:
        self.redis = client
        self.pool = pool
        self.board = board
        self.identities = identities
        self.servers = servers
        self.flights = flights
        self.runners = runners
        self.dialable = dialable  # servers connected, not draining, identified (Engine._dialable)
        self.stopping = stopping
        self.poll_seconds = poll_seconds
        self._queues_listed_at = -1e18
        self.queue_presence = QueuePresence()  # which servers have each campaign's queue (checked at each agent poll)
        self.agent_states = AgentStates()  # each agent's state and since when, published for the console
        self._agent_calls: dict[str, str] = {}  # agent identity -> "{tenant}/{campaign}" of the call it took
        for name, amiclient in pool.clients.items():
            amiclient.on_event(self._member_feeder(name), names=MEMBER_EVENTS)

    def _member_feeder(self, server: str) -> Callable[[Any], None]:
        def feed(message: Any) -> None:
            self.board.on_event(server, message, time.monotonic())
            if message.name in ("AgentConnect", "AgentComplete") and message.get("Queue"):
                who = self.board.identity(server, message.get("Queue"), message.get("MemberName")
                                          or message.get("Interface") or "")
                flight = self._flight_of(server, message) if message.name == "AgentConnect" else None
                if flight is not None:
                    self._agent_calls[who] = f"{flight.tenant}/{flight.campaign}"
                else:
                    self._agent_calls.pop(who, None)

        return feed

    def _flight_of(self, server: str, message: Any) -> Flight | None:
        """Our call an agent just took, from the call id the channel carries or its Uniqueid/Linkedid."""
        call_id = call_id_of(message)
        if call_id and call_id in self.flights:
            return self.flights[call_id]
        tracker = self.pool.trackers.get(server)
        ids = {message.get("Uniqueid"), message.get("Linkedid")} - {None, ""}
        for attempt in tracker.in_flight() if tracker is not None and ids else ():
            if ids & attempt.ids():
                return self.flights.get(attempt.call_id)
        return None

    def _publish_agents(self, queues: set[str], waiting: dict[str, int]) -> None:
        """Each agent of our queues and the callers waiting, for the console (dialer/runtime/agentstates.py)."""
        now, wall = time.monotonic(), time.time()
        for queue in sorted(queues):  # one MULTI per queue: each queue's board is its own Redis Cluster slot
            rows = self.agent_states.observe(queue, self.board.members(queue), self._agent_calls, now, wall,
                                             self.board.wrapup.of(queue))
            pipe = self.redis.pipeline(transaction=True)
            queue_board(pipe, queue, rows, waiting.get(queue))
            pipe.execute()

    async def run(self) -> None:
        # Stops on the flag as well as on cancel(): Python 3.11's wait_for (inside event_list) can swallow a
        # cancellation that lands as its inner future completes, and the loop would then poll forever.
        while not self.stopping():
            queues = {str(r.stored.config.get("queue")) for r in self.runners.values()
                      if r.held and r.stored.config.get("queue") and r.stored.config.get("agent_kind") != "ai"}
            dialable = self.dialable()
            waiting: dict[str, int] = {}
            listings: dict[str, list[str]] = {}
            list_queues = time.monotonic() - self._queues_listed_at >= queue_catalog.LIST_SECONDS
            for name, client in self.pool.clients.items():
                if name not in dialable:  # down or draining: its agents take no call of ours
                    self.board.forget_server(name)
                    continue
                if list_queues:  # every queue the PBX has, for the gateway's check of new campaigns
                    try:
                        listed = await client.event_list("QueueSummary", {}, timeout=5.0)
                        listings[self.identities.known[name].key] = queue_catalog.queue_names(listed.events)
                    except (AMIError, KeyError) as exc:
                        log.debug("AMI %s: queues not listed (%s)", name, exc)
                for queue in queues:
                    try:
                        status = await client.event_list("QueueStatus", {"Queue": queue}, timeout=5.0)
                        summary = await client.event_list("QueueSummary", {"Queue": queue}, timeout=5.0)
                    except AMIError as exc:
                        if not self.servers.check_refusal(name, exc):  # shutting down: drained, said once
                            log.warning("AMI %s: queue %s state unavailable (%s)", name, queue, exc)
                        continue
                    available = None
                    for item in summary.events:
                        if item.get("Queue") == queue and item.get("Available") is not None:
                            available = int(item.get("Available") or 0)
                        if item.get("Queue") == queue and (item.get("Callers") or "").isdigit():
                            waiting[queue] = waiting.get(queue, 0) + int(item.get("Callers") or 0)
                    self.queue_presence.observe(name, queue, client.connections, listed_name(queue, status.events))
                    members = [m for m in status.events if m.name == "QueueMember" and m.get("Queue") == queue]
                    self.board.on_poll(name, queue, members, available, time.monotonic(), time.time())
            if list_queues:
                self._queues_listed_at = time.monotonic()
                try:
                    await asyncio.to_thread(queue_catalog.publish, self.redis, listings)
                except redis.RedisError as exc:  # only the gateway's check of new campaigns: dialing goes on
                    log.warning("queue list not published (%s)", exc)
            if queues:
                try:
                    await asyncio.to_thread(self._publish_agents, queues, waiting)
                except redis.RedisError as exc:  # only the console's view: dialing goes on
                    log.warning("agent states not published (%s)", exc)
            for flight in self.flights.values():  # connected: an agent (or AI session) took the call
                attempt = self.pool.trackers[flight.server].get(flight.claim.call_id)
                if attempt is not None and attempt.connected_at is not None:
                    flight.connected = True
            await asyncio.sleep(self.poll_seconds)

