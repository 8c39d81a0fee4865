"""GET /v1/me: who the token belongs to and what it may do (the dashboard uses it to show buttons)."""

from __future__ import annotations

from aiohttp import web

from gateway.auth import PERMISSIONS
from gateway.routing import Route, principal

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


async def me(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response({
        "tenant": who.tenant,
        "user": who.user,
        "role": who.role,
        "token_id": who.token_id,
        "permissions": sorted(p for p, roles in PERMISSIONS.items() if who.role in roles),
    })


ROUTES = [Route("GET", "/v1/me", me, "The caller: tenant, user, role, permissions", "me.read", response=ME, tag="auth")]
