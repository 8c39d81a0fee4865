"""Which requests the audit trail records, and how the others are counted.

A compliance officer needs who changed what, who read personal data, who was refused, and when each token
was used; not a 385-byte entry for every dashboard poll (at 750 requests/s that is 1 GB of Redis an hour).
So a request gets a `token.use` entry in the tenant's hash-chained trail when it:

  - changes something (any method but GET): `why: change`;
  - reads personal data or the trail itself (DATA_ACCESS below): `why: data_access`;
  - is the token's first use in the current period (`gateway.audit_token_use_seconds`, default one hour):
    `why: first_use`.

Every other authenticated request adds one to a per-day counter `t:{tenant}:audit:uses:{YYYY-MM-DD}` (hash:
"token_id METHOD route" -> count, kept USAGE_DAYS), read with `GET /v1/audit/usage`. Refused requests are
recorded too: 403 in the tenant's trail (`token.denied`), 401 and 429 in the tenant's trail when the token
names a known tenant, and always in the gateway-wide stream DENIED_STREAM (capped, for the operator).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway import trail
from gateway.auth import token_hash, token_key

# GET routes that read personal data (contacts, consents, reports per person) or the audit trail itself.
DATA_ACCESS = frozenset({
    "/v1/consents", "/v1/imports/{import_id}/errors", "/v1/lists/{list_id}/scrub/report",
    "/v1/campaigns/{id}/contacts/{contact}/why", "/v1/audit", "/v1/audit/usage", "/v1/exports/contacts",
    "/v1/exports/attempts", "/v1/exports/outcomes", "/v1/subjects", "/v1/subjects/report",
})
USAGE_DAYS = 400  # counters outlive the longest audit review cycle (a year) with margin
DENIED_STREAM = "gateway:denied"
DENIED_KEEP = 10_000  # entries of the gateway-wide stream of refused requests


def usage_key(tenant: str, day: str) -> str:
    return f"t:{tenant}:audit:uses:{day}"


def seen_key(tenant: str, token_id: str, bucket: int) -> str:
    return f"t:{tenant}:audit:seen:{token_id}:{bucket}"


def client_address(request: web.BaseRequest) -> str:
    """The client's address: the peer's, or the one a trusted proxy forwarded (gateway/proxies.py)."""
    return request.remote or "unknown"


async def record_use(redis: Any, request: web.Request, method: str, path: str, tenant: str, user: str,
                     token_id: str, period: int, now: float | None = None) -> str | None:
    """Audit or count one authenticated request; returns why it was audited, or None when it was counted."""
    now = time.time() if now is None else now
    why: str | None = None
    if method != "GET":
        why = "change"
    elif path in DATA_ACCESS:
        why = "data_access"
    elif await redis.set(seen_key(tenant, token_id, int(now // period)), "1", nx=True, ex=period * 2):
        why = "first_use"
    if why is not None:
        await trail.record(redis, tenant, "token.use", actor=user, token_id=token_id, method=method, route=path,
                           why=why, client=client_address(request))
        return why
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(usage_key(tenant, day), f"{token_id} {method} {path}", 1)
    pipe.expire(usage_key(tenant, day), USAGE_DAYS * 86400)
    await pipe.execute()
    return None


async def record_denied(redis: Any, request: web.Request, path: str, status: int, reason: str, *,
                        token: str | None = None, token_id: str | None = None, tenant: str | None = None,
                        user: str | None = None) -> None:
    """A refused request: in the tenant's trail when the tenant is known, and in the gateway-wide stream."""
    if tenant is None and token:
        record = await redis.hmget(token_key(token_hash(token)), "tenant", "user")
        tenant, user = record[0] or None, record[1] or None
    address = client_address(request)
    if tenant:
        await trail.record(redis, tenant, "token.denied", actor=user or "unknown", token_id=token_id or "",
                           method=request.method, route=path, status=status, reason=reason, client=address)
    await redis.xadd(DENIED_STREAM, {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"), "status": str(status),
        "reason": reason, "client": address, "token": token_id or "", "tenant": tenant or "",
        "method": request.method, "route": path}, maxlen=DENIED_KEEP, approximate=True)


async def usage(redis: Any, tenant: str, day: str) -> list[dict[str, Any]]:
    counts = await redis.hgetall(usage_key(tenant, day))
    rows = []
    for key, count in sorted(counts.items()):
        token_id, method, route = key.split(" ", 2)
        rows.append({"token": token_id, "method": method, "route": route, "count": int(count)})
    return rows
