"""The agents of each queue as supervisors see them: who, in which state, since when, on which campaign's call.

The agent board (agents.py) lives in the engine's memory and answers "how many are free". The console needs each
agent: the engine publishes them here after each poll of the queues (every `agent_poll_seconds`), so the gateway
reads Redis and never talks to Asterisk.

Key (shared infrastructure, like dialer:agents:* in agentpool.py; the gateway shows a tenant only the queues of its
own campaigns and only the ids of its own campaigns' calls):
  dialer:agentboard:{queue}   hash: agent identity -> JSON {name, server, state, since, call}
                              state: free, on_call, wrapup, paused, logged_off; since: epoch seconds the state
                              began (as this engine saw it); call: "{tenant}/{campaign}" of the call the agent is
                              on, when it is one of ours ("" otherwise). Expires BOARD_TTL seconds after the last
                              write: a stopped engine's board does not linger.
  dialer:agentboard:{queue}:waiting   string: callers waiting in the queue for an agent (QueueSummary Callers,
                              summed over the servers), same expiry
An agent who logs off stays listed as logged_off for LOGGED_OFF_KEEP seconds, then disappears.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dialer.runtime.agents import INUSE, INVALID, UNAVAILABLE, Member

STATES = ("free", "on_call", "wrapup", "paused", "logged_off")
BOARD_TTL = 30
LOGGED_OFF_KEEP = 600.0


def board_key(queue: str) -> str:
    return f"dialer:agentboard:{queue}"


def member_state(member: Member, now: float, wrapup: float) -> str:
    """One member's state at monotonic `now` (wrap-up: the queue's seconds after a call)."""
    if member.status in (INVALID, UNAVAILABLE):
        return "logged_off"  # its device is gone: nobody can take a call there
    if member.paused:
        return "paused"
    if member.in_call or member.status == INUSE:
        return "on_call"
    if member.wrapping_up(now, wrapup):
        return "wrapup"
    return "free"


@dataclass
class _Seen:
    name: str
    server: str
    state: str
    since: float  # wall seconds
    call: str = ""


class AgentStates:
    """Remembers when each agent entered its state (the board only knows the current one). Pure: times passed in."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, _Seen]] = {}  # queue -> identity -> what we saw

    def observe(self, queue: str, members: Iterable[tuple[str, Member]], calls: Mapping[str, str], now: float,
                wall: float, wrapup: float) -> dict[str, dict[str, Any]]:
        """The rows of one queue. `members`: (identity, member) from AgentBoard.members; `calls`: identity -> the
        "{tenant}/{campaign}" of the call the agent took (AgentConnect)."""
        seen = self._seen.setdefault(queue, {})
        present = set()
        for identity, member in members:
            present.add(identity)
            state = member_state(member, now, wrapup)
            call = calls.get(identity, "") if state == "on_call" else ""
            old = seen.get(identity)
            if old is None or old.state != state:
                seen[identity] = _Seen(member.name, identity.split("|", 1)[0], state, wall, call)
            else:
                old.call = call
        for identity, old in list(seen.items()):
            if identity in present:
                continue
            if old.state != "logged_off":
                seen[identity] = _Seen(old.name, old.server, "logged_off", wall)
            elif wall - old.since > LOGGED_OFF_KEEP:
                del seen[identity]
        return {identity: {"name": s.name, "server": s.server, "state": s.state, "since": round(s.since, 3),
                           "call": s.call} for identity, s in seen.items()}


def waiting_key(queue: str) -> str:
    return f"{board_key(queue)}:waiting"


def queue_board(pipe: Any, queue: str, rows: Mapping[str, Mapping[str, Any]], waiting: int | None = None) -> None:
    """Replace one queue's published board (on a pipeline the caller executes, inside MULTI)."""
    key = board_key(queue)
    pipe.delete(key)
    if rows:
        pipe.hset(key, mapping={k: json.dumps(v, sort_keys=True) for k, v in rows.items()})
        pipe.expire(key, BOARD_TTL)
    if waiting is not None:
        pipe.set(waiting_key(queue), str(waiting), ex=BOARD_TTL)


def read_board(raw: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """The published rows of a queue (from HGETALL), sorted by name; malformed rows are skipped."""
    rows = []
    for value in raw.values():
        try:
            row = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(row, dict) and row.get("state") in STATES:
            rows.append(row)
    return sorted(rows, key=lambda r: (str(r.get("name")), str(r.get("server"))))
