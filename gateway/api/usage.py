"""Usage metering, the usage plan (rounding, budgets) and the kill-switch holds, over HTTP (issue 19).

  GET  /v1/usage                   usage per day and in total for a period (?month=YYYY-MM or ?from=&to=;
                                   ?source=auto|redis|record: dialer/usage/archived.py)
  GET  /v1/usage/export            the same as CSV (one row per day and campaign, plus the day's tenant total)
  GET  /v1/usage/plan              the tenant's rounding rule and budgets, with each budget's use so far
  PUT  /v1/usage/plan              replace them (admin); lifting a budget's hard stop releases its hold
  GET  /v1/holds                   the holds in force: tenant suspension, budget hard stop, suspended campaigns
  POST /v1/campaigns/{id}/suspend  the tenant admin's kill-switch for one campaign (reason required)
  POST /v1/campaigns/{id}/unsuspend

Reads are tenant-scoped by the caller's token; holds and plans are audited by dialer/holds.py and
dialer/usage/plan.py in the same transaction as the write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer import holds
from dialer.campaigns import CampaignStore
from dialer.record.store import RecordUnavailable
from dialer.usage import archived, budgets, report
from dialer.usage.plan import PLAN_SCHEMA, PlanError, get_plan
from gateway import trail
from gateway.api.reports import record_of, unavailable
from gateway.api.support import sync
from gateway.errors import ApiError, invalid, not_found
from gateway.routing import SERVICES, Route, body, principal, query, redis_of

_FIGURES = {"type": "object", "additionalProperties": {"type": "number"}}
USAGE_QUERY = {"month": {"type": "string", "pattern": r"^\d{4}-\d{2}$", "description": "a calendar month (UTC)"},
               "from": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "first UTC day"},
               "to": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "last UTC day"},
               "source": {"type": "string", "enum": list(archived.SOURCES), "default": "auto",
                          "description": "redis: the live counters; record: the archived copy (usage_records); "
                                         "auto: the record for a closed period once it holds every increment, "
                                         "else Redis"}}
USAGE_OUT: dict[str, Any] = {
    "type": "object", "required": ["tenant", "from", "to", "totals", "days"],
    "properties": {
        "tenant": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"},
        "rounding": {"type": "string"}, "totals": _FIGURES,
        "source": {"type": "string", "enum": ["redis", "record"], "description": "where the figures were read"},
        "campaigns": {"type": "object", "additionalProperties": _FIGURES},
        "days": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
        "budgets": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
        "holds": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
    },
}
PLAN_OUT: dict[str, Any] = {"type": "object", "properties": {
    **PLAN_SCHEMA["properties"], "state": {"type": "array", "items": {"type": "object", "additionalProperties": {}}}}}
HOLD: dict[str, Any] = {"type": "object", "required": ["code", "reason", "by", "at", "text"], "properties": {
    "code": {"type": "string", "enum": list(holds.CODES)}, "reason": {"type": "string"}, "by": {"type": "string"},
    "at": {"type": "string"}, "until": {"type": "string"}, "campaign": {"type": "string"},
    "text": {"type": "string"}}}
HOLDS_OUT: dict[str, Any] = {"type": "object", "properties": {"items": {"type": "array", "items": HOLD}}}
REASON_IN: dict[str, Any] = {"type": "object", "required": ["reason"], "additionalProperties": False,
                             "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": holds.MAX_REASON,
                                                       "description": "why: shown to the tenant, kept in the audit"}}}
UNSUSPEND_IN: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {
    "reason": {"type": "string", "minLength": 1, "maxLength": holds.MAX_REASON}}}


_RECORD_ERRORS = {"503": "source=record and the record cannot be read (record_unavailable; Retry-After)"}


def _sync_redis(request: web.Request) -> Any:
    return request.app[SERVICES]["sync_redis"]


async def get_usage(request: web.Request) -> web.Response:
    return web.json_response(await _report(request))


async def _report(request: web.Request) -> dict[str, Any]:
    params, tenant, now = query(request), principal(request).tenant, datetime.now(UTC)
    try:
        first, last = report.period(params.get("from"), params.get("to"), params.get("month"), now.date())
    except report.PeriodError as exc:
        raise invalid(exc.field, exc.message) from None
    client, source = _sync_redis(request), params.get("source", "auto")
    if first <= now.date() <= last:
        await sync(report.snapshot_contacts, client, tenant, now)
    record = None
    if source != "redis":
        try:
            record = record_of(request)
        except ApiError:
            if source == "record":
                raise
    try:
        found = await sync(archived.usage_from, client, record, tenant, first, last, now.date(), source)
    except RecordUnavailable as exc:
        raise unavailable(exc) from None
    plan = await sync(get_plan, client, tenant)
    found["rounding"] = plan.rounding
    found["budgets"] = [s.as_dict() for s in await sync(budgets.states, client, tenant, plan, now)]
    found["holds"] = [h.as_dict() for h in await sync(holds.tenant_holds, client, tenant)]
    return found


async def export_usage(request: web.Request) -> web.Response:
    found = await _report(request)
    name = f"usage-{found['from']}-{found['to']}.csv"
    return web.Response(text=report.usage_csv(found), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def get_usage_plan(request: web.Request) -> web.Response:
    client, tenant = _sync_redis(request), principal(request).tenant
    plan = await sync(get_plan, client, tenant)
    state = await sync(budgets.states, client, tenant, plan, datetime.now(UTC))
    return web.json_response({**plan.as_dict(), "state": [s.as_dict() for s in state]})


async def put_usage_plan(request: web.Request) -> web.Response:
    who = principal(request)
    try:
        plan, state = await sync(budgets.replace_plan, _sync_redis(request), who.tenant, body(request),
                                 actor=f"user:{who.user}", at=datetime.now(UTC))
    except PlanError as exc:
        raise invalid(exc.field, exc.message) from None
    await trail.record(redis_of(request), who.tenant, "usage.plan", actor=who.user, token_id=who.token_id)
    return web.json_response({**plan.as_dict(), "state": [s.as_dict() for s in state]})


async def list_holds(request: web.Request) -> web.Response:
    client, tenant = _sync_redis(request), principal(request).tenant
    found = await sync(holds.tenant_holds, client, tenant)
    ids = await sync(CampaignStore(client).ids, tenant)
    for campaign in ids:
        hold = await sync(holds.campaign_hold, client, tenant, campaign)
        if hold is not None:
            found.append(hold)
    return web.json_response({"items": [h.as_dict() for h in found]})


async def _campaign_or_404(request: web.Request) -> str:
    campaign = request.match_info["id"]
    if await sync(CampaignStore(_sync_redis(request)).get, principal(request).tenant, campaign) is None:
        raise not_found("campaign")
    return campaign


async def suspend_campaign(request: web.Request) -> web.Response:
    who, campaign = principal(request), await _campaign_or_404(request)
    try:
        hold = await sync(holds.suspend_campaign, _sync_redis(request), who.tenant, campaign,
                          reason=body(request)["reason"], by=f"user:{who.user}", at=datetime.now(UTC))
    except holds.HoldError as exc:
        raise invalid("reason", exc.message, code=exc.code) from None
    await trail.record(redis_of(request), who.tenant, "campaign.suspend", actor=who.user, token_id=who.token_id,
                       campaign=campaign)
    return web.json_response(hold.as_dict())


async def unsuspend_campaign(request: web.Request) -> web.Response:
    who, campaign = principal(request), await _campaign_or_404(request)
    lifted = await sync(holds.resume_campaign, _sync_redis(request), who.tenant, campaign,
                        reason=body(request).get("reason") or "lifted", by=f"user:{who.user}", at=datetime.now(UTC))
    if not lifted:
        raise ApiError(409, "not_suspended", "this campaign is not suspended")
    await trail.record(redis_of(request), who.tenant, "campaign.unsuspend", actor=who.user, token_id=who.token_id,
                       campaign=campaign)
    return web.json_response({"campaign": campaign, "suspended": False})


ROUTES = [
    Route("GET", "/v1/usage", get_usage, "Usage per day and in total for a period (attempts, connected calls, "
          "billable and AI-agent minutes, recordings, contacts stored), budgets and holds", "usage.read",
          response=USAGE_OUT, query=USAGE_QUERY, tag="usage", errors=_RECORD_ERRORS),
    Route("GET", "/v1/usage/export", export_usage, "Usage for a period as CSV (per day and campaign)", "usage.read",
          content_type="text/csv", query=USAGE_QUERY, tag="usage", errors=_RECORD_ERRORS),
    Route("GET", "/v1/usage/plan", get_usage_plan, "The billing rounding rule and budgets, with their use so far",
          "usage.read", response=PLAN_OUT, tag="usage"),
    Route("PUT", "/v1/usage/plan", put_usage_plan, "Replace the rounding rule and budgets (alerts, hard stop)",
          "usage.write", body=PLAN_SCHEMA, response=PLAN_OUT, tag="usage"),
    Route("GET", "/v1/holds", list_holds, "Kill-switch holds in force (tenant suspended, budget hard stop, "
          "suspended campaigns), with who and why", "usage.read", response=HOLDS_OUT, tag="usage"),
    Route("POST", "/v1/campaigns/{id}/suspend", suspend_campaign, "Suspend a campaign at once: no new call from any "
          "dialer process; calls up finish (reason required, audited)", "campaigns.suspend", body=REASON_IN,
          response=HOLD, resource="campaign", tag="campaigns"),
    Route("POST", "/v1/campaigns/{id}/unsuspend", unsuspend_campaign, "Lift a campaign's suspension",
          "campaigns.suspend", body=UNSUSPEND_IN, response={"type": "object"}, resource="campaign",
          tag="campaigns", errors={"409": "the campaign is not suspended"}),
]
