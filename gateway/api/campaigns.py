"""Campaigns: create, read, configure, and the lifecycle actions (start, pause, resume, stop, archive)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer import holds
from dialer.campaigns import CONFIG_SCHEMA, CONTROL_ACTIONS, STATUSES, CampaignError, CampaignStore
from dialer.contacts.store import Keys
from dialer.runtime import queue_catalog
from dialer.runtime.progress import campaign_progress
from gateway import clock, trail
from gateway.api.schemas import STAMP, listing
from gateway.errors import ApiError, not_found
from gateway.routing import SERVICES, Route, body, principal, query, redis_of
from gateway.validation import partial

CAMPAIGN: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "name"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "created_at": STAMP,
        "created_by": {"type": "string"},
        "updated_at": STAMP,
        "updated_by": {"type": "string"},
        **CONFIG_SCHEMA["properties"],
        "holds": {"type": "array", "items": {"type": "object", "additionalProperties": {}},
                  "description": "kill-switch holds stopping its dialing (dialer/holds.py): code, reason, by, at"},
    },
}
SUSPENDED = {"403": "tenant_suspended: the operator suspended the tenant (the reason is in the message)"}
CHANGES: dict[str, Any] = partial(CONFIG_SCHEMA)
CHANGES = {**CHANGES, "properties": {k: ({**v, "nullable": True} if k not in ("name",) else v)
                                     for k, v in CONFIG_SCHEMA["properties"].items()}}
_COUNT = {"type": "integer"}
PROGRESS: dict[str, Any] = {
    "type": "object",
    "description": "with ?progress=true: how far the campaign got (dialer/runtime/progress.py)",
    "properties": {
        "done": _COUNT, "remaining": _COUNT, "never_callable": _COUNT, "attempts": _COUNT, "answered": _COUNT,
        "abandoned": _COUNT, "denials": _COUNT,
        "abandon_rate": {"type": "number", "description": "abandoned / (answered + abandoned), whole campaign"},
        "final_reasons": {"type": "object", "additionalProperties": _COUNT},
        "top_denials": {"type": "array", "items": {"type": "object", "properties": {
            "reason": {"type": "string"}, "count": _COUNT}}},
    },
}
LISTED: dict[str, Any] = {**CAMPAIGN, "properties": {**CAMPAIGN["properties"], "progress": PROGRESS}}
HISTORY: dict[str, Any] = listing({
    "type": "object",
    "properties": {k: {"type": "string"} for k in ("action", "from", "to", "by", "at")},
})


def store(request: web.Request) -> CampaignStore:
    return request.app[SERVICES]["campaigns"]


async def run(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a synchronous store call off the event loop, mapping its errors to API errors."""
    try:
        return await asyncio.to_thread(func, *args, **kwargs)
    except KeyError:
        raise not_found("campaign") from None
    except CampaignError as exc:
        status = 422 if exc.code == "invalid_field" else 409
        raise ApiError(status, exc.code, str(exc), field=exc.field, rule=exc.rule) from None


async def check_lists(request: web.Request, tenant: str, lists: Any, status: int = 422) -> None:
    """A campaign dials its lists' contacts: a list that does not exist (a typo) would make it start and
    "complete" at once with nobody called. Refuse it, naming the list (status 422 for a body, 409 at start)."""
    if not isinstance(lists, list) or not lists:
        return
    pipe = redis_of(request).pipeline(transaction=False)
    for list_id in lists:
        pipe.sismember(Keys(tenant).lists, list_id)
    for i, (list_id, known) in enumerate(zip(lists, await pipe.execute(), strict=True)):
        if not known:
            raise ApiError(status, "unknown_list", f"lists[{i}]: no list {list_id!r} in this tenant; import it "
                           "first (POST /v1/imports)", field=f"lists[{i}]", params={"list": list_id})


async def check_queue(request: web.Request, config: Any, status: int = 422) -> None:
    """A campaign on an Asterisk queue that no PBX has would have every answered call dropped: refuse it when the
    engines' listings of the PBXs' queues are fresh and none has it (dialer/runtime/queue_catalog.py). With no
    fresh listing (no engine running) it is saved, and the engine holds it (QUEUE_MISSING) if the queue is
    missing. The names of the queues that do exist are not given: other tenants' queues may be among them."""
    if not isinstance(config, dict) or config.get("agent_kind") == "ai" or not isinstance(config.get("queue"), str):
        return
    queue = config["queue"]
    found = queue_catalog.verdict(await redis_of(request).hgetall(queue_catalog.KEY), queue,
                                  (await clock.now(request)).timestamp())
    if found == queue_catalog.MISSING:
        raise ApiError(status, "unknown_queue", f"queue: no Asterisk queue {queue!r} on the PBX (names are "
                       "matched exactly, letter case included); ask your PBX administrator for the queue's name",
                       field="queue", params={"queue": queue})


async def with_holds(request: web.Request, tenant: str, campaigns: list[Any]) -> list[dict[str, Any]]:
    """Each campaign's JSON with the holds that stop its dialing (tenant suspended, budget, its own suspension)."""
    pipe = redis_of(request).pipeline(transaction=False)
    pipe.mget([holds.operator_key(tenant), holds.budget_key(tenant)])
    for c in campaigns:
        pipe.get(holds.campaign_hold_key(tenant, c.id))
    raw = await pipe.execute() if campaigns else [[None, None]]
    tenant_wide = [h.as_dict() for h in (holds.parse_hold(x) for x in raw[0]) if h is not None]
    return [{**c.as_dict(), "holds": tenant_wide + [h.as_dict() for h in [holds.parse_hold(own, c.id)] if h]}
            for c, own in zip(campaigns, raw[1:], strict=True)]


async def list_campaigns(request: web.Request) -> web.Response:
    """Every campaign of the tenant, finished and archived ones included (filter with ?status=), with the
    kill-switch holds stopping each one's dialing."""
    tenant = principal(request).tenant
    found = await run(store(request).list, tenant, query(request).get("status"))
    items = await with_holds(request, tenant, found)
    if query(request).get("progress"):
        sync = request.app[SERVICES]["sync_redis"]
        for item in items:
            item["progress"] = await asyncio.to_thread(campaign_progress, sync, tenant, item["id"], item["status"],
                                                       list(item.get("lists") or []))
    return web.json_response({"items": items})


async def create_campaign(request: web.Request) -> web.Response:
    who = principal(request)
    await check_lists(request, who.tenant, body(request).get("lists"))
    await check_queue(request, body(request))
    created = await run(store(request).create, who.tenant, body(request), by=who.user, at=datetime.now(UTC))
    await trail.record(redis_of(request), who.tenant, "campaign.create", actor=who.user, token_id=who.token_id,
                       campaign=created.id)
    return web.json_response(created.as_dict(), status=201)


async def get_campaign(request: web.Request) -> web.Response:
    found = await run(store(request).get, principal(request).tenant, request.match_info["id"])
    if found is None:
        raise not_found("campaign")
    return web.json_response((await with_holds(request, principal(request).tenant, [found]))[0])


async def change_campaign(request: web.Request) -> web.Response:
    who, changes = principal(request), body(request)
    await check_lists(request, who.tenant, changes.get("lists"))
    if "queue" in changes or "agent_kind" in changes:
        current = await run(store(request).get, who.tenant, request.match_info["id"])
        if current is not None:
            await check_queue(request, {**current.config, **changes})
    updated = await run(store(request).update, who.tenant, request.match_info["id"], changes, by=who.user,
                        at=datetime.now(UTC))
    await trail.record(redis_of(request), who.tenant, "campaign.configure", actor=who.user, token_id=who.token_id,
                       campaign=updated.id, fields=sorted(changes))
    return web.json_response(updated.as_dict())


async def campaign_history(request: web.Request) -> web.Response:
    tenant, campaign_id = principal(request).tenant, request.match_info["id"]
    if await run(store(request).get, tenant, campaign_id) is None:
        raise not_found("campaign")
    return web.json_response({"items": await run(store(request).history, tenant, campaign_id)})


def control_handler(action: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        who = principal(request)
        if action in ("start", "resume"):
            current = await run(store(request).get, who.tenant, request.match_info["id"])
            if current is None:
                raise not_found("campaign")
            await check_lists(request, who.tenant, current.as_dict().get("lists"), status=409)
            await check_queue(request, current.config, status=409)
        moved = await run(store(request).control, who.tenant, request.match_info["id"], action, by=who.user,
                          at=datetime.now(UTC))
        await trail.record(redis_of(request), who.tenant, f"campaign.{action}", actor=who.user, token_id=who.token_id,
                           campaign=moved.id, status=moved.status)
        return web.json_response(moved.as_dict())

    handler.__name__ = f"{action}_campaign"
    return handler


ROUTES = [
    Route("GET", "/v1/campaigns", list_campaigns, "List the tenant's campaigns, finished ones included",
          "campaigns.read", response=listing(LISTED),
          query={"status": {"type": "string", "enum": list(STATUSES)},
                 "progress": {"type": "boolean", "description": "add each campaign's progress: done, remaining, "
                                                               "never callable, answers, abandon rate, denials"}},
          tag="campaigns"),
    Route("POST", "/v1/campaigns", create_campaign, "Create a campaign (as a draft)", "campaigns.write",
          body=CONFIG_SCHEMA, response=CAMPAIGN, status=201, tag="campaigns", new_work=True, errors=SUSPENDED),
    Route("GET", "/v1/campaigns/{id}", get_campaign, "One campaign", "campaigns.read", response=CAMPAIGN,
          resource="campaign", tag="campaigns"),
    Route("PATCH", "/v1/campaigns/{id}", change_campaign,
          "Change a campaign's configuration (draft, scheduled or paused); null removes a field",
          "campaigns.write", body=CHANGES, response=CAMPAIGN, resource="campaign", tag="campaigns", new_work=True,
          errors=SUSPENDED),
    Route("GET", "/v1/campaigns/{id}/history", campaign_history, "Lifecycle moves, newest first, with who did them",
          "campaigns.read", response=HISTORY, resource="campaign", tag="campaigns"),
] + [
    Route("POST", f"/v1/campaigns/{{id}}/{action}", control_handler(action), f"{action.capitalize()} the campaign",
          "campaigns.control", response=CAMPAIGN, resource="campaign", tag="campaigns",
          new_work=action in ("start", "resume"), errors=SUSPENDED if action in ("start", "resume") else {})
    for action in CONTROL_ACTIONS
]
