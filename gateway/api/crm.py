"""Inbound from a CRM: opt-outs and consent withdrawals pushed to us, idempotent by the CRM's own event id.

Recorded through the same paths as POST /v1/optouts and POST /v1/consents (FactStore.add_optout and
withdraw_consent, audited in the same transaction, then the gateway trail). A retry with the same id
answers the first result with `duplicate: true` and writes nothing; the same id with a different body
is a 409 (a client bug we must not guess about). Ids are remembered for 90 days.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

from aiohttp import web

from dialer.facts import OPTOUT_SCOPES
from dialer.logs import mask_phone
from gateway import trail
from gateway.api.facts import _check_campaign, _iso, e164, facts
from gateway.clock import instant
from gateway.errors import conflict, invalid
from gateway.routing import Route, body, principal, redis_of
from rules.model import PURPOSES

REMEMBER_SECONDS = 90 * 86400
PENDING_SECONDS = 60  # a request that died mid-write frees its id after this

CRM_EVENT_IN = {
    "type": "object",
    "required": ["id", "type", "phone"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": r"^[A-Za-z0-9_.:@-]{1,128}$",
               "description": "the CRM's id for this event: a retry with the same id records nothing twice"},
        "type": {"type": "string", "enum": ["optout", "consent.withdrawn"]},
        "phone": {"type": "string", "minLength": 3, "maxLength": 40},
        "country": {"type": "string", "pattern": "^[A-Za-z]{2}$"},
        "source": {"type": "string", "minLength": 1, "maxLength": 100, "default": "crm"},
        "at": {"type": "string", "format": "date-time", "description": "when the person asked (default: now)"},
        "scope": {"type": "string", "enum": list(OPTOUT_SCOPES), "default": "company"},
        "campaign": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
        "purpose": {"type": "string", "enum": list(PURPOSES), "default": "telemarketing"},
    },
}
CRM_EVENT_OUT = {
    "type": "object",
    "required": ["id", "type", "phone", "at", "duplicate"],
    "properties": {"id": {"type": "string"}, "type": {"type": "string"}, "phone": {"type": "string"},
                   "at": {"type": "string"}, "scope": {"type": "string"},
                   "campaign": {"type": "string", "nullable": True}, "duplicate": {"type": "boolean"}},
}


def seen_key(tenant: str, client_id: str) -> str:
    return f"t:{{{tenant}}}:crm:seen:{hashlib.sha256(client_id.encode()).hexdigest()}"


async def crm_event(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    redis = redis_of(request)
    fingerprint = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    number = e164(data["phone"], data.get("country"))
    scope, campaign = data.get("scope", "company"), data.get("campaign")
    if data["type"] == "optout" and scope == "campaign" and not campaign:
        raise invalid("campaign", "a campaign opt-out needs the campaign", code="missing_field",
                      rule="optout_campaign")
    await _check_campaign(request, who.tenant, campaign)
    key = seen_key(who.tenant, data["id"])
    claimed = await redis.set(key, json.dumps({"state": "pending", "fingerprint": fingerprint}), nx=True,
                              ex=PENDING_SECONDS)
    if not claimed:
        stored = json.loads(await redis.get(key) or "{}")
        if stored.get("fingerprint") not in (None, fingerprint):
            raise conflict("id_reused", "this id was already used for a different event", "id")
        if stored.get("state") != "done":
            raise conflict("in_progress", "an event with this id is being recorded; retry in a minute", "id")
        return web.json_response({**stored["result"], "duplicate": True})
    try:
        at, source = await instant(request, data.get("at")), data.get("source", "crm")
        store = facts(request)
        if data["type"] == "optout":
            optout = await asyncio.to_thread(store.add_optout, who.tenant, number, at=at, source=source, scope=scope,
                                             campaign=campaign, actor=f"user:{who.user}")
            result = {"id": data["id"], "type": "optout", "phone": number, "at": _iso(optout.at),
                      "scope": optout.scope, "campaign": optout.campaign}
            await trail.record(redis, who.tenant, "optout.add", actor=who.user, token_id=who.token_id,
                               phone=mask_phone(number), scope=scope, campaign=campaign or "", source=source)
        else:
            purpose = data.get("purpose", "telemarketing")
            await asyncio.to_thread(store.withdraw_consent, who.tenant, number, at, source=source, purpose=purpose,
                                    campaign=campaign, actor=f"user:{who.user}")
            result = {"id": data["id"], "type": "consent.withdrawn", "phone": number, "at": _iso(at),
                      "campaign": campaign}
            await trail.record(redis, who.tenant, "consent.withdraw", actor=who.user, token_id=who.token_id,
                               phone=mask_phone(number), purpose=purpose, source=source)
    except BaseException:
        await redis.delete(key)  # not recorded: the same id may be sent again
        raise
    await redis.set(key, json.dumps({"state": "done", "fingerprint": fingerprint, "result": result}),
                    ex=REMEMBER_SECONDS)
    return web.json_response({**result, "duplicate": False}, status=201)


ROUTES = [
    Route("POST", "/v1/crm/events", crm_event,
          "A CRM pushes an opt-out or a consent withdrawal; idempotent by its id (a repeat answers 200, duplicate)",
          "optouts.write",
          body=CRM_EVENT_IN, response=CRM_EVENT_OUT, status=201, tag="people"),
]
