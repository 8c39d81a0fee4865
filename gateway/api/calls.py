"""Agents' dispositions of calls: `POST /v1/calls/{call_id}/disposition` (dialer/agent_dispositions.py).

Human agents' desktops and AI-agent platforms report what the called person said. The call id is the one the
dialer placed the call with (DIALER_CALL_ID, the Originate's ActionID); it is looked up in the caller's tenant
only, so another tenant's call answers 404 exactly as an unknown one.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer.agent_dispositions import AGENT_OUTCOMES, KEYWORD_MAX, NOTE_MAX, UnknownCall, record_disposition
from dialer.audit import AuditLog
from dialer.facts import OPTOUT_SCOPES
from dialer.gate import Gate
from dialer.logs import mask_phone
from gateway import trail
from gateway.api.facts import facts
from gateway.errors import invalid, not_found
from gateway.routing import CONFIG, SERVICES, Route, body, principal, redis_of

DISPOSITION_IN: dict[str, Any] = {
    "type": "object",
    "required": ["outcome"],
    "additionalProperties": False,
    "properties": {
        "outcome": {"type": "string", "enum": list(AGENT_OUTCOMES),
                    "description": "what the called person said; refused counts for refusal cool-offs, "
                                   "opted_out records an opt-out"},
        "scope": {"type": "string", "enum": list(OPTOUT_SCOPES), "default": "company",
                  "description": "for opted_out: the whole company (default) or the call's campaign only"},
        "keyword": {"type": "string", "maxLength": KEYWORD_MAX, "description": "the words the person used"},
        "note": {"type": "string", "maxLength": NOTE_MAX,
                 "description": "the agent's note, kept with the call attempt (erased with the person)"},
    },
}
DISPOSITION_OUT: dict[str, Any] = {
    "type": "object",
    "required": ["call_id", "outcome", "recorded", "phone", "optout"],
    "properties": {
        "call_id": {"type": "string"},
        "outcome": {"type": "string", "description": "the outcome reported"},
        "recorded": {"type": "string", "description": "the outcome the call has now (the strongest report wins)"},
        "phone": {"type": "string", "description": "masked"},
        "campaign": {"type": "string"},
        "optout": {"type": "object", "nullable": True,
                   "properties": {"scope": {"type": "string"}, "campaign": {"type": "string", "nullable": True},
                                  "at": {"type": "string"}}},
    },
}


def _gate(request: web.Request) -> Gate:
    """A gate used for outcomes only (no packs or registries needed to record one), made once per app."""
    services = request.app[SERVICES]
    gate = services.get("outcome_gate")
    if gate is None:
        sync = services["sync_redis"]
        gate = Gate(sync, None, None, audit=AuditLog(sync, request.app[CONFIG]["security.secret_key"] or b""),
                    actor="gateway")
        services["outcome_gate"] = gate
    return gate


async def dispose(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    call_id = request.match_info["call_id"]
    scope = data.get("scope", "company")
    try:
        done = await asyncio.to_thread(
            record_disposition, _gate(request), facts(request), who.tenant, call_id, data["outcome"],
            at=datetime.now(UTC), actor=f"user:{who.user}", scope=scope, keyword=data.get("keyword"),
            note=data.get("note"))
    except UnknownCall:
        raise not_found() from None
    except ValueError as exc:
        raise invalid("scope", str(exc)) from None
    await trail.record(redis_of(request), who.tenant, "call.disposition", actor=who.user, token_id=who.token_id,
                       call_id=call_id, outcome=data["outcome"], recorded=done.recorded, phone=mask_phone(done.e164))
    optout = None
    if done.optout is not None:
        optout = {"scope": done.optout.scope, "campaign": done.optout.campaign,
                  "at": done.optout.at.isoformat().replace("+00:00", "Z")}
    return web.json_response({"call_id": call_id, "outcome": done.outcome, "recorded": done.recorded,
                              "phone": AuditLog.mask(done.e164), "campaign": done.campaign, "optout": optout})


ROUTES = [
    Route("POST", "/v1/calls/{call_id}/disposition", dispose,
          "An agent's disposition of a call (answered, refused, opted_out, callback, wrong_number)",
          "calls.disposition", body=DISPOSITION_IN, response=DISPOSITION_OUT, resource="call", tag="people"),
]
