"""A tenant's users and API tokens (admin role). Everything is scoped to the caller's tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway import credentials, trail
from gateway.accounts import AccountStore
from gateway.api.schemas import STAMP, listing
from gateway.auth import ROLES, USER_NAME, AuthError, AuthStore, user_key, users_key
from gateway.errors import ApiError, conflict, invalid, not_found
from gateway.routing import Route, body, principal, redis_of
from gateway.sessions import SessionStore

USER: dict = {
    "type": "object",
    "required": ["name", "role", "disabled"],
    "properties": {
        "name": {"type": "string"},
        "role": {"type": "string", "enum": list(ROLES)},
        "disabled": {"type": "boolean"},
        "created_at": STAMP,
        "can_sign_in": {"type": "boolean", "description": "has a console password"},
        "mfa": {"type": "boolean", "description": "has a second factor set up"},
    },
}
NEW_USER: dict = {
    "type": "object",
    "required": ["name", "role"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": USER_NAME.pattern},
        "role": {"type": "string", "enum": list(ROLES)},
        "password": {"type": "string", "minLength": credentials.PASSWORD_MIN, "maxLength": credentials.PASSWORD_MAX,
                     "description": "invite: a first password for console sign-in (the name must be an email); "
                                    "the admin hands it over, the user changes it"},
    },
}
USER_CHANGE: dict = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"role": {"type": "string", "enum": list(ROLES)}, "disabled": {"type": "boolean"}},
}
TOKEN: dict = {
    "type": "object",
    "required": ["id", "user"],
    "properties": {
        "id": {"type": "string"},
        "user": {"type": "string"},
        "label": {"type": "string"},
        "created_at": STAMP,
        "last_used_at": STAMP,
        "expires_at": STAMP,
    },
}
NEW_TOKEN: dict = {
    "type": "object",
    "required": ["user"],
    "additionalProperties": False,
    "properties": {
        "user": {"type": "string", "minLength": 1, "maxLength": 64},
        "label": {"type": "string", "maxLength": 200},
        "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 3650,
                            "description": "the token stops working after this many days (default: never)"},
    },
}
CREATED_TOKEN: dict = {
    "type": "object",
    "required": ["id", "user", "token"],
    "properties": {**TOKEN["properties"], "token": {"type": "string", "description": "shown once"}},
}


def _user(record: dict[str, str]) -> dict:
    return {"name": record["name"], "role": record["role"], "disabled": record.get("disabled") == "1",
            "created_at": record.get("created_at", ""), "can_sign_in": bool(record.get("password")),
            "mfa": record.get("mfa") == "1"}


def _token(record: dict[str, str]) -> dict:
    out = {k: record[k] for k in ("id", "user", "label", "created_at", "last_used_at", "expires_at") if k in record}
    return out


async def list_users(request: web.Request) -> web.Response:
    users = await AuthStore(redis_of(request)).users(principal(request).tenant)
    return web.json_response({"items": [_user(u) for u in users]})


async def create_user(request: web.Request) -> web.Response:
    """Create a user; with `password`, an invitation to the console: checked in full before anything is written,
    so a refused invitation leaves no half-made user."""
    who, data, redis = principal(request), body(request), redis_of(request)
    password = data.get("password")
    accounts = AccountStore(redis)
    if password is not None:
        problem = credentials.password_problem(password)
        if problem:
            raise invalid("password", problem, rule="password", params=credentials.PASSWORD_RULE)
        if "@" not in data["name"]:
            raise invalid("name", "a user who signs in to the console is named by an email address",
                          rule="email_name")
        owner = await accounts.find(data["name"])
        if owner and owner != (who.tenant, data["name"]):
            raise ApiError(409, "email_taken", f"{data['name']} already signs in to another tenant", field="name")
    try:
        record = await AuthStore(redis).create_user(who.tenant, data["name"], data["role"])
    except AuthError as exc:
        raise conflict("user_exists", str(exc), field="name") from None
    if password is not None:
        try:
            await accounts.set_password(who.tenant, data["name"], password)
        except AuthError as exc:  # the email was taken meanwhile: undo the user, nothing half-made stays
            pipe = redis.pipeline(transaction=True)
            pipe.delete(user_key(who.tenant, data["name"]))
            pipe.srem(users_key(who.tenant), data["name"])
            await pipe.execute()
            raise ApiError(409, "email_taken", str(exc), field="name") from None
        record = await AuthStore(redis).user(who.tenant, data["name"]) or record
    await trail.record(redis, who.tenant, "user.create", actor=who.user, token_id=who.token_id,
                       user=data["name"], role=data["role"], invited=password is not None)
    return web.json_response(_user(record), status=201)


async def get_user(request: web.Request) -> web.Response:
    record = await AuthStore(redis_of(request)).user(principal(request).tenant, request.match_info["name"])
    if not record:
        raise not_found("user")
    return web.json_response(_user(record))


async def change_user(request: web.Request) -> web.Response:
    who, data, name = principal(request), body(request), request.match_info["name"]
    if name == who.user and (data.get("disabled") or data.get("role", "admin") != "admin"):
        raise invalid("role", "you cannot demote or disable yourself; ask another admin", rule="self_demote")
    record = await AuthStore(redis_of(request)).update_user(who.tenant, name, role=data.get("role"),
                                                            disabled=data.get("disabled"))
    if not record:
        raise not_found("user")
    if data.get("disabled") or "role" in data:
        # A new role may need a second factor the open sessions never proved (admins): sign in again.
        await SessionStore(redis_of(request)).revoke_all(who.tenant, name)
    await trail.record(redis_of(request), who.tenant, "user.change", actor=who.user, token_id=who.token_id,
                       user=name, **data)
    return web.json_response(_user(record))


async def list_tokens(request: web.Request) -> web.Response:
    tokens = await AuthStore(redis_of(request)).tokens(principal(request).tenant)
    return web.json_response({"items": [_token(t) for t in tokens]})


async def create_token(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    store = AuthStore(redis_of(request))
    if not await store.user(who.tenant, data["user"]):
        raise invalid("user", "no such user in your tenant", rule="no_such_user")
    days = data.get("expires_in_days")
    expires = datetime.now(UTC) + timedelta(days=days) if days else None
    token, record = await store.create_token(who.tenant, data["user"], data.get("label", ""), expires_at=expires)
    await trail.record(redis_of(request), who.tenant, "token.create", actor=who.user, token_id=who.token_id,
                       created=record["id"], user=data["user"])
    return web.json_response({**_token(record), "token": token}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    who, token_id = principal(request), request.match_info["token_id"]
    if not await AuthStore(redis_of(request)).revoke_token(who.tenant, token_id):
        raise not_found("token")
    await trail.record(redis_of(request), who.tenant, "token.revoke", actor=who.user, token_id=who.token_id,
                       revoked=token_id)
    return web.json_response({"id": token_id, "revoked": True})


REVOKED: dict = {"type": "object", "required": ["id", "revoked"],
                 "properties": {"id": {"type": "string"}, "revoked": {"type": "boolean"}}}

ROUTES = [
    Route("GET", "/v1/users", list_users, "List the tenant's users", "users.read", response=listing(USER), tag="admin"),
    Route("POST", "/v1/users", create_user, "Create a user; with password, invite them to the console",
          "users.write", body=NEW_USER, response=USER,
          status=201, tag="admin"),
    Route("GET", "/v1/users/{name}", get_user, "One user", "users.read", response=USER, resource="user", tag="admin"),
    Route("PATCH", "/v1/users/{name}", change_user, "Change a user's role or disable it", "users.write",
          body=USER_CHANGE, response=USER, resource="user", tag="admin"),
    Route("GET", "/v1/tokens", list_tokens, "List the tenant's API tokens (never the secrets)", "tokens.read",
          response=listing(TOKEN), tag="admin"),
    Route("POST", "/v1/tokens", create_token, "Create an API token for a user; the token is shown once",
          "tokens.write", body=NEW_TOKEN, response=CREATED_TOKEN, status=201, tag="admin"),
    Route("DELETE", "/v1/tokens/{token_id}", revoke_token, "Revoke an API token", "tokens.write",
          response=REVOKED, resource="token", tag="admin"),
]
