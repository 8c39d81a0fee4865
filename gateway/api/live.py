"""Live campaign figures: a snapshot route and Server-Sent Event streams for the dashboard.

A stream sends an `event: stats` whenever a campaign's snapshot changes. It wakes on the engine's
pub/sub notice (dialer/livestats.py) and also re-reads every POLL_SECONDS, so it is never more than
a second behind even if a notice is lost. Tokens travel in the Authorization header (the dashboard
reads the stream with fetch, not EventSource), so they never appear in URLs or access logs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer import holds, livestats
from dialer.campaigns import ACTIVE, campaign_key, campaigns_key
from dialer.runtime.servers import DRAINING_KEY, current_draining
from gateway.auth import AuthStore
from gateway.errors import not_found
from gateway.routing import SERVICES, STOPPING, Route, bearer, principal, redis_of

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
REAUTH_SECONDS = 5.0  # an open stream re-checks its token: revoking it or the role ends the stream

_NUMBER = {"type": "number"}
SNAPSHOT: dict[str, Any] = {
    "type": "object",
    "required": ["campaign", "status", "gauges", "dispositions", "denials", "hourly"],
    "properties": {
        "campaign": {"type": "string"},
        "name": {"type": "string"},
        "status": {"type": "string"},
        "version": {"type": "integer"},
        "abandon_cap": _NUMBER,
        "updated_at": {"type": "string", "nullable": True},
        "gauges": {"type": "object", "properties": {g: _NUMBER for g in livestats.GAUGES}},
        "pacing": {"type": "object", "properties": {
            "reason": {"type": "string", "description": "the pacing decision's reason code (docs/pacing.md)"},
            "why": {"type": "string", "description": "why the campaign places only calls with an agent reserved "
                                                     "(over its abandon cap or its short-window guard); empty "
                                                     "otherwise"},
            "limited_by": {"type": "string",
                           "description": "the ceiling that cut the last decision: trunk (channels full), cps "
                                          "(calls per second); empty otherwise"}}},
        "dispositions": {"type": "object", "additionalProperties": _NUMBER},
        "denials": {"type": "object", "additionalProperties": _NUMBER},
        "hourly": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
        "servers_draining": {"type": "array", "items": {"type": "object", "properties": {
            "server": {"type": "string"}, "message": {"type": "string"}, "since": _NUMBER}}},
        "holds": {"type": "array", "description": "kill-switch holds stopping this campaign's dialing (tenant "
                                                  "suspended, budget used up, campaign suspended): code and text",
                  "items": {"type": "object", "additionalProperties": {}}},
    },
}


async def snapshot(redis: Any, tenant: str, campaign: str, at: datetime) -> dict[str, Any] | None:
    """One campaign's status and figures, or None when the tenant has no such campaign."""
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(campaign_key(tenant, campaign), ["status", "config", "version"])
    pipe.hgetall(DRAINING_KEY)
    pipe.mget([holds.operator_key(tenant), holds.budget_key(tenant), holds.campaign_hold_key(tenant, campaign)])
    livestats.queue_snapshot_reads(pipe, tenant, campaign, at)
    raw = await pipe.execute()
    status, config, version = raw[0]
    held = [h.as_dict() for h in (holds.parse_hold(x) for x in raw[2]) if h is not None]
    # Asterisk servers refusing calls (shutting down, restarting: dialer/runtime/servers.py): shared infrastructure,
    # shown on every campaign because no campaign dials there meanwhile. Only the server's name and Asterisk's words.
    draining = [{"server": str(d.get("server", "")), "message": str(d.get("message", "")),
                 "since": float(d.get("since", 0))}
                for d in current_draining(raw[1], at.timestamp()).values()]
    if status is None:
        return None
    settings = json.loads(config or "{}")
    # version moves with every lifecycle move or edit, so a pause then resume between two reads
    # still reaches the dashboard as a change.
    return {"campaign": campaign, "name": settings.get("name", ""), "status": status, "version": int(version or 0),
            "abandon_cap": settings.get("abandon_cap", 0.03), **livestats.build_snapshot(raw[3:], at),
            "servers_draining": sorted(draining, key=lambda d: d["server"]), "holds": held}


async def campaign_stats(request: web.Request) -> web.Response:
    found = await snapshot(redis_of(request), principal(request).tenant, request.match_info["id"], datetime.now(UTC))
    if found is None:
        raise not_found("campaign")
    return web.json_response(found)


async def _still_allowed(request: web.Request) -> bool:
    token = bearer(request)
    who = await AuthStore(redis_of(request)).authenticate(token) if token else None
    return who is not None and who.tenant == principal(request).tenant and who.can("stats.read")


def _finished(request: web.Request) -> bool:
    """The client went away, or the server is shutting down."""
    transport = request.transport
    return transport is None or transport.is_closing() or request.app[STOPPING].is_set()


async def _stream(request: web.Request, tenant: str, ids: Callable[[], Awaitable[list[str]]],
                  subscribe: Callable[[Any], Awaitable[None]]) -> web.StreamResponse:
    redis = redis_of(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    pubsub = request.app[SERVICES].get("live_redis", redis).pubsub()  # its own pool (gateway/pool.py)
    await subscribe(pubsub)
    last: dict[str, str] = {}
    last_write = last_auth = time.monotonic()
    try:
        await response.prepare(request)  # the client may be gone already (a page left at once)
        await response.write(b"retry: 1000\n\n")
        while not _finished(request):
            now = datetime.now(UTC)
            current = await ids()
            for campaign in current:
                snap = await snapshot(redis, tenant, campaign, now)
                if snap is None:
                    continue
                text = json.dumps(snap, sort_keys=True, separators=(",", ":"))
                if last.get(campaign) != text:
                    last[campaign] = text
                    await response.write(f"event: stats\ndata: {text}\n\n".encode())
                    last_write = time.monotonic()
            for gone in set(last) - set(current):
                # It left the active set (completed, archived): one last snapshot, so an open page shows where it
                # ended instead of its last active status (STOPPING) with figures that no longer move.
                del last[gone]
                snap = await snapshot(redis, tenant, gone, now)
                if snap is not None:
                    text = json.dumps(snap, sort_keys=True, separators=(",", ":"))
                    await response.write(f"event: stats\ndata: {text}\n\n".encode())
                    last_write = time.monotonic()
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
            for _ in range(1000):  # coalesce a burst of notices into one re-read (bounded: a flood cannot starve it)
                if message is None:
                    break
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0)
            clock = time.monotonic()
            if clock - last_auth >= REAUTH_SECONDS:
                last_auth = clock
                if not await _still_allowed(request):
                    await response.write(b"event: revoked\ndata: {}\n\n")
                    break
            if clock - last_write >= KEEPALIVE_SECONDS:
                await response.write(b": keep-alive\n\n")
                last_write = clock
    except ConnectionResetError:
        pass  # the client went away mid-write
    finally:
        await pubsub.aclose()
    return response


async def campaign_events(request: web.Request) -> web.StreamResponse:
    tenant, campaign = principal(request).tenant, request.match_info["id"]
    redis = redis_of(request)
    if not await redis.exists(campaign_key(tenant, campaign)):
        raise not_found("campaign")

    async def ids() -> list[str]:
        return [campaign]

    async def subscribe(pubsub: Any) -> None:
        await pubsub.subscribe(livestats.channel(tenant, campaign))

    return await _stream(request, tenant, ids, subscribe)


async def tenant_events(request: web.Request) -> web.StreamResponse:
    tenant = principal(request).tenant
    redis = redis_of(request)

    async def ids() -> list[str]:
        all_ids = await redis.zrange(campaigns_key(tenant), 0, -1)
        if not all_ids:
            return []
        pipe = redis.pipeline(transaction=False)
        for campaign in all_ids:
            pipe.hget(campaign_key(tenant, campaign), "status")
        statuses = await pipe.execute()
        return [c for c, s in zip(all_ids, statuses, strict=True) if s in ACTIVE]

    async def subscribe(pubsub: Any) -> None:
        # Campaign ids never contain ':' or glob characters, so this pattern stays inside the tenant.
        await pubsub.psubscribe(livestats.channel(tenant, "*"))

    return await _stream(request, tenant, ids, subscribe)


ROUTES = [
    Route("GET", "/v1/campaigns/{id}/stats", campaign_stats, "A campaign's live figures now", "stats.read",
          response=SNAPSHOT, resource="campaign", tag="live"),
    Route("GET", "/v1/campaigns/{id}/events", campaign_events,
          "Server-Sent Events: `stats` with the snapshot each time it changes (at most 1 s behind)",
          "stats.read", content_type="text/event-stream", resource="campaign", tag="live"),
    Route("GET", "/v1/stream", tenant_events,
          "Server-Sent Events for all the tenant's active campaigns (scheduled, running, paused, stopping)",
          "stats.read", content_type="text/event-stream", tag="live"),
]
