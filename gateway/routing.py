"""The route table: each API route declared once, as data, with what it needs.

A Route names its method, path, permission, request schema and response schema. `endpoint()`
wraps the handler with the checks every route shares, in this order: bearer token (401), role
(403), JSON body (400 bad JSON, 422 wrong type / unknown field / missing field). Handlers then
read `principal(request)` and `body(request)` and look up only keys under their tenant, so another
tenant's id is simply not found (404). The OpenAPI document is generated from the same table.

Route modules (gateway/api/*.py) each export ROUTES; gateway/app.py lists the modules. The
integration step adds lists, gate, registry, audit and export modules the same way.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dialer.holds import CODES as HOLD_CODES
from dialer.holds import TENANT_SUSPENDED, operator_key
from gateway import audit_policy, guard
from gateway.auth import OPERATOR_PERMISSIONS, AuthStore, Principal, listed, token_id_of
from gateway.errors import ApiError, Handler, bad_json, forbidden, invalid, not_found, unauthorized
from gateway.sessions import COOKIE, CSRF_HEADER, SAFE_METHODS, Session, SessionPolicy, SessionStore, csrf_ok
from gateway.validation import Schema, check_text, validate

REDIS: web.AppKey[Any] = web.AppKey("redis", object)
CONFIG: web.AppKey[Any] = web.AppKey("config", object)
SERVICES: web.AppKey[dict[str, Any]] = web.AppKey("services", dict)
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("stopping", asyncio.Event)  # set at shutdown: streams end
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
BODY: web.RequestKey[dict[str, Any]] = web.RequestKey("body", dict)
QUERY: web.RequestKey[dict[str, Any]] = web.RequestKey("query", dict)
SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    permission: str | None  # None: public (no token)
    body: Schema | None = None
    response: Schema | None = None  # JSON body of the success answer
    status: int = 200
    content_type: str = "application/json"  # of the success answer
    query: dict[str, Schema] = field(default_factory=dict)
    # For bodies that are not JSON (a streamed multipart list upload): the OpenAPI requestBody content,
    # e.g. {"multipart/form-data": {"schema": ...}}. The handler reads the body itself.
    raw_body: dict[str, Any] | None = None
    # The kind of tenant-owned resource the path names ("campaign", "user", "token"): the isolation tests
    # need a factory for each kind (tests/test_gateway_routes.py acme_resource); they create one in tenant A
    # and ask for it with tenant B's token, expecting 404.
    resource: str | None = None
    tag: str = "api"
    audited: bool = True  # record token use (or count it: gateway/audit_policy.py)
    # Answers beyond the common ones, for the OpenAPI document: {"404": "no such contact", "503": "..."}.
    errors: dict[str, str] = field(default_factory=dict)
    # Reachable by a console session still at its second-factor enrolment stage (gateway/sessions.py).
    enrolment: bool = False
    # Starts or extends dialing work (create or start a campaign, import contacts): refused with 403
    # tenant_suspended while the operator has suspended the tenant (dialer/holds.py). Stopping work, opt-outs,
    # data-subject requests and reads are never refused for it.
    new_work: bool = False
    # A platform-level route (the installation's operator, not a tenant): besides the permission, the caller's
    # tenant must be listed in the permission's setting (gateway.auth.OPERATOR_PERMISSIONS); 403 otherwise.
    operator: bool = False


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def body(request: web.Request) -> dict[str, Any]:
    return request.get(BODY) or {}


def query(request: web.Request) -> dict[str, Any]:
    return request.get(QUERY) or {}


def redis_of(request: web.Request) -> Any:
    return request.app[REDIS]


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


# Path values become parts of Redis keys: letters, digits and _ . @ - only, so a value such as
# "c1:dnc" can never address a neighbouring key. Anything else is answered as absent.
PATH_VALUE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def _coerce_query(name: str, raw: str, schema: Schema) -> Any:
    kind = schema.get("type", "string")
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            raise invalid(name, "expected an integer", code="wrong_type", rule="type",
                              params={"type": "integer"}) from None
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise invalid(name, "expected true or false", code="wrong_type", rule="type", params={"type": "boolean"})
        return raw == "true"
    return raw


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python would accept NaN and Infinity


async def _read_json(request: web.Request, schema: Schema) -> dict[str, Any]:
    raw = await request.read()  # aiohttp answers 413 beyond client_max_size
    if not raw:  # no body at all: no fields (blank lines are not JSON: 400, as any other bad body)
        if schema.get("required"):
            raise bad_json("a JSON body is required")
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise bad_json("the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise bad_json() from None
    check_text(data)
    validate(data, schema)
    return data


def session_policy(config: Any) -> SessionPolicy:
    return SessionPolicy(idle_seconds=60 * config["gateway.session_idle_minutes"],
                         max_seconds=3600 * config["gateway.session_max_hours"])


def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION)


def uses_session(request: web.Request) -> bool:
    """A console request: a session cookie and no Authorization header (a header always wins: machines)."""
    return not request.headers.get("Authorization") and bool(request.cookies.get(COOKIE))


async def caller(request: web.Request, enrolment: bool = False) -> Principal:
    """The person behind the session cookie (console), with the CSRF check for state-changing requests."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise unauthorized()
    store = SessionStore(request.app[REDIS], session_policy(request.app[CONFIG]))
    session = await store.get(cookie, time.time())
    who = await store.principal(session) if session else None
    if session is None or who is None:
        raise unauthorized("not signed in, or the session expired or was revoked: sign in again")
    if session.stage == "code" and not enrolment:  # single sign-on, second factor still to prove
        raise ApiError(401, "mfa_code_required", "enter the code from your authenticator app to finish signing in")
    if session.stage != "full" and not enrolment:
        raise ApiError(401, "mfa_enrolment_required", "set up two-factor sign-in first")
    if request.method not in SAFE_METHODS and not csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "csrf", f"missing or wrong {CSRF_HEADER} header: reload the page and try again")
    request[SESSION] = session
    return who


async def _authenticate(request: web.Request, route: Route) -> None:
    """Bearer token (401), failure rate limit (429, gateway/guard.py), role (403); then audit or count the
    use (gateway/audit_policy.py). Refusals are audited."""
    redis, config = request.app[REDIS], request.app[CONFIG]
    if uses_session(request):
        # Sessions have their own limits (sign-in lockout, gateway/api/signin.py); a session id is unguessable.
        who = await caller(request, route.enrolment)
        await _authorise(request, route, who)
        return
    token = bearer(request)
    token_id = token_id_of(token) if token else None
    address = audit_policy.client_address(request)
    limit = config["gateway.auth_failures_per_minute"]
    wait = await guard.blocked(redis, address, token_id, limit)
    if wait:
        raise ApiError(429, "too_many_failures", f"too many failed authentications from this address or for this "
                       f"token; retry in {wait} s", headers={"Retry-After": str(wait)})
    who = await AuthStore(redis).authenticate(token) if token else None
    if who is None:
        # Only a presented token is a guess; a request without one (a page before login) is not counted.
        reached = await guard.failed(redis, address, token_id, limit) if token else False
        await audit_policy.record_denied(redis, request, route.path, 401, "missing token" if not token
                                         else "invalid, expired or revoked token", token=token, token_id=token_id)
        if reached:
            await audit_policy.record_denied(redis, request, route.path, 429, "authentication failures over the "
                                             f"limit of {limit} a minute", token=token, token_id=token_id)
        raise unauthorized()
    await _authorise(request, route, who)


async def _authorise(request: web.Request, route: Route, who: Principal) -> None:
    """Role (403, audited), then audit or count the use (gateway/audit_policy.py)."""
    redis, config = request.app[REDIS], request.app[CONFIG]
    if not who.can(route.permission or ""):
        await audit_policy.record_denied(redis, request, route.path, 403, f"role {who.role} lacks "
                                         f"{route.permission}", token_id=who.token_id, tenant=who.tenant,
                                         user=who.user)
        raise forbidden(route.permission or "")
    setting = OPERATOR_PERMISSIONS.get(route.permission or "") if route.operator else None
    if route.operator and (setting is None or not listed(config[setting], who.tenant)):
        await audit_policy.record_denied(redis, request, route.path, 403, f"tenant {who.tenant} is not an operator "
                                         f"tenant ({setting})", token_id=who.token_id, tenant=who.tenant,
                                         user=who.user)
        raise ApiError(403, "forbidden", "only the installation's operators may do this (an admin of a tenant listed "
                                         f"in setting {setting})")
    request[PRINCIPAL] = who
    if route.audited:
        await audit_policy.record_use(redis, request, route.method, route.path, who.tenant, who.user, who.token_id,
                                      config["gateway.audit_token_use_seconds"])


async def refuse_if_suspended(request: web.Request) -> None:
    """403 tenant_suspended, with the operator's reason, while the tenant is suspended."""
    raw = await request.app[REDIS].get(operator_key(request[PRINCIPAL].tenant))
    if raw is not None:
        hold = json.loads(raw)
        raise ApiError(403, "tenant_suspended", f"{HOLD_CODES[TENANT_SUSPENDED]} ({hold.get('reason', '')}, "
                       f"{hold.get('at', '')}): no new campaign, start or import until it is lifted")


def endpoint(route: Route) -> Handler:
    """The aiohttp handler for a route: authentication, authorisation and body checks, then the handler."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if route.permission is not None:
            await _authenticate(request, route)
            if route.new_work:
                await refuse_if_suspended(request)
        for value in request.match_info.values():
            if not PATH_VALUE.match(value):
                raise not_found()
        if route.query:
            params: dict[str, Any] = {}
            for key in request.query:
                if key not in route.query:
                    raise invalid(key, "unknown query parameter", code="unknown_field")
            for key, schema in route.query.items():
                if key in request.query:
                    check_text(request.query[key], key)
                    params[key] = _coerce_query(key, request.query[key], schema)
                    validate(params[key], schema, key)
            request[QUERY] = params
        if route.body is not None:
            request[BODY] = await _read_json(request, route.body)
        return await route.handler(request)

    handle.__name__ = route.handler.__name__
    return handle


def add_routes(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, endpoint(route))
