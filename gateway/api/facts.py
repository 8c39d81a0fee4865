"""Opt-outs (from CRMs and SMS STOP replies) and consent records, written through dialer/facts.py.

An opt-out is never dropped: a request without a keyword is an explicit opt-out and is recorded; a
forwarded SMS counts when it contains one of OPTOUT_KEYWORDS as a word; anything else is refused with
a 422 naming `keyword`, so the caller knows it was not recorded. Opt-outs are company-wide unless the
caller asks for `scope: campaign` (the safe default: when in doubt, stop calling).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from aiohttp import web

from dialer import optout_keywords
from dialer.campaigns import campaign_key
from dialer.facts import OPTOUT_SCOPES, FactStore
from dialer.logs import mask_phone
from gateway import trail
from gateway.api.schemas import listing
from gateway.clock import instant
from gateway.errors import invalid
from gateway.routing import SERVICES, Route, body, principal, query, redis_of
from rules.model import PURPOSES, Consent

# Words that revoke consent when a person replies to a message, by language, configurable per tenant:
# dialer/optout_keywords.py. OPTOUT_KEYWORDS: the default (every language).
OPTOUT_KEYWORDS = tuple(dict.fromkeys(optout_keywords.keywords(optout_keywords.tenant_settings(None))))

_PHONE = {"type": "string", "minLength": 3, "maxLength": 40,
          "description": "E.164 (+33145678901), or national format with country"}
_COUNTRY = {"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "ISO 3166-1 alpha-2, for national numbers"}
_CAMPAIGN_ID = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}

OPTOUT_IN: dict[str, Any] = {
    "type": "object",
    "required": ["phone", "source"],
    "additionalProperties": False,
    "properties": {
        "phone": _PHONE,
        "country": _COUNTRY,
        "source": {"type": "string", "minLength": 1, "maxLength": 100, "description": "crm, sms, web, agent ..."},
        "keyword": {"type": "string", "maxLength": 1000, "description": "the SMS text received, when forwarded"},
        "campaign": _CAMPAIGN_ID,
        "scope": {"type": "string", "enum": list(OPTOUT_SCOPES), "default": "company"},
        "at": {"type": "string", "format": "date-time", "description": "when the person asked (default: now)"},
    },
}
OPTOUT_OUT: dict[str, Any] = {
    "type": "object",
    "required": ["phone", "scope", "at", "source"],
    "properties": {
        "phone": {"type": "string"},
        "scope": {"type": "string"},
        "campaign": {"type": "string", "nullable": True},
        "at": {"type": "string"},
        "source": {"type": "string"},
        "keyword": {"type": "string", "nullable": True},
    },
}
CONSENT_IN: dict[str, Any] = {
    "type": "object",
    "required": ["phone", "source"],
    "additionalProperties": False,
    "properties": {
        "phone": _PHONE,
        "country": _COUNTRY,
        "action": {"type": "string", "enum": ["grant", "withdraw"], "default": "grant"},
        "purpose": {"type": "string", "enum": list(PURPOSES), "default": "telemarketing"},
        "source": {"type": "string", "minLength": 1, "maxLength": 100, "description": "web form, call, paper ..."},
        "at": {"type": "string", "format": "date-time", "description": "when given or withdrawn (default: now)"},
        "expires_at": {"type": "string", "format": "date-time"},
        "written": {"type": "boolean", "default": False},
        "channel": {"type": "string", "maxLength": 40, "default": "phone"},
        "campaign": _CAMPAIGN_ID,
        "evidence": {"type": "string", "maxLength": 2000, "description": "recording or document reference"},
        "ip": {"type": "string", "maxLength": 64},
        "text": {"type": "string", "maxLength": 5000, "description": "the wording shown, or a reference to it"},
    },
}
CONSENT_OUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "given_at": {"type": "string", "nullable": True},
        "withdrawn_at": {"type": "string", "nullable": True},
        "expires_at": {"type": "string", "nullable": True},
        "purpose": {"type": "string"},
        "written": {"type": "boolean"},
        "source": {"type": "string"},
        "evidence": {"type": "string"},
        "channel": {"type": "string"},
        "campaign": {"type": "string", "nullable": True},
        "ip": {"type": "string", "nullable": True},
        "text": {"type": "string", "nullable": True},
    },
}


def counts_as_optout(text: str, words: Any = OPTOUT_KEYWORDS) -> bool:
    return optout_keywords.matches(text, words) is not None


async def tenant_keywords(request: web.Request, tenant: str) -> dict[str, Any]:
    return optout_keywords.tenant_settings(await redis_of(request).get(optout_keywords.settings_key(tenant)))


def e164(phone: str, country: str | None) -> str:
    """The number in E.164, or a 422 naming `phone`. Possible (not only assigned) numbers are accepted,
    so an opt-out is recorded rather than refused on a numbering-plan detail."""
    try:
        parsed = phonenumbers.parse(phone, country.upper() if country else None)
    except phonenumbers.NumberParseException:
        raise invalid("phone", "not a phone number (use E.164, or give country for a national number)",
                      rule="phone_number") from None
    if not phonenumbers.is_possible_number(parsed):
        raise invalid("phone", "not a possible phone number", rule="phone_number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def facts(request: web.Request) -> FactStore:
    return request.app[SERVICES]["facts"]


async def _check_campaign(request: web.Request, tenant: str, campaign: str | None) -> None:
    if campaign and not await redis_of(request).exists(campaign_key(tenant, campaign)):
        raise invalid("campaign", "no such campaign", rule="no_such_campaign")


async def add_optout(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    number = e164(data["phone"], data.get("country"))
    keyword = data.get("keyword")
    if keyword is not None:
        settings = await tenant_keywords(request, who.tenant)
        words = optout_keywords.keywords(settings)
        if not counts_as_optout(keyword, words):
            raise invalid("keyword", f"not an opt-out keyword ({', '.join(dict.fromkeys(words))}); nothing was "
                          "recorded. Send without keyword to record an explicit opt-out", code="not_an_optout")
    scope = data.get("scope", "company")
    campaign = data.get("campaign")
    if scope == "campaign" and not campaign:
        raise invalid("campaign", "a campaign opt-out needs the campaign", code="missing_field",
                      rule="optout_campaign")
    await _check_campaign(request, who.tenant, campaign)
    optout = await asyncio.to_thread(
        facts(request).add_optout, who.tenant, number, at=await instant(request, data.get("at")),
        source=data["source"],
        scope=scope, campaign=campaign, keyword=keyword[:100] if keyword else None, actor=f"user:{who.user}")
    await trail.record(redis_of(request), who.tenant, "optout.add", actor=who.user, token_id=who.token_id,
                       phone=mask_phone(number), scope=scope, campaign=campaign or "", source=data["source"])
    return web.json_response({"phone": number, "scope": optout.scope, "campaign": optout.campaign,
                              "at": _iso(optout.at), "source": optout.source, "keyword": optout.keyword}, status=201)


def _consent(record: Consent) -> dict[str, Any]:
    return {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in asdict(record).items()}


async def add_consent(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    number = e164(data["phone"], data.get("country"))
    await _check_campaign(request, who.tenant, data.get("campaign"))
    at = await instant(request, data.get("at"))
    store = facts(request)
    action = data.get("action", "grant")
    if action == "withdraw":
        await asyncio.to_thread(store.withdraw_consent, who.tenant, number, at, source=data["source"],
                                purpose=data.get("purpose", "telemarketing"), campaign=data.get("campaign"),
                                evidence=data.get("evidence", ""), actor=f"user:{who.user}")
    else:
        expires = await instant(request, data["expires_at"]) if data.get("expires_at") else None
        if expires is not None and expires <= at:
            raise invalid("expires_at", "must be later than at", rule="after_at")
        consent = Consent(given_at=at, purpose=data.get("purpose", "telemarketing"), written=data.get("written", False),
                          expires_at=expires, source=data["source"], evidence=data.get("evidence", ""),
                          channel=data.get("channel", "phone"), campaign=data.get("campaign"), ip=data.get("ip"),
                          text=data.get("text"))
        await asyncio.to_thread(store.add_consent, who.tenant, number, consent, actor=f"user:{who.user}")
    await trail.record(redis_of(request), who.tenant, f"consent.{action}", actor=who.user, token_id=who.token_id,
                       phone=mask_phone(number), purpose=data.get("purpose", "telemarketing"), source=data["source"])
    records = await asyncio.to_thread(store.consents, who.tenant, number)
    return web.json_response({"phone": number, "items": [_consent(r) for r in records]}, status=201)


async def list_consents(request: web.Request) -> web.Response:
    who, params = principal(request), query(request)
    if "phone" not in params:
        raise invalid("phone", "is required", code="missing_field")
    number = e164(params["phone"], params.get("country"))
    records = await asyncio.to_thread(facts(request).consents, who.tenant, number)
    return web.json_response({"phone": number, "items": [_consent(r) for r in records]})


CONSENTS: dict[str, Any] = {**listing(CONSENT_OUT)}
CONSENTS["properties"] = {**CONSENTS["properties"], "phone": {"type": "string"}}

KEYWORDS_IN: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "languages": {"type": "array", "items": {"type": "string", "enum": list(optout_keywords.LANGUAGES)},
                      "description": "built-in keyword lists to apply (default: all)"},
        "extra": {"type": "array", "maxItems": optout_keywords.MAX_EXTRA,
                  "items": {"type": "string", "minLength": 2, "maxLength": 60},
                  "description": "the tenant's own words or phrases (matched like the built-in ones)"},
    },
}
KEYWORDS_OUT: dict[str, Any] = {"type": "object", "required": ["languages", "extra", "keywords"], "properties": {
    "languages": {"type": "array", "items": {"type": "string"}},
    "extra": {"type": "array", "items": {"type": "string"}},
    "keywords": {"type": "array", "items": {"type": "string"}, "description": "every word now applied"}}}


def _keywords_answer(settings: dict[str, Any]) -> dict[str, Any]:
    return {**settings, "keywords": list(dict.fromkeys(optout_keywords.keywords(settings)))}


async def get_keywords(request: web.Request) -> web.Response:
    return web.json_response(_keywords_answer(await tenant_keywords(request, principal(request).tenant)))


async def put_keywords(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    settings = await tenant_keywords(request, who.tenant)
    if "languages" in data:
        settings["languages"] = list(dict.fromkeys(data["languages"]))
    if "extra" in data:
        settings["extra"] = [w.strip() for w in dict.fromkeys(data["extra"]) if optout_keywords.normalize(w)]
    if not settings["languages"] and not settings["extra"]:
        raise invalid("languages", "keep at least one language or one word: replies would never count",
                      rule="keep_one_language")
    await redis_of(request).set(optout_keywords.settings_key(who.tenant), json.dumps(settings))
    await trail.record(redis_of(request), who.tenant, "settings.optout_keywords", actor=who.user, token_id=who.token_id,
                       languages=settings["languages"], extra=settings["extra"])
    return web.json_response(_keywords_answer(settings))


ROUTES = [
    Route("GET", "/v1/optout-keywords", get_keywords, "The words that make a forwarded reply an opt-out",
          "optouts.write", response=KEYWORDS_OUT, tag="people"),
    Route("PUT", "/v1/optout-keywords", put_keywords, "Choose the keyword languages and add the tenant's own words",
          "settings.write", body=KEYWORDS_IN, response=KEYWORDS_OUT, tag="people"),
    Route("POST", "/v1/optouts", add_optout, "Record an opt-out (CRM, SMS STOP keyword reply)", "optouts.write",
          body=OPTOUT_IN, response=OPTOUT_OUT, status=201, tag="people"),
    Route("POST", "/v1/consents", add_consent, "Record a consent given or withdrawn, with its evidence",
          "consents.write", body=CONSENT_IN, response=CONSENTS, status=201, tag="people"),
    Route("GET", "/v1/consents", list_consents, "A person's consent records, oldest first", "consents.read",
          response=CONSENTS, query={"phone": _PHONE, "country": _COUNTRY}, tag="people"),
]
