"""Live agent state per queue, from AMI: QueueStatus / QueueSummary polls and QueueMemberStatus events.

A member is free when logged in, not paused, not in a call and its device not in use; Asterisk alone knows
whether it is in wrap-up, which QueueSummary's `Available` accounts for. Free agents are therefore the smaller
of the two views: events lower the count at once when an agent takes a call, the poll (every second) lowers it
during wrap-up and raises it when wrap-up ends. Busy agents carry the instant they became busy (their elapsed
handle time feeds the predictive model), and each busy -> free move reports a handle time.

Pure: the engine feeds messages and polls with `now` (monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dialer.ami.protocol import Message

NOT_INUSE, UNKNOWN, INVALID, UNAVAILABLE = "1", "0", "4", "5"


@dataclass
class Member:
    name: str
    paused: bool = False
    in_call: bool = False
    status: str = NOT_INUSE
    busy_since: float | None = None
    interface: str = ""  # who the agent is across queues (StateInterface, else Interface/Location)

    @property
    def staffed(self) -> bool:
        return not self.paused and self.status not in (INVALID, UNAVAILABLE)

    @property
    def free(self) -> bool:
        return self.staffed and not self.in_call and self.status in (NOT_INUSE, UNKNOWN)


@dataclass(frozen=True)
class AgentView:
    free: int
    busy_elapsed: tuple[float, ...]
    staffed: int


@dataclass
class _Queue:
    members: dict[str, Member] = field(default_factory=dict)
    available: int | None = None  # QueueSummary Available at the last poll


class AgentBoard:
    """Agents of every (server, queue). `on_handle_time(queue, seconds)` is called when a busy agent frees up."""

    def __init__(self, on_handle_time: Callable[[str, float], None] | None = None) -> None:
        self.on_handle_time = on_handle_time
        self._queues: dict[tuple[str, str], _Queue] = {}

    def _member(self, server: str, queue: str, name: str) -> Member:
        q = self._queues.setdefault((server, queue), _Queue())
        member = q.members.get(name)
        if member is None:
            member = q.members[name] = Member(name)
        return member

    def _update(self, member: Member, queue: str, message: Message, now: float) -> None:
        was_busy = member.staffed and not member.free
        member.paused = (message.get("Paused") or "0") == "1"
        member.in_call = (message.get("InCall") or "0") == "1"
        member.status = message.get("Status") or NOT_INUSE
        member.interface = (message.get("StateInterface") or message.get("Interface") or message.get("Location")
                            or member.interface)
        busy = member.staffed and not member.free
        if busy and not was_busy:
            member.busy_since = now
        elif was_busy and not busy:
            if member.busy_since is not None and self.on_handle_time is not None:
                self.on_handle_time(queue, now - member.busy_since)
            member.busy_since = None

    def on_event(self, server: str, message: Message, now: float) -> None:
        """QueueMemberStatus, QueueMemberPause, QueueMemberAdded, QueueMemberRemoved (and QueueMember items of a
        QueueStatus listing)."""
        queue = message.get("Queue")
        name = message.get("MemberName") or message.get("Name") or message.get("Interface") or message.get("Location")
        if not queue or not name:
            return
        if message.name == "QueueMemberRemoved":  # logged off: gone at once, not at the next poll
            q = self._queues.get((server, queue))
            if q is not None:
                q.members.pop(name, None)
            return
        self._update(self._member(server, queue, name), queue, message, now)

    def on_poll(self, server: str, queue: str, members: list[Message], available: int | None, now: float) -> None:
        """A QueueStatus listing (its QueueMember items) and the QueueSummary Available figure."""
        q = self._queues.setdefault((server, queue), _Queue())
        seen = set()
        for item in members:
            name = item.get("Name") or item.get("MemberName") or item.get("Location")
            if not name:
                continue
            seen.add(name)
            self._update(self._member(server, queue, name), queue, item, now)
        for gone in set(q.members) - seen:  # logged off
            del q.members[gone]
        q.available = available

    def forget_server(self, server: str) -> None:
        """A disconnected server's agents cannot be reached: count none until the next poll."""
        for key in [k for k in self._queues if k[0] == server]:
            del self._queues[key]

    def view(self, queue: str, now: float, servers: set[str] | None = None) -> AgentView:
        free = 0
        busy: list[float] = []
        staffed = 0
        for (server, name), q in self._queues.items():
            if name != queue or (servers is not None and server not in servers):
                continue
            by_events = sum(1 for m in q.members.values() if m.free)
            free += by_events if q.available is None else min(by_events, q.available)
            for m in q.members.values():
                if m.staffed:
                    staffed += 1
                    if not m.free:
                        busy.append(now - m.busy_since if m.busy_since is not None else 0.0)
        return AgentView(free, tuple(busy), staffed)

    def members(self, queue: str, servers: set[str] | None = None) -> list[tuple[str, Member]]:
        """(identity, member) of every logged-in member of a queue; the identity (server and interface) is the same
        for an agent who is a member of several queues."""
        return [(f"{server}|{m.interface or m.name}", m) for (server, name), q in self._queues.items()
                if name == queue and (servers is None or server in servers) for m in q.members.values()]

    def queues(self) -> set[str]:
        """Names of every queue the board has seen."""
        return {queue for (_, queue) in self._queues}
