"""Live agent state per queue, from AMI: queue events, with QueueStatus / QueueSummary polls as a safety net.

A member is free only when logged in, not paused, not in a call, its device not in use, AND past the queue's wrap-up
since its last call ended. Asterisk does not say the last part: during `wrapuptime` app_queue offers the member no
caller, yet reports it `Available: 1` in QueueSummary (which counts free, unpaused devices and never looks at wrap-up)
and `Status: 1`, `InCall: 0` in QueueStatus (app_queue.c, and the lab PBX: issue 14). A dialer believing that places
a call nobody can take: an abandon. So the board keeps, per member, when its last call ended, and the wrap-up comes from
our own queue settings (WrapupTable: `runtime.wrapup_seconds`, `runtime.queue_wrapup`, the values of
asterisk/queues.conf.sample), or from the member's own `Wrapuptime` where Asterisk reports one (a member-level value;
0 means none set: AMI never reports a queue's wrapuptime).

Events, at once: `AgentCalled` / `AgentConnect` take a member (ringing or talking), `AgentComplete` ends its call
(with or without channel fields: only Queue, MemberName and Interface are used), `QueueMemberStatus` carries InCall,
Status and Paused. The poll (every second) corrects anything an event missed; a member seen InCall 1 then 0 by the
poll ended a call then; after a restart of the dialer, `LastCall` (Asterisk's epoch seconds at the end of the member's
last call) places the end on our clock. Busy members carry the instant they became busy (their elapsed handle time,
wrap-up included, feeds the predictive model), and each busy -> free move reports a handle time.

Pure: the engine feeds messages and polls with `now` (monotonic seconds) and, for LastCall, `wall` (epoch seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dialer.ami.protocol import Message

NOT_INUSE, INUSE, UNKNOWN, INVALID, UNAVAILABLE = "1", "2", "0", "4", "5"
DEFAULT_WRAPUP = 5.0  # asterisk/queues.conf.sample: wrapuptime = 5 (tests/test_queues_sample.py keeps them equal)


@dataclass(frozen=True)
class WrapupTable:
    """Seconds of wrap-up after each call, per queue (the queues.conf `wrapuptime` we ship or the operator set)."""

    default: float = DEFAULT_WRAPUP
    queues: Mapping[str, float] = field(default_factory=dict)

    def of(self, queue: str) -> float:
        return float(self.queues.get(queue, self.default))

    @classmethod
    def parse(cls, default: float, text: str) -> WrapupTable:
        """`queue=seconds,queue=seconds` (runtime.queue_wrapup). Raises ValueError naming the bad part."""
        queues: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, eq, value = part.partition("=")
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not eq or not name.strip() or seconds < 0:
                raise ValueError(f"{part!r}: expected queue=seconds (seconds >= 0)")
            queues[name.strip()] = seconds
        if default < 0:
            raise ValueError(f"wrap-up {default!r}: expected seconds >= 0")
        return cls(default, queues)


@dataclass
class Member:
    name: str
    paused: bool = False
    in_call: bool = False
    status: str = NOT_INUSE
    busy_since: float | None = None
    ended_at: float | None = None  # monotonic instant its last call ended (wrap-up runs from there)
    own_wrapup: float = 0.0  # the member's Wrapuptime as Asterisk reports it (0: the queue's applies)
    interface: str = ""  # who the agent is across queues (StateInterface, else Interface/Location)

    @property
    def staffed(self) -> bool:
        return not self.paused and self.status not in (INVALID, UNAVAILABLE)

    def wrapping_up(self, now: float, wrapup: float) -> bool:
        seconds = self.own_wrapup or wrapup
        return self.ended_at is not None and now - self.ended_at < seconds

    def free(self, now: float, wrapup: float) -> bool:
        return (self.staffed and not self.in_call and self.status in (NOT_INUSE, UNKNOWN)
                and not self.wrapping_up(now, wrapup))


@dataclass(frozen=True)
class AgentView:
    free: int
    busy_elapsed: tuple[float, ...]
    staffed: int


@dataclass
class _Queue:
    members: dict[str, Member] = field(default_factory=dict)
    available: int | None = None  # QueueSummary Available at the last poll (an upper bound: wrap-up not counted)


def _name(message: Message) -> str | None:
    return message.get("MemberName") or message.get("Name") or message.get("Interface") or message.get("Location")


class AgentBoard:
    """Agents of every (server, queue). `on_handle_time(queue, seconds)` is called when a busy agent frees up."""

    def __init__(self, on_handle_time: Callable[[str, float], None] | None = None,
                 wrapup: WrapupTable | None = None) -> None:
        self.on_handle_time = on_handle_time
        self.wrapup = wrapup or WrapupTable()
        self._queues: dict[tuple[str, str], _Queue] = {}

    def _member(self, server: str, queue: str, name: str) -> Member:
        q = self._queues.setdefault((server, queue), _Queue())
        member = q.members.get(name)
        if member is None:
            member = q.members[name] = Member(name)
        return member

    def _busy(self, member: Member, queue: str, now: float) -> bool:
        return member.staffed and not member.free(now, self.wrapup.of(queue))

    def _settle(self, member: Member, queue: str, was_busy: bool, now: float) -> None:
        """Start or end a busy period (handle time = from busy to free, wrap-up included)."""
        busy = self._busy(member, queue, now)
        if busy and not was_busy:
            member.busy_since = now
        elif was_busy and not busy:
            if member.busy_since is not None and self.on_handle_time is not None:
                self.on_handle_time(queue, now - member.busy_since)
            member.busy_since = None

    def _update(self, member: Member, queue: str, message: Message, now: float, wall: float | None = None) -> None:
        was_busy = self._busy(member, queue, now)
        was_in_call = member.in_call or member.status == INUSE
        member.paused = (message.get("Paused") or "0") == "1"
        member.in_call = (message.get("InCall") or "0") == "1"
        member.status = message.get("Status") or NOT_INUSE
        member.interface = (message.get("StateInterface") or message.get("Interface") or message.get("Location")
                            or member.interface)
        try:
            member.own_wrapup = max(0.0, float(message.get("Wrapuptime") or 0))
        except ValueError:
            member.own_wrapup = 0.0
        ended = was_in_call and not member.in_call and member.status in (NOT_INUSE, UNKNOWN)
        if ended and (member.ended_at is None or member.ended_at < now - 1.0):
            # The call ended (InCall 1 -> 0, or the device INUSE -> NOT_INUSE: Asterisk's QueueMemberStatus events say
            # InCall 0 throughout a call) and no AgentComplete said so (yet): wrap-up from now.
            member.ended_at = now
        elif member.ended_at is None and not member.in_call and wall is not None:
            last = _int(message.get("LastCall"))
            if last > 0 and wall - last < self.wrapup.of(queue) + max(member.own_wrapup, 0.0):
                member.ended_at = now - max(0.0, wall - last)  # a call that ended before we looked
        self._settle(member, queue, was_busy, now)

    def on_event(self, server: str, message: Message, now: float) -> None:
        """QueueMemberStatus, AgentCalled, AgentConnect, AgentComplete, QueueMemberPause, QueueMemberAdded,
        QueueMemberRemoved (and QueueMember items of a listing)."""
        queue = message.get("Queue")
        name = _name(message)
        if not queue or not name:
            return
        if message.name == "QueueMemberRemoved":  # logged off: gone at once, not at the next poll
            q = self._queues.get((server, queue))
            if q is not None:
                q.members.pop(name, None)
            return
        member = self._member(server, queue, name)
        event = message.name
        if event in ("AgentCalled", "AgentConnect"):
            was_busy = self._busy(member, queue, now)
            member.in_call = True  # offered or talking: not free, whatever a later poll says before it ends
            self._settle(member, queue, was_busy, now)
        elif event == "AgentComplete":
            was_busy = self._busy(member, queue, now)
            member.in_call = False
            member.ended_at = now
            self._settle(member, queue, was_busy, now)
        else:
            self._update(member, queue, message, now)

    def on_poll(self, server: str, queue: str, members: list[Message], available: int | None, now: float,
                wall: float | None = None) -> None:
        """A QueueStatus listing (its QueueMember items) and the QueueSummary Available figure."""
        q = self._queues.setdefault((server, queue), _Queue())
        seen = set()
        for item in members:
            name = item.get("Name") or item.get("MemberName") or item.get("Location")
            if not name:
                continue
            seen.add(name)
            self._update(self._member(server, queue, name), queue, item, now, wall)
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
        wrapup = self.wrapup.of(queue)
        for (server, name), q in self._queues.items():
            if name != queue or (servers is not None and server not in servers):
                continue
            for m in q.members.values():  # a wrap-up that ended since the last event: its handle time is over
                if m.busy_since is not None and m.free(now, wrapup):
                    self._settle(m, queue, True, now)
            by_events = sum(1 for m in q.members.values() if m.free(now, wrapup))
            free += by_events if q.available is None else min(by_events, q.available)
            for m in q.members.values():
                if m.staffed:
                    staffed += 1
                    if not m.free(now, wrapup):
                        busy.append(now - m.busy_since if m.busy_since is not None else 0.0)
        return AgentView(free, tuple(busy), staffed)

    def members(self, queue: str, servers: set[str] | None = None) -> list[tuple[str, Member]]:
        """(identity, member) of every logged-in member of a queue; the identity (server and interface) is the same
        for an agent who is a member of several queues."""
        return [(f"{server}|{m.interface or m.name}", m) for (server, name), q in self._queues.items()
                if name == queue and (servers is None or server in servers) for m in q.members.values()]

    def identity(self, server: str, queue: str, name: str) -> str:
        """The identity `members` gives this member (server and interface)."""
        q = self._queues.get((server, queue))
        member = q.members.get(name) if q is not None else None
        return f"{server}|{(member.interface if member is not None else '') or name}"

    def queues(self) -> set[str]:
        """Names of every queue the board has seen."""
        return {queue for (_, queue) in self._queues}

def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
