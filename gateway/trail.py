"""Where the gateway reports auditable events (token use, campaign control, opt-outs, consents).

Events go straight into the tenant's tamper-evident audit trail `t:{tenant}:audit` (dialer/audit_events.py
`gateway_sink` = dialer/audit.py `trail_sink`: same Lua append as the gate's, so one ordered hash chain per
tenant; the action's first part picks the audit kind, `ACTION_KINDS`), except the actions audited where the
data is written (opt-outs, consents, subject requests: `AUDITED_AT_SOURCE`). `set_sink(...)` replaces the
sink (tests, or the interim `inbox_sink` that wrote to a plain stream `t:{tenant}:audit:inbox`). Events carry
no token secret and no full phone number (callers pass masked or hashed values).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from dialer.audit_events import gateway_sink

Event = dict[str, Any]
Sink = Callable[[Any, str, Event], Awaitable[None]]


def inbox_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:audit:inbox"


async def inbox_sink(redis: Any, tenant: str, event: Event) -> None:
    fields = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in event.items()}
    await redis.xadd(inbox_key(tenant), fields)


_sink: Sink = gateway_sink


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
