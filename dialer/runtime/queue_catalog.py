"""Which Asterisk queues the PBXs have, as the dialer engines last saw them: so a campaign on a queue no PBX has
is refused when it is created, not only held by the engine when it would dial (dialer/runtime/pbx_queues.py).

Each engine asks each server it dials through for every queue (`QueueSummary` with no queue: one `QueueSummary`
event per queue, then `QueueSummaryComplete`; a reload adds or removes queues without any event, so it asks
again every LIST_SECONDS) and writes the names under the server's identity:

  dialer:pbx:queues   hash: server identity (dialer/runtime/identity.py) -> JSON {"at": epoch s, "queues": [...]}

The gateway reads the listings younger than MAX_AGE. With none (no engine running, or Redis was flushed) it cannot
know and lets the campaign be saved; the engine's own check holds it if the queue is missing. Names are compared
exactly: Asterisk matches them in any letter case, but its agent events use the queue's own spelling.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

KEY = "dialer:pbx:queues"
LIST_SECONDS = 30.0  # how often an engine lists each server's queues
MAX_AGE = 5 * LIST_SECONDS  # older listings are not trusted (that engine may be gone, the PBX reloaded since)

PRESENT, MISSING, UNKNOWN = "present", "missing", "unknown"


def queue_names(events: Iterable[Any]) -> list[str]:
    """The queue names of a QueueSummary listing (events with `.name` and `.get`, as dialer.ami.client's)."""
    return sorted({str(e.get("Queue")) for e in events if e.name == "QueueSummary" and e.get("Queue")})


def publish(client: Any, listings: dict[str, list[str]]) -> None:
    """Write each server's queue names (server identity -> names), stamped with Redis's clock (the gateway's, and
    real time even when the engine runs on a simulated clock)."""
    if listings:
        seconds, micros = client.time()
        at = int(seconds) + int(micros) / 1e6
        client.hset(KEY, mapping={server: json.dumps({"at": at, "queues": names})
                                  for server, names in listings.items()})


def verdict(raw: dict[Any, Any], queue: str, now: float) -> str:
    """PRESENT when a fresh listing has the queue, MISSING when fresh listings exist and none has it, UNKNOWN when
    there is no fresh listing. `raw`: the hash as read (bytes or str)."""
    fresh = []
    for value in raw.values():
        try:
            listing = json.loads(value)
            at, names = float(listing["at"]), listing["queues"]
        except (ValueError, KeyError, TypeError):
            continue  # a damaged entry tells nothing
        if now - MAX_AGE <= at <= now + MAX_AGE:
            fresh.append(names)
    if not fresh:
        return UNKNOWN
    return PRESENT if any(queue in names for names in fresh) else MISSING
