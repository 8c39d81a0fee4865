"""Where the gateway reports auditable events (token use, campaign control, opt-outs, consents).

The audit module (issue 8) owns the tamper-evident trail `t:{tenant}:audit`. Until it is wired
in, events go to a plain per-tenant inbox stream `t:{tenant}:audit:inbox` (never trimmed here),
which the audit module can drain into the chain; or it replaces the sink with `set_sink(...)`
at start-up and receives every event directly. Events carry no token secret and no full phone
number (callers pass masked or hashed values).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

Event = dict[str, Any]
Sink = Callable[[Any, str, Event], Awaitable[None]]


def inbox_key(tenant: str) -> str:
    return f"t:{tenant}:audit:inbox"


async def inbox_sink(redis: Any, tenant: str, event: Event) -> None:
    fields = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in event.items()}
    await redis.xadd(inbox_key(tenant), fields)


_sink: Sink = inbox_sink


def set_sink(sink: Sink) -> Sink:
    """Install another sink (the audit module's); returns the previous one."""
    global _sink
    previous, _sink = _sink, sink
    return previous


async def record(redis: Any, tenant: str, action: str, *, actor: str, token_id: str = "",
                 at: datetime | None = None, **details: Any) -> None:
    """Report one event: `action` like "token.use", "campaign.pause", "optout.add"."""
    event: Event = {
        "action": action,
        "actor": actor,
        "token": token_id,
        "at": (at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if details:
        event["details"] = details
    await _sink(redis, tenant, event)
