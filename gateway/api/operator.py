"""The installation's operator over HTTP: suspend and resume a whole tenant (issue 19's kill-switch).

  GET  /v1/operator/tenants                    every tenant with the tenant-wide holds in force
  POST /v1/operator/tenants/{tenant}/suspend   {"reason": "..."}: no call for the tenant from any dialer process
  POST /v1/operator/tenants/{tenant}/resume    {"reason": "..."}: lifted (409 when it was not suspended)

These are platform-level routes: the caller is an admin (permission `tenants.operate`) of a tenant listed in
setting `gateway.operator_tenants` (Route.operator, checked in gateway/routing.py; 403 for anyone else, the
suspended tenant's own admin included). They write exactly what `dialer tenant suspend|resume` writes
(dialer/holds.py): the hold and its `hold` audit entry in the suspended tenant's trail in one transaction, so the
gate's reserve script refuses the tenant's next reservation at once; the operator's action is also recorded in
the operator tenant's own trail (`operator.tenant_suspend`, `operator.tenant_resume`). The tenant itself sees
the hold, with the reason, in GET /v1/holds, on the dashboard and in the 403 `tenant_suspended` of new work;
no other tenant sees it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer import holds
from gateway import trail
from gateway.api.support import sync
from gateway.api.usage import HOLD, REASON_IN, UNSUSPEND_IN
from gateway.auth import AuthStore
from gateway.errors import ApiError, invalid, not_found
from gateway.routing import SERVICES, Route, body, principal, redis_of

TENANT: dict[str, Any] = {"type": "object", "required": ["id", "suspended", "holds"], "properties": {
    "id": {"type": "string"}, "name": {"type": "string"}, "created_at": {"type": "string"},
    "suspended": {"type": "boolean", "description": "the operator suspended it (a budget hold is listed apart)"},
    "holds": {"type": "array", "items": HOLD}}}
TENANTS: dict[str, Any] = {"type": "object", "required": ["items"],
                           "properties": {"items": {"type": "array", "items": TENANT}}}
RESUMED: dict[str, Any] = {"type": "object", "required": ["tenant", "suspended"], "properties": {
    "tenant": {"type": "string"}, "suspended": {"type": "boolean"}}}
_ERRORS = {"403": "not an admin of an operator tenant (setting gateway.operator_tenants)", "404": "no such tenant"}


def _by(request: web.Request) -> str:
    who = principal(request)
    return f"operator:{who.user} ({who.tenant})"


async def _tenant_or_404(request: web.Request) -> str:
    tenant = request.match_info["tenant"]
    if await AuthStore(redis_of(request)).tenant(tenant) is None:
        raise not_found("tenant")
    return tenant


async def list_tenants(request: web.Request) -> web.Response:
    records = await AuthStore(redis_of(request)).tenants()
    client = request.app[SERVICES]["sync_redis"]

    def read() -> list[dict[str, Any]]:
        out = []
        for record in records:
            found = holds.tenant_holds(client, record["id"])
            out.append({"id": record["id"], "name": record.get("name", record["id"]),
                        "created_at": record.get("created_at", ""),
                        "suspended": any(h.code == holds.TENANT_SUSPENDED for h in found),
                        "holds": [h.as_dict() for h in found]})
        return out

    return web.json_response({"items": await sync(read)})


async def suspend_tenant(request: web.Request) -> web.Response:
    who, tenant = principal(request), await _tenant_or_404(request)
    try:
        hold = await sync(holds.suspend_tenant, request.app[SERVICES]["sync_redis"], tenant,
                          reason=body(request)["reason"], by=_by(request), at=datetime.now(UTC))
    except holds.HoldError as exc:
        raise invalid("reason", exc.message, code=exc.code) from None
    await trail.record(redis_of(request), who.tenant, "operator.tenant_suspend", actor=who.user,
                       token_id=who.token_id, target=tenant, reason=hold.reason)
    return web.json_response(hold.as_dict())


async def resume_tenant(request: web.Request) -> web.Response:
    who, tenant = principal(request), await _tenant_or_404(request)
    reason = body(request).get("reason") or "lifted"
    try:
        lifted = await sync(holds.resume_tenant, request.app[SERVICES]["sync_redis"], tenant, reason=reason,
                            by=_by(request), at=datetime.now(UTC))
    except holds.HoldError as exc:
        raise invalid("reason", exc.message, code=exc.code) from None
    if not lifted:
        raise ApiError(409, "not_suspended", f"tenant {tenant} is not suspended")
    await trail.record(redis_of(request), who.tenant, "operator.tenant_resume", actor=who.user,
                       token_id=who.token_id, target=tenant, reason=reason)
    return web.json_response({"tenant": tenant, "suspended": False})


ROUTES = [
    Route("GET", "/v1/operator/tenants", list_tenants, "Every tenant with the tenant-wide holds in force (the "
          "installation's operators only)", "tenants.operate", response=TENANTS, tag="operator", operator=True,
          errors={"403": _ERRORS["403"]}),
    Route("POST", "/v1/operator/tenants/{tenant}/suspend", suspend_tenant, "Suspend a tenant at once: no new call "
          "from any dialer process, the API refuses it new work; calls up finish (reason required, audited in the "
          "tenant's trail)", "tenants.operate", body=REASON_IN, response=HOLD, tag="operator", operator=True,
          errors=_ERRORS),
    Route("POST", "/v1/operator/tenants/{tenant}/resume", resume_tenant, "Lift a tenant's suspension (audited)",
          "tenants.operate", body=UNSUSPEND_IN, response=RESUMED, tag="operator", operator=True,
          errors={**_ERRORS, "409": "the tenant is not suspended"}),
]
