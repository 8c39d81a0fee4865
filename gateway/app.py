"""The gateway application: make_app(config, redis) wires the route table, middlewares and services.

`redis` is an asyncio client (redis.asyncio.Redis) created with decode_responses=True. The stores
shared with the engine (dialer/campaigns.py, dialer/facts.py) are synchronous; they get their own
synchronous client on the same URL and are called through asyncio.to_thread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from dialer import jobs, redisconn
from dialer.audit import AuditLog
from dialer.campaigns import CampaignStore
from dialer.config import Config
from dialer.facts import FactStore
from dialer.record import current as record_current
from gateway import metrics, openapi
from gateway.api import (
    admin,
    agents,
    audit,
    calls,
    campaigns,
    compliance,
    crm,
    exports,
    facts,
    gatecheck,
    lists,
    live,
    me,
    oidc,
    operator,
    registries,
    reports,
    signin,
    subject_requests,
    subjects,
    usage,
    webhooks,
)
from gateway.errors import Handler, error_middleware
from gateway.oidc import OidcClient
from gateway.proxies import forwarded_client, parse_trusted
from gateway.routing import CONFIG, REDIS, SERVICES, STOPPING, Route, add_routes

STATIC = Path(__file__).parent / "static"

# Route modules, in the order their routes are added. The integration step appends
# lists, gate, registry, audit, exports and subjects modules here (gateway/api/).
ROUTE_MODULES = (me, admin, campaigns, live, agents, facts, metrics, lists, gatecheck, registries, audit, exports,
                 subjects, calls, webhooks, crm, signin, oidc, compliance, usage, subject_requests, reports,
                 operator)

JSON_BODY_LIMIT = 1024 * 1024  # JSON bodies; list uploads stream multipart with their own limit


def api_routes() -> list[Route]:
    routes: list[Route] = []
    for module in ROUTE_MODULES:
        routes.extend(module.ROUTES)
    return routes


def openapi_route(routes: list[Route]) -> Route:
    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(openapi.document([*routes, doc_route]))

    doc_route = Route("GET", "/v1/openapi.json", openapi_json, "This OpenAPI document", None,
                      response={"type": "object"}, tag="meta", audited=False)
    return doc_route


# Pages and assets of the dashboard: not part of the API, so not in the OpenAPI document.
PAGE_PATHS = ("/", "/static/{filename}")

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Everything the dashboard needs is served from here; no inline scripts, no CDN.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.path.startswith("/v1/") or request.path in ("/metrics", "/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if request.secure or str(request.app[CONFIG]["gateway.public_origin"]).startswith("https://"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def make_app(config: Config, redis: Any, sync_redis: Any = None, live_redis: Any = None) -> web.Application:
    """`live_redis`: the client live streams take their connection from (gateway/pool.py); default `redis`."""
    trusted = parse_trusted(str(config["gateway.trusted_proxies"]))
    app = web.Application(middlewares=[forwarded_client(trusted), security_headers, error_middleware],
                          client_max_size=JSON_BODY_LIMIT)
    app[REDIS] = redis
    app[CONFIG] = config
    app[STOPPING] = asyncio.Event()
    own_sync = sync_redis is None
    jobs.configure(config.redis_url, config.jobs_url)  # the RQ queues' Redis (docs/redis.md)
    record_current.configure(config)  # the record, where contacts live (docs/record.md), opened on first use
    sync = sync_redis or redisconn.connect(config.redis_url, decode_responses=True, socket_connect_timeout=3)
    # Opt-outs and consent changes are audited in the same transaction as the write (dialer/audit_events.py).
    fact_store = FactStore(sync, audit=AuditLog(sync, config["security.secret_key"]))
    # Contacts, registries, the gate and RQ want bytes replies: their own client (gateway/api/support.py).
    raw = redisconn.connect(config.redis_url, socket_connect_timeout=3)
    app[SERVICES] = {"campaigns": CampaignStore(sync), "facts": fact_store, "sync_redis": sync,
                     "raw_redis": raw, "gate": None, "live_redis": live_redis or redis,
                     "oidc": OidcClient()}  # single sign-on providers' discovery and keys, cached

    routes = api_routes()
    add_routes(app, [*routes, openapi_route(routes)])
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)

    async def stopping(app: web.Application) -> None:
        app[STOPPING].set()

    async def close(app: web.Application) -> None:
        await app[SERVICES]["oidc"].close()
        if own_sync:
            sync.close()
        raw.close()
        record = app[SERVICES].get("record")
        if record is not None:
            await asyncio.to_thread(record.close)

    app.on_shutdown.append(stopping)
    app.on_cleanup.append(close)
    return app
