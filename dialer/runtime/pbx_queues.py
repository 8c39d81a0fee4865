"""Whether a campaign's Asterisk queue exists on the servers it dials through (issue 16 point 11).

A campaign on a queue the PBX does not have runs "fine" as far as AMI goes: the Originates succeed, the callee
answers, our dialplan's Queue() returns at once with QUEUESTATUS=UNKNOWN and the person is dropped. So no call of a
queue campaign is placed through a server until that server has said, on its current connection, that the queue
exists.

How Asterisk 22.10.1 says it (the lab PBX; tests/data/ami-transcript-queuestatus.txt): `Action: QueueStatus` with
`Queue: <name>` is never an error. A queue that exists is listed as one `QueueParams` event (then its members and
callers) before `QueueStatusComplete`; one that does not gives `QueueStatusComplete` with `ListItems: 0` and nothing
else. The name is matched in any letter case and the events carry the queue's own name: a campaign on `Solo` would
reach queue `solo`, but every agent event names `solo`, so the agent board would see no agent of the campaign's
queue; that is refused too, naming the right spelling. `queue reload all` adds and removes queues without any event:
the engine asks again at every agent poll (each second), so a queue added by a reload is found within a poll, and a
queue removed stops the campaign within a poll.

A check is valid for one connection: after a reconnect (the PBX may have restarted with another queues.conf) the
server is unchecked until its next poll answers. Pure: the engine feeds QueueStatus listings and asks for a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialer.audit import AuditLog
from dialer.livestats import stats_key

QUEUE_MISSING = "QUEUE_MISSING"
QUEUE_NAME_CASE = "QUEUE_NAME_CASE"
QUEUE_UNCHECKED = "QUEUE_UNCHECKED"  # not refused: the check has not answered yet on this connection
REFUSALS = (QUEUE_MISSING, QUEUE_NAME_CASE)


def campaign_queue(config: Mapping[str, Any]) -> str:
    """The Asterisk queue a campaign's answered calls go to; empty for AI-endpoint campaigns (no queue)."""
    if config.get("agent_kind") == "ai":
        return ""
    return str(config.get("queue") or "").strip()


def listed_name(queue: str, events: Iterable[Any]) -> str | None:
    """The name a QueueStatus listing gives `queue` (its QueueParams event, matched in any case as app_queue
    matches), or None when the listing has no such queue."""
    wanted = queue.lower()
    for event in events:
        if event.name == "QueueParams" and str(event.get("Queue") or "").lower() == wanted:
            return str(event.get("Queue"))
    return None


@dataclass(frozen=True)
class Sighting:
    connection: int  # the AMI client's connection number (logins so far) the answer came on
    listed: str | None  # the queue's name as the server lists it; None: not listed


@dataclass(frozen=True)
class QueueVerdict:
    """Where a campaign may dial: `servers` (empty when refused or unchecked) and, when it may not dial anywhere,
    a reason code and a human text. `lacking`: servers checked that do not have the queue as named (dialing goes on
    through the others)."""

    queue: str
    servers: tuple[str, ...]
    code: str = ""
    text: str = ""
    lacking: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return self.code in REFUSALS


class QueuePresence:
    """What each server last said about each queue, per connection."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], Sighting] = {}

    def observe(self, server: str, queue: str, connection: int, listed: str | None) -> None:
        self._seen[(server, queue)] = Sighting(connection, listed)

    def verdict(self, queue: str, connections: Mapping[str, int]) -> QueueVerdict:
        """`connections`: the servers the campaign could dial through now -> their current connection number."""
        present, missing, unchecked = [], [], []
        renamed: dict[str, str] = {}
        for server in sorted(connections):
            seen = self._seen.get((server, queue))
            if seen is None or seen.connection != connections[server]:
                unchecked.append(server)
            elif seen.listed == queue:
                present.append(server)
            elif seen.listed is None:
                missing.append(server)
            else:
                renamed[server] = seen.listed
        lacking = tuple(missing + sorted(renamed))
        if present:
            return QueueVerdict(queue, tuple(present), lacking=lacking)
        if not connections:
            return QueueVerdict(queue, ())  # no server to dial through: nothing to say about the queue
        if unchecked:
            return QueueVerdict(queue, (), QUEUE_UNCHECKED,
                                f"checking that queue '{queue}' exists on {', '.join(unchecked)}", lacking)
        if renamed:
            server, name = next(iter(sorted(renamed.items())))
            return QueueVerdict(queue, (), QUEUE_NAME_CASE,
                                f"queue '{queue}' is called '{name}' on server {server}: Asterisk would put the calls "
                                f"there but reports its agents under '{name}', so none would be seen; set the "
                                f"campaign's queue to '{name}'. No call is placed meanwhile", lacking)
        return QueueVerdict(queue, (), QUEUE_MISSING,
                            f"queue '{queue}' does not exist on server{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(missing)} (QueueStatus lists no such queue): every answered call would be "
                            "dropped. No call is placed until it exists (add it to queues.conf, then `queue reload "
                            "all`); dialing resumes by itself once it is there", lacking)


# --- thin I/O: what the engine writes when a campaign's dialing is refused or resumes ---------------------------

def refusal_fields(verdict: QueueVerdict, at: datetime) -> dict[str, str]:
    """The campaign's live-stats fields while it is refused (`dialer campaigns show`, the dashboard)."""
    return {"refused_code": verdict.code, "refused_text": verdict.text, "refused_since": at.isoformat()}


def record_dialing(client: Any, audit: AuditLog, tenant: str, campaign: str, verdict: QueueVerdict,
                   at: datetime) -> None:
    """A refusal (or its end) in the campaign's live stats and one `campaign_dialing` audit entry."""
    key = stats_key(tenant, campaign)
    if verdict.refused:
        client.hset(key, mapping=refusal_fields(verdict, at))
    else:
        client.hdel(key, *refusal_fields(verdict, at))
    audit.append(tenant, "campaign_dialing", "engine", {
        "campaign": campaign, "state": "refused" if verdict.refused else "resumed", "code": verdict.code,
        "text": verdict.text, "queue": verdict.queue, "servers": list(verdict.servers)}, at)
