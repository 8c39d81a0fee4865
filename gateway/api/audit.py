"""The tenant's audit trail (dialer/audit.py), for auditors and admins: query and verify.

`GET /v1/audit` reads newest first, filtered by kind and by event time (`since` inclusive, `until`
exclusive), at most `limit` entries (default 100, max 1000); `next_before` in the answer is the `before` of the
next page (seq). The Redis tail and the part archived in the record are read as one sequence, numbered as the
record numbers the chain (dialer/record/trail.py); the record down when the page needs it is a 503. A query reads
at most SCAN_LIMIT entries per request, so a rare kind in a huge trail may need several pages (the answer says
where it stopped); in the archived part kind, actor and the time range are applied in SQL first (only entries that
may match count: dialer.record.trail.ArchiveFilter), so the items are the scan's. `GET /v1/audit/verify` walks
the whole chain.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer.audit import KINDS, AuditLog
from dialer.record.trail import ArchiveFilter, newest_first
from dialer.record.verify import verify_tenant
from gateway import audit_policy
from gateway.api.support import raw_redis, sync
from gateway.errors import invalid
from gateway.routing import CONFIG, Route, principal, query, redis_of

SCAN_LIMIT = 20_000

ENTRY: dict[str, Any] = {"type": "object", "required": ["seq", "at", "kind", "actor", "payload"], "properties": {
    "seq": {"type": "integer"}, "at": {"type": "string"}, "kind": {"type": "string"}, "actor": {"type": "string"},
    "payload": {"type": "object", "additionalProperties": {}}, "written": {"type": "string"},
    "hash": {"type": "string"}}}
PAGE: dict[str, Any] = {"type": "object", "required": ["items"], "properties": {
    "items": {"type": "array", "items": ENTRY},
    "next_before": {"type": "integer", "nullable": True, "description": "pass as before= for the next page"}}}
VERIFY: dict[str, Any] = {"type": "object", "required": ["ok", "checked", "head_seq"], "properties": {
    "ok": {"type": "boolean"}, "checked": {"type": "integer"}, "head_seq": {"type": "integer"},
    "bad_seq": {"type": "integer", "nullable": True}, "problem": {"type": "string"}, "text": {"type": "string"},
    "breaks": {"type": "array", "items": {"type": "string"},
               "description": "confirmed breaks after a Redis data loss (docs/record.md), for people"}}}
QUERY = {
    "kind": {"type": "string", "enum": list(KINDS)},
    "since": {"type": "string", "format": "date-time", "description": "events at or after this instant"},
    "until": {"type": "string", "format": "date-time", "description": "events before this instant"},
    "before": {"type": "integer", "minimum": 1, "maximum": 2**53, "description": "entries with a smaller seq (paging)"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "actor": {"type": "string", "maxLength": 200, "description": "entries by this actor only (exact)"},
    "action": {"type": "string", "maxLength": 100,
               "description": "gateway events whose action starts with this (login, user.change, token.)"},
}


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_page(client: Any, record: Any, tenant: str, params: dict[str, Any]) -> dict[str, Any]:
    """One page of the tenant's trail, newest first: the Redis tail, then the archived part (`record` None: Redis
    only). At most SCAN_LIMIT entries are read; `next_before` says where the next page starts."""
    kind, limit = params.get("kind"), params.get("limit", 100)
    actor, action = params.get("actor"), params.get("action")
    since = _instant(params["since"]) if params.get("since") else None
    until = _instant(params["until"]) if params.get("until") else None
    items: list[dict[str, Any]] = []
    scanned, last_seq, exhausted = 0, None, True
    # kind, actor and the time range narrow the archived part in SQL (a superset: every entry is still tested below)
    match = ArchiveFilter(kind=kind, actor=actor, since=since, until=until)
    for entry in newest_first(client, record, tenant, before=params.get("before"), match=match):
        if scanned >= SCAN_LIMIT or len(items) >= limit:
            exhausted = False
            break
        scanned += 1
        last_seq = entry.seq
        if (kind and entry.kind != kind) or (since and entry.at < since) or (until and entry.at >= until):
            continue
        if (actor and entry.actor != actor) or (
                action and not str(entry.payload.get("action", "")).startswith(action)):
            continue
        items.append({"seq": entry.seq, "at": _iso(entry.at), "kind": entry.kind, "actor": entry.actor,
                      "payload": entry.payload, "written": _iso(entry.written), "hash": entry.hash})
    more = not exhausted and last_seq is not None and last_seq > 1
    return {"items": items, "next_before": last_seq if more else None}


async def audit_query(request: web.Request) -> web.Response:
    from gateway.api.reports import record_of

    page = await sync(read_page, raw_redis(request), record_of(request), principal(request).tenant, query(request))
    return web.json_response(page)


async def audit_verify(request: web.Request) -> web.Response:
    """The whole chain: the part archived in the record and the Redis tail (dialer/record/verify.py)."""
    from gateway.api.reports import record_of

    log = AuditLog(raw_redis(request), request.app[CONFIG]["security.secret_key"])
    result = await sync(verify_tenant, log, record_of(request), principal(request).tenant)
    return web.json_response({"ok": result.ok, "checked": result.checked, "head_seq": result.head_seq,
                              "bad_seq": result.bad_seq, "problem": result.problem,
                              "breaks": list(result.breaks), "text": str(result)})


USAGE: dict[str, Any] = {"type": "object", "required": ["day", "items"], "properties": {
    "day": {"type": "string"},
    "items": {"type": "array", "items": {"type": "object", "properties": {
        "token": {"type": "string"}, "method": {"type": "string"}, "route": {"type": "string"},
        "count": {"type": "integer"}}}}}}
USAGE_QUERY = {"day": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$",
                       "description": "UTC day, YYYY-MM-DD (default today)"}}


async def audit_usage(request: web.Request) -> web.Response:
    """Requests counted rather than audited (gateway/audit_policy.py): per token, method and route, per day."""
    day = query(request).get("day") or datetime.now(UTC).strftime("%Y-%m-%d")
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        raise invalid("day", "not a calendar day (YYYY-MM-DD)", rule="pattern", params={"form": "date"}) from None
    return web.json_response({"day": day, "items": await audit_policy.usage(redis_of(request),
                                                                            principal(request).tenant, day)})


ROUTES = [
    Route("GET", "/v1/audit", audit_query, "The audit trail, newest first, filtered by kind and time", "audit.read",
          response=PAGE, query=QUERY, tag="audit"),
    Route("GET", "/v1/audit/verify", audit_verify, "Verify the audit trail's hash chain (and signed anchors)",
          "audit.read", response=VERIFY, tag="audit"),
    Route("GET", "/v1/audit/usage", audit_usage, "Requests counted rather than audited, per token, method and "
          "route, for one UTC day", "audit.read", response=USAGE, query=USAGE_QUERY, tag="audit"),
]
