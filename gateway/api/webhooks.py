"""Webhook endpoints of a tenant, their secrets (shown once, rotated with overlap) and the dead-letter list.

Deliveries are made by the `dialer webhooks` worker (dialer/webhooks/delivery.py); these routes only
manage what it reads. Endpoint URLs are checked against the operator's address policy at registration
(https only, no private or loopback address literal) and every resolved address again at each delivery.
"""

from __future__ import annotations

import time
from datetime import timedelta

from aiohttp import web

from dialer.webhooks.delivery import dead_letters, redeliver
from dialer.webhooks.endpoints import EndpointError, EndpointStore
from dialer.webhooks.events import EVENT_TYPES
from dialer.webhooks.sealing import SecretBoxError
from dialer.webhooks.settings import address_policy, secret_box
from gateway import trail
from gateway.api.schemas import STAMP, listing
from gateway.errors import ApiError, invalid, not_found
from gateway.routing import CONFIG, Route, body, principal, redis_of

ENDPOINT_IN = {
    "type": "object",
    "required": ["url", "events"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "minLength": 8, "maxLength": 2000, "description": "https://..."},
        "events": {"type": "array", "minItems": 1, "maxItems": len(EVENT_TYPES),
                   "items": {"type": "string", "enum": list(EVENT_TYPES)}},
        "description": {"type": "string", "maxLength": 200},
    },
}
ENDPOINT_CHANGE = {k: v for k, v in ENDPOINT_IN.items() if k != "required"}  # every field optional
ENDPOINT_OUT = {
    "type": "object",
    "required": ["id", "url", "events", "created_at", "secrets"],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
        "created_at": STAMP,
        "secrets": {"type": "array", "description": "valid secrets, newest first (never their value)",
                    "items": {"type": "object", "properties": {"expires_at": {**STAMP, "nullable": True}}}},
    },
}
WITH_SECRET = {**ENDPOINT_OUT, "properties": {**ENDPOINT_OUT["properties"], "secret": {
    "type": "string", "description": "whsec_...: shown only in this answer; sign-checks use it"}}}
ROTATE_IN = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"overlap_hours": {"type": "integer", "minimum": 0, "maximum": 168, "default": 24,
                                     "description": "how long the current secrets keep signing"}},
}
DEAD_OUT = {
    "type": "object",
    "properties": {k: {"type": "string"} for k in ("endpoint", "event_id", "type", "attempts", "last_status",
                                                     "last_error", "last_at")},
}
EVENT_TYPE_OUT = {"type": "object", "properties": {"type": {"type": "string"}, "description": {"type": "string"}}}

NO_KEY = {"503": "security.secret_key is unset: secrets cannot be stored"}


def store(request: web.Request) -> EndpointStore:
    config = request.app[CONFIG]
    try:
        box = secret_box(config)
    except SecretBoxError as exc:
        raise ApiError(503, "no_secret_key", str(exc)) from None
    return EndpointStore(redis_of(request), box, address_policy(config))


async def create_endpoint(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    try:
        endpoint, secret = await store(request).create(who.tenant, data["url"], data["events"],
                                                       data.get("description", ""))
    except EndpointError as exc:
        raise invalid(exc.field, str(exc)) from None
    await trail.record(redis_of(request), who.tenant, "webhook.create", actor=who.user, token_id=who.token_id,
                       endpoint=endpoint.id, url=endpoint.url)
    return web.json_response({**endpoint.public(), "secret": secret}, status=201)


async def list_endpoints(request: web.Request) -> web.Response:
    endpoints = await store(request).list(principal(request).tenant)
    return web.json_response({"items": [e.public() for e in endpoints]})


async def get_endpoint(request: web.Request) -> web.Response:
    endpoint = await store(request).get(principal(request).tenant, request.match_info["endpoint_id"])
    if endpoint is None:
        raise not_found("webhook endpoint")
    return web.json_response(endpoint.public())


async def update_endpoint(request: web.Request) -> web.Response:
    who, data, endpoint_id = principal(request), body(request), request.match_info["endpoint_id"]
    try:
        endpoint = await store(request).update(who.tenant, endpoint_id, url=data.get("url"), events=data.get("events"),
                                               description=data.get("description"))
    except EndpointError as exc:
        raise invalid(exc.field, str(exc)) from None
    if endpoint is None:
        raise not_found("webhook endpoint")
    await trail.record(redis_of(request), who.tenant, "webhook.update", actor=who.user, token_id=who.token_id,
                       endpoint=endpoint_id, url=endpoint.url, events=",".join(endpoint.events))
    return web.json_response(endpoint.public())


async def delete_endpoint(request: web.Request) -> web.Response:
    who, endpoint_id = principal(request), request.match_info["endpoint_id"]
    if not await store(request).delete(who.tenant, endpoint_id):
        raise not_found("webhook endpoint")
    await trail.record(redis_of(request), who.tenant, "webhook.delete", actor=who.user, token_id=who.token_id,
                       endpoint=endpoint_id)
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    who, endpoint_id = principal(request), request.match_info["endpoint_id"]
    overlap = timedelta(hours=body(request).get("overlap_hours", 24))
    rotated = await store(request).rotate(who.tenant, endpoint_id, overlap)
    if rotated is None:
        raise not_found("webhook endpoint")
    endpoint, secret = rotated
    await trail.record(redis_of(request), who.tenant, "webhook.rotate", actor=who.user, token_id=who.token_id,
                       endpoint=endpoint_id, overlap_hours=int(overlap.total_seconds() // 3600))
    return web.json_response({**endpoint.public(), "secret": secret})


async def list_dead(request: web.Request) -> web.Response:
    return web.json_response({"items": await dead_letters(redis_of(request), principal(request).tenant)})


async def redeliver_dead(request: web.Request) -> web.Response:
    who = principal(request)
    endpoint_id, event_id = request.match_info["endpoint_id"], request.match_info["event_id"]
    if not await redeliver(redis_of(request), who.tenant, endpoint_id, event_id, time.time()):
        raise not_found("dead-lettered delivery")
    await trail.record(redis_of(request), who.tenant, "webhook.redeliver", actor=who.user, token_id=who.token_id,
                       endpoint=endpoint_id, event_id=event_id)
    return web.json_response({"endpoint": endpoint_id, "event_id": event_id, "state": "pending"}, status=202)


async def event_types(request: web.Request) -> web.Response:
    return web.json_response({"items": [{"type": k, "description": v} for k, v in EVENT_TYPES.items()]})


_NOT_FOUND = {"404": "no such endpoint (or another tenant's)"}

ROUTES = [
    Route("GET", "/v1/webhook-event-types", event_types, "The event types an endpoint can subscribe to",
          "webhooks.read", response=listing(EVENT_TYPE_OUT), tag="webhooks", audited=False),
    Route("POST", "/v1/webhooks", create_endpoint, "Register an endpoint; its signing secret is shown once",
          "webhooks.write", body=ENDPOINT_IN, response=WITH_SECRET, status=201, tag="webhooks", errors=NO_KEY),
    Route("GET", "/v1/webhooks", list_endpoints, "The tenant's endpoints", "webhooks.read",
          response=listing(ENDPOINT_OUT), tag="webhooks", errors=NO_KEY),
    Route("GET", "/v1/webhooks/{endpoint_id}", get_endpoint, "One endpoint", "webhooks.read",
          response=ENDPOINT_OUT, resource="webhook", tag="webhooks", errors={**_NOT_FOUND, **NO_KEY}),
    Route("PATCH", "/v1/webhooks/{endpoint_id}", update_endpoint,
          "Change an endpoint's URL, events or description (queued deliveries go to the new URL)", "webhooks.write",
          body=ENDPOINT_CHANGE, response=ENDPOINT_OUT, resource="webhook", tag="webhooks",
          errors={**_NOT_FOUND, **NO_KEY}),
    Route("DELETE", "/v1/webhooks/{endpoint_id}", delete_endpoint, "Remove an endpoint and its pending deliveries",
          "webhooks.write", status=204, resource="webhook", tag="webhooks", errors={**_NOT_FOUND, **NO_KEY}),
    Route("POST", "/v1/webhooks/{endpoint_id}/rotate", rotate_secret,
          "New signing secret (shown once); the current ones keep signing for overlap_hours", "webhooks.write",
          body=ROTATE_IN, response=WITH_SECRET, resource="webhook", tag="webhooks", errors={**_NOT_FOUND, **NO_KEY}),
    Route("GET", "/v1/webhook-dead-letters", list_dead, "Deliveries given up after the retry period, oldest first",
          "webhooks.read", response=listing(DEAD_OUT), tag="webhooks"),
    Route("POST", "/v1/webhook-dead-letters/{endpoint_id}/{event_id}/redeliver", redeliver_dead,
          "Try a dead-lettered delivery again (at the tail of its queue, with a fresh retry period)",
          "webhooks.write", status=202, resource="webhook_dead_letter", tag="webhooks",
          errors={"404": "no such dead-lettered delivery (or another tenant's)"}),
]
