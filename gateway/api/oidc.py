"""Console single sign-on through OpenID Connect: the routes of the authorization code flow.

  GET  /v1/session/oidc                      the configured providers (the sign-in page's buttons) and the
                                             refusal texts the page shows after a failed return
  GET  /v1/session/oidc/{provider}/start     a new flow (state, nonce, PKCE verifier kept in Redis for 10 min,
                                             bound to this browser by an HttpOnly cookie); 303 to the provider
  GET  /v1/session/oidc/{provider}/callback  the provider's answer: the flow is taken (once), the code redeemed,
                                             the ID token verified (gateway/oidc.py), the person mapped to a
                                             console account of the provider's tenant; then the same session
                                             cookie as a password sign-in (gateway/sessions.py)
  POST /v1/session/mfa/verify                second factor of a session at stage "code" (below)

A person is the console user of the provider's tenant named by their email (`match = "email"`: the provider
must say the email is verified unless the operator turned that off) or by their subject (`match = "sub"`).
Nobody is created unless the provider's `create_role` is set; a disabled user is refused. When the user needs a
second factor (admins; everyone when the tenant requires it), the provider's own counts only if its `amr` or
`acr` is one the operator listed (trust_amr / trust_acr); otherwise the session starts at stage "code" (enter
the console's TOTP or a recovery code) or "enrol" (set one up first), exactly as after a password.
Every success and refusal is in the tenant's audit trail (login.success / login.refused, method "oidc").
Browsers (Accept: text/html) are sent back to the console page (`/?signin_error=<code>` on refusal); other
clients get JSON. Unreachable provider: 503 provider_unavailable, never 500.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any

from aiohttp import web

from gateway import trail
from gateway.accounts import AccountStore, email_key, mfa_needed
from gateway.api.signin import CODE, SESSION, _limits, _secure, _session_body, _set_cookie, _too_many
from gateway.auth import AuthError, AuthStore
from gateway.errors import ApiError, invalid
from gateway.oidc import Flow, OidcClient, OidcError, authorization_url, mfa_proven, new_flow
from gateway.oidc_config import OidcProvider
from gateway.routing import CONFIG, SERVICES, Route, body, principal, redis_of, session_of, session_policy
from gateway.sessions import SessionStore

log = logging.getLogger(__name__)

FLOW_COOKIE = "dialer_oidc_flow"
FLOW_SECONDS = 600
COOKIE_PATH = "/v1/session/oidc/"

# Why a single sign-on was refused: HTTP status and the text people read. Data, not code.
REFUSALS: dict[str, tuple[int, str]] = {
    "unknown_provider": (404, "no such sign-in provider"),
    "provider_unavailable": (503, "the sign-in provider cannot be reached or answered wrongly: try again in a "
                                  "moment, or sign in with your email and password"),
    "provider_error": (401, "the sign-in provider did not sign you in (cancelled or refused there)"),
    "bad_state": (400, "this sign-in is unknown, expired or already used: start again from the sign-in page"),
    "flow_mismatch": (400, "this sign-in was started in another browser or its cookie is missing: start again "
                           "from the sign-in page"),
    "bad_issuer": (400, "the answer names another provider than the one this sign-in went to"),
    "code_rejected": (401, "the provider refused the sign-in code (already used, expired or not ours): start "
                           "again"),
    "id_token_invalid": (401, "the provider's identity token failed verification (signature, issuer, audience "
                              "or expiry)"),
    "bad_nonce": (401, "the provider's identity token does not belong to this sign-in (nonce): start again"),
    "no_identity": (403, "the provider did not tell us your email address (is the email scope allowed?)"),
    "email_unverified": (403, "the provider has not verified your email address"),
    "unknown_user": (403, "there is no console account for you here: ask your administrator to create one"),
    "disabled": (403, "your console account is disabled: ask your administrator"),
}

PROVIDERS: dict = {
    "type": "object", "required": ["items", "refusals"],
    "properties": {
        "items": {"type": "array", "items": {
            "type": "object", "required": ["id", "name", "start"],
            "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                           "start": {"type": "string", "description": "open this address to sign in"}}}},
        "refusals": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "the text for each signin_error code the console page may be sent back with"},
    },
}


def flow_key(state: str) -> str:
    return f"oidc:flow:{hashlib.sha256(state.encode()).hexdigest()}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _client(request: web.Request) -> OidcClient:
    return request.app[SERVICES]["oidc"]


def _provider(request: web.Request) -> OidcProvider:
    wanted = request.match_info["provider"]
    for provider in request.app[CONFIG].oidc:
        if provider.id == wanted:
            return provider
    raise ApiError(404, "unknown_provider", REFUSALS["unknown_provider"][1])


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def _origin(request: web.Request) -> str:
    return str(request.app[CONFIG]["gateway.public_origin"]).rstrip("/") or f"{request.scheme}://{request.host}"


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _refusal(request: web.Request, code: str, message: str | None = None) -> web.StreamResponse:
    status, text = REFUSALS[code]
    if _wants_html(request):
        response = _see_other(f"/?signin_error={code}")
        response.del_cookie(FLOW_COOKIE, path=COOKIE_PATH)
        return response
    raise ApiError(status, code, message or text)


async def providers(request: web.Request) -> web.Response:
    items = [{"id": p.id, "name": p.name, "start": f"/v1/session/oidc/{p.id}/start"}
             for p in request.app[CONFIG].oidc]
    return web.json_response({"items": items, "refusals": {code: text for code, (_, text) in REFUSALS.items()}})


async def start(request: web.Request) -> web.StreamResponse:
    provider, redis = _provider(request), redis_of(request)
    if await AccountStore(redis, _limits(request)).address_over_limit(request.remote or "unknown"):
        raise _too_many("too many sign-in attempts from your address: wait a minute", 60)
    try:
        metadata = await _client(request).metadata(provider, time.time())
    except OidcError as exc:
        log.warning("oidc %s: %s", provider.id, exc)
        await trail.record(redis, provider.tenant, "login.refused", actor="unknown", method="oidc",
                           provider=provider.id, reason=exc.code, address=request.remote or "")
        return _refusal(request, exc.code)
    flow = new_flow(provider)
    binding = secrets.token_urlsafe(32)
    redirect_uri = f"{_origin(request)}/v1/session/oidc/{provider.id}/callback"
    record = {"provider": provider.id, "nonce": flow.nonce, "verifier": flow.verifier, "redirect_uri": redirect_uri,
              "binding": _digest(binding)}
    await redis.set(flow_key(flow.state), json.dumps(record), ex=FLOW_SECONDS)
    response = _see_other(authorization_url(provider, metadata, redirect_uri, flow))
    # Lax, not Strict: the provider sends the browser back with a top-level GET from its own site.
    response.set_cookie(FLOW_COOKIE, binding, path=COOKIE_PATH, httponly=True, samesite="Lax",
                        secure=_secure(request), max_age=FLOW_SECONDS)
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    provider, redis, now = _provider(request), redis_of(request), time.time()
    address, query = request.remote or "", request.query
    accounts = AccountStore(redis, _limits(request))
    if await accounts.address_over_limit(address or "unknown"):
        raise _too_many("too many sign-in attempts from your address: wait a minute", 60)

    async def refuse(code: str, actor: str = "unknown", detail: str = "", message: str | None = None,
                     **extra: Any) -> web.StreamResponse:
        await trail.record(redis, provider.tenant, "login.refused", actor=actor, method="oidc", provider=provider.id,
                           reason=code, address=address, **extra)
        if detail:
            log.warning("oidc %s refused (%s): %s", provider.id, code, detail)
        return _refusal(request, code, message)

    state = query.get("state", "")
    raw = await redis.getdel(flow_key(state)) if 0 < len(state) <= 200 else None  # taken once: no replay
    if "error" in query and raw is None:
        return await refuse("provider_error", detail=query.get("error", "")[:100])
    if raw is None:
        return await refuse("bad_state")
    record = json.loads(raw)
    if record["provider"] != provider.id:
        return await refuse("bad_state")
    binding = request.cookies.get(FLOW_COOKIE, "")
    if not binding or not hmac.compare_digest(_digest(binding), record["binding"]):
        return await refuse("flow_mismatch")
    if "error" in query:
        return await refuse("provider_error", detail=query.get("error", "")[:100])
    if "iss" in query and query["iss"] != provider.issuer:  # RFC 9207: a mix-up with another provider
        return await refuse("bad_issuer")
    code = query.get("code", "")
    if not code or len(code) > 2048:
        return await refuse("code_rejected", detail="no code in the answer")
    flow = Flow(provider.id, state, record["nonce"], record["verifier"])
    client = _client(request)
    try:
        metadata = await client.metadata(provider, now)
        tokens = await client.redeem(provider, metadata, code, record["redirect_uri"], flow.verifier)
        claims = await client.verify_id_token(provider, metadata, tokens["id_token"], flow.nonce, now)
        if provider.match == "email" and not claims.get("email"):
            info = await client.userinfo(metadata, str(tokens.get("access_token") or ""))
            if info.get("sub") == claims["sub"]:  # OpenID Connect Core 5.3.2
                claims.update({k: info[k] for k in ("email", "email_verified") if k in info})
    except OidcError as exc:
        return await refuse(exc.code, detail=exc.detail)
    subject = wanted = str(claims["sub"])
    store = AuthStore(redis)
    if provider.match == "email":
        wanted = claims.get("email")  # type: ignore[assignment]
        if not isinstance(wanted, str) or "@" not in wanted:
            return await refuse("no_identity", subject=subject)
        if provider.require_verified_email and claims.get("email_verified") not in (True, "true"):
            return await refuse("email_unverified", actor=wanted, subject=subject)
        name = await _user_by_email(redis, provider.tenant, wanted)
    else:
        name = subject if await store.user(provider.tenant, subject) else None
    if name is None and provider.create_role:
        try:
            await store.create_user(provider.tenant, wanted, provider.create_role)
            name = wanted
            await trail.record(redis, provider.tenant, "login.account_created", actor=name, method="oidc",
                               provider=provider.id, role=provider.create_role, subject=subject)
        except AuthError as exc:
            log.warning("oidc %s: cannot create %s: %s", provider.id, wanted, exc)
    user = await store.user(provider.tenant, name) if name else None
    tenant_record = await store.tenant(provider.tenant)
    if user is None or tenant_record is None:
        return await refuse("unknown_user", actor=wanted, subject=subject,
                            message=f"there is no console account for {wanted} here: ask your administrator to "
                                    "create one")
    if user.get("disabled") == "1":
        return await refuse("disabled", actor=name, subject=subject)
    assert name is not None
    proven = mfa_proven(provider, claims)
    if proven or not mfa_needed(user["role"], tenant_record):
        stage = "full"
    else:
        stage = "code" if user.get("mfa") == "1" else "enrol"
    method = f"oidc+{proven}" if proven else "oidc"
    sessions = SessionStore(redis, session_policy(request.app[CONFIG]))
    cookie, session = await sessions.create(provider.tenant, name, stage, now)
    await trail.record(redis, provider.tenant, "login.success", actor=name, token_id=f"session:{session.id}",
                       method=method, provider=provider.id, subject=subject, stage=stage, address=address)
    response: web.StreamResponse
    if _wants_html(request):
        response = _see_other("/")
    else:
        response = web.json_response(await _session_body(request, session, user["role"]))
    response.del_cookie(FLOW_COOKIE, path=COOKIE_PATH)
    _set_cookie(request, response, cookie)
    return response


async def _user_by_email(redis: Any, tenant: str, email: str) -> str | None:
    """The user of `tenant` named by this email (console users are named by their email address)."""
    owner = await redis.hget("logins", email_key(email))  # gateway/accounts.py: email -> tenant/name
    if owner and owner.partition("/")[0] == tenant:
        return owner.partition("/")[2]
    store = AuthStore(redis)
    for candidate in dict.fromkeys((email, email_key(email))):
        if await store.user(tenant, candidate):
            return candidate
    return None


async def verify_code(request: web.Request) -> web.Response:
    """A session at stage "code" (single sign-on without a trusted second factor) proves the console's own."""
    session, who, redis = session_of(request), principal(request), redis_of(request)
    if session is None:
        raise ApiError(400, "not_a_session", "this needs a console session (sign in), not an API token")
    if session.stage != "code":
        raise ApiError(409, "no_code_expected", "this session is not waiting for a second-factor code")
    accounts = AccountStore(redis, _limits(request))
    if await accounts.locked_for(session.user):
        raise _too_many("too many failed attempts: this account is locked", await accounts.locked_for(session.user))
    kind = await accounts.check_second_factor(session.tenant, session.user, body(request)["code"], time.time())
    if kind is None:
        locked = await accounts.note_failure(session.user)
        await trail.record(redis, who.tenant, "login.failure", actor=who.user, token_id=who.token_id, reason="code",
                           method="oidc", address=request.remote or "")
        if locked:
            await trail.record(redis, who.tenant, "login.lockout", actor=who.user,
                               minutes=accounts.limits.lockout_seconds // 60, address=request.remote or "")
            await SessionStore(redis).revoke(session.tenant, session.user, session.id)
            raise _too_many("too many failed attempts: this account is now locked", accounts.limits.lockout_seconds)
        raise invalid("code", "wrong or already used code", rule="wrong_code")
    await accounts.note_success(session.user)
    sessions = SessionStore(redis, session_policy(request.app[CONFIG]))
    await sessions.revoke(session.tenant, session.user, session.id)
    cookie, fresh = await sessions.create(session.tenant, session.user, "full", time.time())
    await trail.record(redis, who.tenant, "login.success", actor=who.user, token_id=f"session:{fresh.id}",
                       method=f"oidc+{kind}", stage="full", address=request.remote or "")
    response = web.json_response(await _session_body(request, fresh, who.role))
    _set_cookie(request, response, cookie)
    return response


_HTML = {"303": "browsers: back to the console page, /?signin_error=<code> on refusal"}

ROUTES = [
    Route("GET", "/v1/session/oidc", providers, "Single sign-on providers (the sign-in page's buttons)", None,
          response=PROVIDERS, tag="auth", audited=False),
    Route("GET", "/v1/session/oidc/{provider}/start", start, "Start signing in with a provider: 303 to its "
          "sign-in page", None, status=303, content_type="text/html", tag="auth", audited=False,
          errors={"404": "no such provider", "429": "too many attempts from this address",
                  "503": REFUSALS["provider_unavailable"][1]}),
    Route("GET", "/v1/session/oidc/{provider}/callback", callback, "Where the provider sends the browser back: "
          "verifies and signs in (sets the session cookie; JSON session for non-browser clients)", None,
          content_type="text/html",
          tag="auth", audited=False,
          errors={**_HTML, "400": "unknown, used or foreign sign-in (bad_state, flow_mismatch, bad_issuer)",
                  "401": "code or identity token refused (code_rejected, id_token_invalid, bad_nonce, "
                         "provider_error)",
                  "403": "no account, disabled, unverified email (unknown_user, disabled, email_unverified, "
                         "no_identity)", "404": "no such provider", "429": "too many attempts from this address",
                  "503": REFUSALS["provider_unavailable"][1]}),
    Route("POST", "/v1/session/mfa/verify", verify_code, "After single sign-on: the second-factor code (TOTP or "
          "recovery) of a session at stage code", "me.read", body=CODE, response=SESSION, tag="auth",
          enrolment=True, errors={"400": "called with an API token: this needs a console session",
                                  "429": "too many wrong codes: locked out"}),
]
