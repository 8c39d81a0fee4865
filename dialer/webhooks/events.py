"""Webhook events: their types, and the outbox they are written to in the same transaction as the fact.

An event is queued only for a tenant that has at least one endpoint (the check and the append are one
Lua script, queued inside the caller's MULTI), so a tenant without webhooks costs nothing and an
endpoint registered at any instant receives every event after it. The delivery worker (delivery.py)
fans each outbox entry out to the tenant's endpoints subscribed to its type.

Outbox entry fields: id (evt_...: the webhook-id, the receiver's idempotency key), tenant, type, key
(the ordering key: deliveries with the same key reach an endpoint in order), body (the JSON sent).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

# type -> what it means. Data: the API validates subscriptions against it, docs list it.
EVENT_TYPES: dict[str, str] = {
    "call.outcome": "a call's outcome was recorded or became more precise (answered, busy, refused ...)",
    "optout.recorded": "a person opted out (keypress, agent, SMS, CRM, API)",
    "consent.withdrawn": "a person withdrew consent",
    "import.finished": "a contact import was committed",
    "import.failed": "a contact import failed",
    "campaign.state_changed": "a campaign was started, paused, resumed, stopped, suspended or released ...",
    "usage.budget_alert": "a usage budget reached one of its alert thresholds (e.g. 80 %, 100 %)",
    "tenant.state_changed": "the operator suspended the tenant's dialing, or lifted the suspension",
    "subject_request.received": "a data-subject request was recorded, with its legal deadline",
    "subject_request.reminder": "a data-subject request is due soon and not answered yet",
    "subject_request.overdue": "a data-subject request passed its deadline unanswered",
}

_EMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'tenant', ARGV[2], 'type', ARGV[3], 'key', ARGV[4], 'body', ARGV[5])
return 1
"""


def endpoints_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:wh:endpoints"


def outbox_key(tenant: str) -> str:
    """The tenant's own outbox: in its hash slot, so it is written in the same MULTI as the tenant's facts."""
    return f"t:{{{tenant}}}:wh:outbox"


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def envelope(event_id: str, event_type: str, at: datetime, data: dict[str, Any]) -> str:
    return json.dumps({"id": event_id, "type": event_type, "timestamp": _stamp(at), "data": data},
                      separators=(",", ":"), sort_keys=True)


def queue_event(pipe: Any, tenant: str, event_type: str, key: str, data: dict[str, Any],
                at: datetime | None = None) -> str:
    """Queue the event on `pipe` (a transaction pipeline, sync or asyncio). Returns its id."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type}")
    event_id = "evt_" + uuid.uuid4().hex
    body = envelope(event_id, event_type, at or datetime.now(UTC), data)
    pipe.eval(_EMIT, 2, endpoints_key(tenant), outbox_key(tenant), event_id, tenant, event_type, key, body)
    return event_id


def emit(client: Any, tenant: str, event_type: str, key: str, data: dict[str, Any],
         at: datetime | None = None) -> str:
    """Emit on its own, for facts whose write is not ours to extend (after that write succeeded)."""
    pipe = client.pipeline(transaction=True)
    event_id = queue_event(pipe, tenant, event_type, key, data, at)
    pipe.execute()
    return event_id


# Mark-and-emit in one script: KEYS marks hash, endpoints, outbox; ARGV mark field, id, tenant, type, key, body, ttl.
_EMIT_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[7])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[2], 'tenant', ARGV[3], 'type', ARGV[4], 'key', ARGV[5], 'body', ARGV[6])
end
return 1
"""


def emit_once(client: Any, tenant: str, marks: str, mark: str, event_type: str, key: str, data: dict[str, Any],
              at: datetime, ttl: int) -> bool:
    """Emit an alert at most once per `mark` (a field of hash `marks`, kept `ttl` seconds): the mark and the event
    are written by one script, so an alert is neither lost between the two nor sent twice. True when sent now."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type}")
    event_id = "evt_" + uuid.uuid4().hex
    body = envelope(event_id, event_type, at, data)
    return bool(client.eval(_EMIT_ONCE, 3, marks, endpoints_key(tenant), outbox_key(tenant), mark, event_id, tenant,
                            event_type, key, body, ttl))
