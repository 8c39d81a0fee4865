"""Console sign-in: password (+ TOTP) to a session cookie, second-factor enrolment, admin resets.

POST /v1/session signs in; GET tells the page who it is and its CSRF token; DELETE signs out. A user who
must have a second factor and has none gets an enrolment-stage session that reaches only GET/DELETE
/v1/session and the /v1/session/mfa routes (gateway/routing.py). Failed attempts count towards a lockout
per email (429 with Retry-After, audited); one client address is also limited per minute.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aiohttp import web

from gateway import credentials, trail
from gateway.accounts import AccountStore, LoginLimits, mfa_needed
from gateway.api.schemas import listing
from gateway.auth import AuthError, AuthStore, permissions_of
from gateway.errors import ApiError, invalid, not_found
from gateway.routing import CONFIG, Route, body, caller, principal, redis_of, session_of, session_policy
from gateway.sessions import COOKIE, Session, SessionStore

LOGIN: dict = {
    "type": "object",
    "required": ["email", "password"],
    "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "minLength": 3, "maxLength": 254},
        "password": {"type": "string", "minLength": 1, "maxLength": credentials.PASSWORD_MAX},
        "code": {"type": "string", "maxLength": 32, "description": "6-digit TOTP code or a recovery code"},
    },
}
SESSION: dict = {
    "type": "object",
    "required": ["stage"],
    "properties": {
        "tenant": {"type": "string"},
        "user": {"type": "string"},
        "role": {"type": "string"},
        "stage": {"type": "string", "enum": ["full", "enrol", "code", "none"],
                  "description": "none: not signed in (GET only); enrol: a second factor must be set up first; "
                                 "code: after single sign-on, the second-factor code is still needed "
                                 "(POST /v1/session/mfa/verify)"},
        "csrf_token": {"type": "string", "description": "send it in X-CSRF-Token on every non-GET request"},
        "expires_at": {"type": "string"},
        "mfa": {"type": "boolean"},
        "recovery_codes_left": {"type": "integer"},
        "permissions": {"type": "array", "items": {"type": "string"}},
    },
}
ENROLMENT: dict = {
    "type": "object",
    "required": ["secret", "otpauth_uri", "qr"],
    "properties": {"secret": {"type": "string"}, "otpauth_uri": {"type": "string"},
                   "qr": {"type": "string", "description": "SVG data URI of the otpauth URI"}},
}
CODE: dict = {
    "type": "object", "required": ["code"], "additionalProperties": False,
    "properties": {"code": {"type": "string", "minLength": 1, "maxLength": 32}},
}
ENROLLED: dict = {
    "type": "object", "required": ["recovery_codes", "csrf_token"],
    "properties": {"recovery_codes": {"type": "array", "items": {"type": "string"}, "description": "shown once"},
                   "csrf_token": {"type": "string"}},
}
NEW_PASSWORD: dict = {
    "type": "object", "required": ["password"], "additionalProperties": False,
    "properties": {"password": {"type": "string", "minLength": credentials.PASSWORD_MIN,
                                "maxLength": credentials.PASSWORD_MAX}},
}
CHANGE_PASSWORD: dict = {
    "type": "object", "required": ["current_password", "new_password"], "additionalProperties": False,
    "properties": {"current_password": {"type": "string", "minLength": 1, "maxLength": credentials.PASSWORD_MAX},
                   "new_password": {"type": "string", "minLength": credentials.PASSWORD_MIN,
                                    "maxLength": credentials.PASSWORD_MAX}},
}
POLICY: dict = {
    "type": "object", "required": ["mfa_required"], "additionalProperties": False,
    "properties": {"mfa_required": {"type": "boolean", "description": "every user needs a second factor "
                                                                       "(admins always do)"}},
}
DONE: dict = {"type": "object", "properties": {"ok": {"type": "boolean"}, "revoked_sessions": {"type": "integer"}}}
SESSION_ROW: dict = {"type": "object", "properties": {k: {"type": "string"} for k in
                                                      ("id", "stage", "created_at", "expires_at", "last_seen")}}


def _limits(request: web.Request) -> LoginLimits:
    config = request.app[CONFIG]
    return LoginLimits(max_failures=config["gateway.login_max_failures"],
                       window_seconds=60 * config["gateway.login_lockout_minutes"],
                       lockout_seconds=60 * config["gateway.login_lockout_minutes"])


def _secure(request: web.Request) -> bool:
    return request.secure or str(request.app[CONFIG]["gateway.public_origin"]).startswith("https://")


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _set_cookie(request: web.Request, response: web.StreamResponse, cookie: str) -> None:
    response.set_cookie(COOKIE, cookie, path="/", httponly=True, samesite="Strict", secure=_secure(request),
                        max_age=session_policy(request.app[CONFIG]).max_seconds)


def _too_many(message: str, seconds: int) -> ApiError:
    return ApiError(429, "too_many_attempts", message, headers={"Retry-After": str(max(1, seconds))})


def _same_origin(request: web.Request) -> bool:
    """A sign-in posted by another site's page is refused (login CSRF)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site form or fetch (those send Origin on POST)
    allowed = {f"{request.scheme}://{request.host}", str(request.app[CONFIG]["gateway.public_origin"]).rstrip("/")}
    return origin in allowed


async def _session_body(request: web.Request, session: Session, role: str) -> dict:
    accounts = AccountStore(redis_of(request))
    user = await AuthStore(redis_of(request)).user(session.tenant, session.user) or {}
    return {"tenant": session.tenant, "user": session.user, "role": role, "stage": session.stage,
            "csrf_token": session.csrf, "expires_at": _stamp(session.expires_at), "mfa": user.get("mfa") == "1",
            "recovery_codes_left": await accounts.recovery_left(session.tenant, session.user),
            "permissions": permissions_of(role, session.tenant, request.app[CONFIG])}


async def sign_in(request: web.Request) -> web.Response:
    data, redis = body(request), redis_of(request)
    if not _same_origin(request):
        raise ApiError(403, "csrf", "sign-in from another site's page is refused (behind a TLS proxy, set "
                                    "gateway.public_origin to the address browsers use)")
    accounts = AccountStore(redis, _limits(request))
    email, now = data["email"].strip(), time.time()
    if await accounts.address_over_limit(request.remote or "unknown"):
        raise _too_many("too many sign-in attempts from your address: wait a minute", 60)
    owner = await accounts.find(email)
    tenant, name = owner or ("", "")
    locked = await accounts.locked_for(email)
    if locked:
        if owner:
            await trail.record(redis, tenant, "login.refused", actor=name, reason="locked_out",
                               address=request.remote or "")
        raise _too_many(f"too many failed sign-ins: this account is locked for {locked // 60 + 1} min", locked)

    async def failed(reason: str, code: str, message: str) -> ApiError:
        now_locked = await accounts.note_failure(email)
        if owner:
            await trail.record(redis, tenant, "login.failure", actor=name, reason=reason,
                               address=request.remote or "")
            if now_locked:
                await trail.record(redis, tenant, "login.lockout", actor=name,
                                   minutes=accounts.limits.lockout_seconds // 60, address=request.remote or "")
        if now_locked:
            return _too_many("too many failed sign-ins: this account is now locked",
                             accounts.limits.lockout_seconds)
        return ApiError(401, code, message)

    store = AuthStore(redis)
    user = await store.user(tenant, name) if owner else None
    good = await asyncio.to_thread(credentials.verify_password, (user or {}).get("password"), data["password"])
    tenant_record = await store.tenant(tenant) if owner else None
    if not good or not user or not tenant_record or user.get("disabled") == "1":
        reason = "disabled" if good and user and user.get("disabled") == "1" else "password"
        raise await failed(reason, "bad_credentials", "wrong email or password")
    method = "password"
    if user.get("mfa") == "1":
        code = (data.get("code") or "").strip()
        if not code:
            raise ApiError(401, "mfa_required", "enter the 6-digit code from your authenticator app")
        kind = await accounts.check_second_factor(tenant, name, code, now)
        if kind is None:
            raise await failed("code", "bad_code", "wrong or already used code")
        method = f"password+{kind}"
        stage = "full"
    else:
        stage = "enrol" if mfa_needed(user["role"], tenant_record) else "full"
    await accounts.note_success(email)
    cookie, session = await SessionStore(redis, session_policy(request.app[CONFIG])).create(tenant, name, stage, now)
    await trail.record(redis, tenant, "login.success", actor=name, token_id=f"session:{session.id}", method=method,
                       stage=stage, address=request.remote or "")
    response = web.json_response(await _session_body(request, session, user["role"]))
    _set_cookie(request, response, cookie)
    return response


def _own_session(request: web.Request) -> Session:
    session = session_of(request)
    if session is None:
        raise ApiError(400, "not_a_session", "this needs a console session (sign in), not an API token")
    return session


async def current(request: web.Request) -> web.Response:
    """Public, so that a page opened while signed out learns it without an error: stage "none"."""
    if request.headers.get("Authorization"):
        raise ApiError(400, "not_a_session", "this needs a console session (sign in), not an API token")
    try:
        who = await caller(request, enrolment=True)
    except ApiError as exc:
        if exc.status == 401 and exc.code == "unauthorized":
            return web.json_response({"stage": "none"})
        raise
    return web.json_response(await _session_body(request, _own_session(request), who.role))


async def sign_out(request: web.Request) -> web.Response:
    session, who = _own_session(request), principal(request)
    await SessionStore(redis_of(request)).revoke(session.tenant, session.user, session.id)
    await trail.record(redis_of(request), who.tenant, "session.end", actor=who.user, token_id=who.token_id)
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def mfa_setup(request: web.Request) -> web.Response:
    session = _own_session(request)
    accounts = AccountStore(redis_of(request))
    user = await AuthStore(redis_of(request)).user(session.tenant, session.user) or {}
    if user.get("mfa") == "1":
        raise ApiError(409, "mfa_enrolled", "two-factor sign-in is already set up; an admin can reset it")
    secret = await accounts.start_enrolment(session.tenant, session.user)
    uri = credentials.otpauth_uri(secret, session.user, session.tenant)
    return web.json_response({"secret": secret, "otpauth_uri": uri, "qr": credentials.qr_svg_data_uri(uri)})


async def mfa_confirm(request: web.Request) -> web.Response:
    session, who = _own_session(request), principal(request)
    redis = redis_of(request)
    codes = await AccountStore(redis).confirm_enrolment(session.tenant, session.user, body(request)["code"],
                                                        time.time())
    if codes is None:
        raise invalid("code", "wrong code (or no set-up started): enter the code your app shows now",
                      rule="wrong_code")
    # A new session id once the second factor is proven (the enrolment-stage cookie stops working).
    sessions = SessionStore(redis, session_policy(request.app[CONFIG]))
    await sessions.revoke(session.tenant, session.user, session.id)
    cookie, fresh = await sessions.create(session.tenant, session.user, "full", time.time())
    await trail.record(redis, who.tenant, "mfa.enrol", actor=who.user, token_id=f"session:{fresh.id}")
    response = web.json_response({"recovery_codes": codes, "csrf_token": fresh.csrf})
    _set_cookie(request, response, cookie)
    return response


async def change_password(request: web.Request) -> web.Response:
    """A signed-in person changes their own password: the current one is checked (and a wrong one counts
    towards the lockout like a failed sign-in); their other sessions end."""
    session, who, data, redis = _own_session(request), principal(request), body(request), redis_of(request)
    accounts = AccountStore(redis, _limits(request))
    if await accounts.locked_for(session.user):
        raise _too_many("too many failed attempts: this account is locked", await accounts.locked_for(session.user))
    user = await AuthStore(redis).user(session.tenant, session.user) or {}
    if not await asyncio.to_thread(credentials.verify_password, user.get("password"), data["current_password"]):
        locked = await accounts.note_failure(session.user)
        await trail.record(redis, who.tenant, "password.change_refused", actor=who.user, token_id=who.token_id)
        if locked:
            await trail.record(redis, who.tenant, "login.lockout", actor=who.user,
                               minutes=accounts.limits.lockout_seconds // 60, address=request.remote or "")
            raise _too_many("too many failed attempts: this account is now locked", accounts.limits.lockout_seconds)
        raise invalid("current_password", "this is not your current password", rule="not_current_password")
    try:
        await accounts.set_password(session.tenant, session.user, data["new_password"])
    except AuthError as exc:
        raise invalid("new_password", str(exc).removeprefix("password: "), rule="password",
                      params=credentials.PASSWORD_RULE) from None
    sessions = SessionStore(redis)
    others = [s["id"] for s in await sessions.list(session.tenant, session.user) if s["id"] != session.id]
    for sid in others:
        await sessions.revoke(session.tenant, session.user, sid)
    await trail.record(redis, who.tenant, "password.change", actor=who.user, token_id=who.token_id,
                       revoked_sessions=len(others))
    return web.json_response({"ok": True, "revoked_sessions": len(others)})


async def _target(request: web.Request) -> str:
    name = request.match_info["name"]
    if not await AuthStore(redis_of(request)).user(principal(request).tenant, name):
        raise not_found("user")
    return name


async def reset_password(request: web.Request) -> web.Response:
    who, name, redis = principal(request), await _target(request), redis_of(request)
    accounts = AccountStore(redis)
    try:
        await accounts.set_password(who.tenant, name, body(request)["password"])
    except AuthError as exc:
        if "another tenant" in str(exc):
            raise ApiError(409, "email_taken", str(exc), field="name") from None
        field = "password" if "password" in str(exc) else "name"
        raise invalid(field, str(exc).removeprefix("password: "), rule="password" if field == "password" else None,
                      params=credentials.PASSWORD_RULE if field == "password" else None) from None
    await accounts.unlock(name)
    revoked = await SessionStore(redis).revoke_all(who.tenant, name)
    await trail.record(redis, who.tenant, "password.reset", actor=who.user, token_id=who.token_id, user=name,
                       revoked_sessions=revoked)
    return web.json_response({"ok": True, "revoked_sessions": revoked})


async def reset_mfa(request: web.Request) -> web.Response:
    who, name, redis = principal(request), await _target(request), redis_of(request)
    await AccountStore(redis).reset_mfa(who.tenant, name)
    revoked = await SessionStore(redis).revoke_all(who.tenant, name)
    await trail.record(redis, who.tenant, "mfa.reset", actor=who.user, token_id=who.token_id, user=name,
                       revoked_sessions=revoked)
    return web.json_response({"ok": True, "revoked_sessions": revoked})


async def list_sessions(request: web.Request) -> web.Response:
    name = await _target(request)
    return web.json_response({"items": await SessionStore(redis_of(request)).list(principal(request).tenant, name)})


async def revoke_sessions(request: web.Request) -> web.Response:
    who, name, redis = principal(request), await _target(request), redis_of(request)
    revoked = await SessionStore(redis).revoke_all(who.tenant, name)
    await trail.record(redis, who.tenant, "session.revoke", actor=who.user, token_id=who.token_id, user=name,
                       revoked_sessions=revoked)
    return web.json_response({"ok": True, "revoked_sessions": revoked})


async def get_policy(request: web.Request) -> web.Response:
    return web.json_response({"mfa_required": await AccountStore(redis_of(request)).mfa_required(
        principal(request).tenant)})


async def set_policy(request: web.Request) -> web.Response:
    who, required = principal(request), body(request)["mfa_required"]
    await AccountStore(redis_of(request)).set_mfa_required(who.tenant, required)
    await trail.record(redis_of(request), who.tenant, "mfa.policy", actor=who.user, token_id=who.token_id,
                       mfa_required=required)
    return web.json_response({"mfa_required": required})


_NOT_SESSION = {"400": "called with an API token: this needs a console session"}

ROUTES = [
    Route("POST", "/v1/session", sign_in, "Sign in to the console with email, password and (when set up) a code; "
          "sets the session cookie", None, body=LOGIN, response=SESSION, tag="auth", audited=False,
          errors={"401": "wrong email, password or code, or a code is needed (code mfa_required)",
                  "403": "posted from another site", "429": "too many attempts: locked out (Retry-After)"}),
    Route("GET", "/v1/session", current, "The console session: who, stage, CSRF token (stage none: signed out)",
          None, response=SESSION, tag="auth", audited=False, errors=_NOT_SESSION),
    Route("DELETE", "/v1/session", sign_out, "Sign out (ends the session server-side)", "me.read",
          response=DONE, tag="auth", enrolment=True, errors=_NOT_SESSION),
    Route("POST", "/v1/session/mfa/setup", mfa_setup, "Start TOTP enrolment: secret, otpauth URI, QR code",
          "me.read", response=ENROLMENT, tag="auth", enrolment=True, errors=_NOT_SESSION),
    Route("POST", "/v1/session/mfa/confirm", mfa_confirm, "Finish TOTP enrolment with a code; returns recovery "
          "codes (shown once)", "me.read", body=CODE, response=ENROLLED, tag="auth", enrolment=True,
          errors=_NOT_SESSION),
    Route("PUT", "/v1/session/password", change_password, "Change your own password (your other sessions end)",
          "me.read", body=CHANGE_PASSWORD, response=DONE, tag="auth",
          errors={**_NOT_SESSION, "429": "too many wrong current passwords: locked out"}),
    Route("PUT", "/v1/users/{name}/password", reset_password, "Set a user's password (ends their sessions)",
          "users.write", body=NEW_PASSWORD, response=DONE, resource="user", tag="admin"),
    Route("DELETE", "/v1/users/{name}/mfa", reset_mfa, "Reset a user's second factor (ends their sessions)",
          "users.write", response=DONE, resource="user", tag="admin"),
    Route("GET", "/v1/users/{name}/sessions", list_sessions, "A user's console sessions", "users.read",
          response=listing(SESSION_ROW), resource="user", tag="admin"),
    Route("DELETE", "/v1/users/{name}/sessions", revoke_sessions, "End all of a user's console sessions",
          "users.write", response=DONE, resource="user", tag="admin"),
    Route("GET", "/v1/auth/policy", get_policy, "The tenant's sign-in policy", "users.read", response=POLICY,
          tag="admin"),
    Route("PUT", "/v1/auth/policy", set_policy, "Require a second factor for every user of the tenant",
          "users.write", body=POLICY, response=POLICY, tag="admin"),
]
