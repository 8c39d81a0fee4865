"""GET /v1/me: who the token belongs to and what it may do (the console uses it to show pages and buttons).

/v1/me/preferences: the user's console language and time zone, kept in their user record (fields `language`
and `time_zone`), so they follow the person from one browser to the next. Until a user chooses, the language
is the best match of the browser's Accept-Language and the zone is empty (the browser's own zone is used).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from aiohttp import web

from gateway.auth import AuthStore, permissions_of, user_key
from gateway.errors import invalid
from gateway.routing import CONFIG, Route, body, principal, redis_of

LANGUAGES = ("en", "fr")  # the console's message catalogues: gateway/static/i18n/{language}.json

ME: dict = {
    "type": "object",
    "required": ["tenant", "user", "role", "token_id", "permissions"],
    "properties": {
        "tenant": {"type": "string"},
        "user": {"type": "string"},
        "role": {"type": "string", "enum": ["admin", "supervisor", "uploader", "auditor"]},
        "token_id": {"type": "string"},
        "permissions": {"type": "array", "items": {"type": "string"}},
    },
}
PREFERENCES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "language": {"type": "string", "enum": list(LANGUAGES), "description": "the console's language"},
        "time_zone": {"type": "string", "maxLength": 64,
                      "description": "IANA zone the console shows times in, e.g. Europe/Paris; empty: the browser's"},
    },
}
PREFERENCES_ANSWER: dict[str, Any] = {**PREFERENCES, "required": ["language", "time_zone", "chosen"],
                                      "properties": {**PREFERENCES["properties"], "chosen": {
                                          "type": "boolean", "description": "false: not chosen yet, the language "
                                                                           "comes from Accept-Language"}}}


async def me(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response({
        "tenant": who.tenant,
        "user": who.user,
        "role": who.role,
        "token_id": who.token_id,
        "permissions": permissions_of(who.role, who.tenant, request.app[CONFIG]),
    })


def accepted_language(header: str) -> str:
    """The best of LANGUAGES for an Accept-Language header ("fr-FR,fr;q=0.9,en;q=0.8" -> "fr"); default en."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in LANGUAGES and weight > 0:
            ranked.append((-weight, i, base))
    return min(ranked)[2] if ranked else "en"


async def get_preferences(request: web.Request) -> web.Response:
    who = principal(request)
    user = await AuthStore(redis_of(request)).user(who.tenant, who.user) or {}
    chosen = user.get("language") in LANGUAGES
    language = user["language"] if chosen else accepted_language(request.headers.get("Accept-Language", ""))
    return web.json_response({"language": language, "time_zone": user.get("time_zone", ""), "chosen": chosen})


def _known_zone(name: str) -> bool:
    if name not in available_timezones():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


async def set_preferences(request: web.Request) -> web.Response:
    who, changes = principal(request), body(request)
    zone = changes.get("time_zone")
    if zone and not _known_zone(zone):
        raise invalid("time_zone", f"{zone!r} is not a time zone name (an IANA name such as Europe/Paris)",
                      rule="time_zone")
    if changes:
        await redis_of(request).hset(user_key(who.tenant, who.user), mapping=changes)
    return await get_preferences(request)


ROUTES = [
    Route("GET", "/v1/me", me, "The caller: tenant, user, role, permissions", "me.read", response=ME, tag="auth"),
    Route("GET", "/v1/me/preferences", get_preferences, "Your console language and time zone", "me.read",
          response=PREFERENCES_ANSWER, tag="auth", audited=False),
    Route("PUT", "/v1/me/preferences", set_preferences, "Choose your console language and time zone", "me.read",
          body=PREFERENCES, response=PREFERENCES_ANSWER, tag="auth"),
]
