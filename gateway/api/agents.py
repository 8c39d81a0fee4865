"""GET /v1/campaigns/{id}/agents: the agents of a campaign's queue, each with its state and since when.

The engine publishes them (dialer/runtime/agentstates.py). Agents of a queue are shared infrastructure, like the
queue gauges of the live figures; the campaign their current call belongs to is named only when it is a campaign
of the caller's tenant ("another tenant's call" otherwise, without an id).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from dialer.campaigns import campaign_key
from dialer.runtime.agentstates import STATES, board_key, read_board, waiting_key
from gateway.errors import not_found
from gateway.routing import Route, principal, redis_of

AGENTS: dict[str, Any] = {
    "type": "object",
    "required": ["queue", "agents", "now"],
    "properties": {
        "queue": {"type": "string", "description": "the campaign's queue (empty: an AI endpoint, no agents)"},
        "now": {"type": "number", "description": "the server's clock (epoch seconds): time in state = now - since"},
        "waiting": {"type": "integer", "nullable": True,
                    "description": "callers waiting in the queue for an agent (null: not known)"},
        "agents": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"},
            "server": {"type": "string"},
            "state": {"type": "string", "enum": list(STATES)},
            "since": {"type": "number", "description": "epoch seconds the state began"},
            "call": {"type": "object", "nullable": True, "properties": {
                "campaign": {"type": "string", "description": "one of your campaigns; absent: another tenant's"},
                "name": {"type": "string"},
                "other_tenant": {"type": "boolean"}}},
        }}},
    },
}


async def campaign_agents(request: web.Request) -> web.Response:
    tenant, campaign = principal(request).tenant, request.match_info["id"]
    redis = redis_of(request)
    config = await redis.hget(campaign_key(tenant, campaign), "config")
    if config is None:
        raise not_found("campaign")
    settings = json.loads(config or "{}")
    queue = str(settings.get("queue") or "") if settings.get("agent_kind", "queue") != "ai" else ""
    if not queue:
        return web.json_response({"queue": "", "agents": [], "waiting": None, "now": time.time()})
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(board_key(queue))
    pipe.get(waiting_key(queue))
    raw, waiting = await pipe.execute()
    rows = read_board(raw)
    names: dict[str, str] = {}
    mine = {str(r.get("call")).split("/", 1)[1] for r in rows
            if str(r.get("call") or "").startswith(f"{tenant}/")}
    if mine:
        pipe = redis.pipeline(transaction=False)
        for cid in sorted(mine):
            pipe.hget(campaign_key(tenant, cid), "config")
        for cid, conf in zip(sorted(mine), await pipe.execute(), strict=True):
            names[cid] = str(json.loads(conf or "{}").get("name", "")) if conf else ""
    agents = []
    for row in rows:
        call_key = str(row.get("call") or "")
        call: dict[str, Any] | None = None
        if call_key.startswith(f"{tenant}/"):
            cid = call_key.split("/", 1)[1]
            call = {"campaign": cid, "name": names.get(cid, "")}
        elif call_key:
            call = {"other_tenant": True}
        agents.append({"name": str(row.get("name", "")), "server": str(row.get("server", "")),
                       "state": row["state"], "since": float(row.get("since") or 0), "call": call})
    return web.json_response({"queue": queue, "agents": agents, "now": time.time(),
                              "waiting": int(waiting) if waiting and waiting.isdigit() else None})


ROUTES = [
    Route("GET", "/v1/campaigns/{id}/agents", campaign_agents,
          "The agents of the campaign's queue: state (free, on call, wrap-up, paused, logged off), since when, "
          "the campaign of their current call; callers waiting", "stats.read", response=AGENTS, resource="campaign",
          tag="live", audited=False),
]
