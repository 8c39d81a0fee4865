"""The console's compliance page, over HTTP: look up one number, and how fresh each registry copy is.

`GET /v1/compliance/lookup?phone=...` answers, for one person of the caller's tenant: the gate's decisions made
about the number (newest first, from the audit trail, found by its keyed hash `person`), each reason with its
code and its text for people; a decision now (what-if, for a campaign or a generic telemarketing call) with the
next allowed time; the opt-outs and consent records on file; the time zones of the person (from the number),
so the page shows times in the person's local time. The lookup is itself audited (who asked about whom).

`GET /v1/compliance/registries` lists every registry the rule packs use or that is loaded: the copy's date,
its age, the largest age the packs allow (their `registry_freshness` rules) and a verdict: fresh, stale
(the gate denies calls that need it: REGISTRY_STALE), missing, or not used by any pack.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer.audit import AuditLog, stream_key
from dialer.contacts.store import _s
from dialer.facts import campaign_dnc_key, company_dnc_key, optout_from_json
from dialer.registry.store import RegistryStore
from gateway import clock, trail
from gateway.api.facts import _consent, e164
from gateway.api.gatecheck import GATE_ERRORS, decision_json
from gateway.api.registries import NATIONAL
from gateway.api.support import gate_of, raw_redis, sync
from gateway.errors import invalid
from gateway.routing import SERVICES, Route, principal, query, redis_of
from rules.caller_id import NOT_JUDGED
from rules.engine import REASON_CODES, situate
from rules.model import Campaign, Contact

AUDIT_SCAN = 50_000  # newest audit entries searched for decisions about the number
DECISIONS_SHOWN = 50

_PHONE = {"type": "string", "minLength": 3, "maxLength": 40, "description": "E.164, or national with country"}
LOOKUP_QUERY = {"phone": _PHONE, "country": {"type": "string", "pattern": "^[A-Za-z]{2}$"},
                "campaign": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$",
                             "description": "decide now as this campaign (default: a telemarketing call)"}}
_REASON = {"type": "object", "properties": {"code": {"type": "string"}, "text": {"type": "string"},
                                             "rule": {"type": "string"}, "until": {"type": "string", "nullable": True}}}
LOOKUP: dict[str, Any] = {"type": "object", "required": ["phone", "zones", "decisions", "now", "optouts", "consents"],
                          "properties": {
    "phone": {"type": "string"}, "masked": {"type": "string"},
    "zones": {"type": "array", "items": {"type": "string"}, "description": "the person's time zones (IANA)"},
    "jurisdictions": {"type": "array", "items": {"type": "string"}},
    "now": {"type": "object", "additionalProperties": {}, "description": "a decision now (not reserved)"},
    "decisions": {"type": "array", "items": {"type": "object", "properties": {
        "seq": {"type": "integer"}, "at": {"type": "string"}, "mode": {"type": "string"},
        "campaign": {"type": "string"}, "allowed": {"type": "boolean"}, "reasons": {"type": "array", "items": _REASON},
        "next_allowed_at": {"type": "string", "nullable": True}, "call_id": {"type": "string", "nullable": True}}}},
    "optouts": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
    "consents": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
    "reason_texts": {"type": "object", "additionalProperties": {"type": "string"}}}}
REGISTRIES: dict[str, Any] = {"type": "object", "required": ["items"], "properties": {"items": {
    "type": "array", "items": {"type": "object", "required": ["name", "state"], "properties": {
        "name": {"type": "string"}, "state": {"type": "string", "enum": ["fresh", "stale", "missing", "unused"]},
        "text": {"type": "string"}, "loaded_at": {"type": "string", "nullable": True},
        "copy_date": {"type": "string", "nullable": True}, "age_days": {"type": "number", "nullable": True},
        "max_age_days": {"type": "integer", "nullable": True}, "rows": {"type": "integer", "nullable": True},
        "packs": {"type": "array", "items": {"type": "string"}}}}}}}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reason_text(code: str) -> str:
    return REASON_CODES.get(code, code.replace("_", " ").lower())


def decisions_about(client: Any, tenant: str, person: str, limit: int = DECISIONS_SHOWN) -> list[dict[str, Any]]:
    """The gate's decisions about one person (keyed hash), newest first, from the tenant's audit trail."""
    key, end, scanned, found = stream_key(tenant), "+", 0, []
    while scanned < AUDIT_SCAN and len(found) < limit:
        chunk = client.xrevrange(key, end, "-", count=1000)
        for _, fields in chunk:
            f = {_s(k): _s(v) for k, v in fields.items()}
            if f.get("kind") != "gate_decision":
                continue
            payload = json.loads(f.get("payload") or "{}")
            if payload.get("person") != person:
                continue
            found.append({"seq": int(f.get("seq") or 0), "at": f.get("at"), "mode": payload.get("mode"),
                          "campaign": payload.get("campaign"), "allowed": payload.get("allowed"),
                          "reasons": [{"code": r[0], "rule": r[1], "until": r[2], "text": reason_text(r[0])}
                                      for r in payload.get("reasons", [])],
                          "next_allowed_at": payload.get("next_allowed_at"), "call_id": payload.get("call_id")})
            if len(found) >= limit:
                break
        scanned += len(chunk)
        if len(chunk) < 1000:
            break
        end = "(" + _s(chunk[-1][0])
    return found


def optouts_of(client: Any, tenant: str, number: str, campaigns: list[str]) -> list[dict[str, Any]]:
    """The company opt-out and every campaign opt-out of the number."""
    keys = [(None, company_dnc_key(tenant))] + [(c, campaign_dnc_key(tenant, c)) for c in campaigns]
    pipe = client.pipeline(transaction=False)
    for _, key in keys:
        pipe.hget(key, number)
    out = []
    for (_, _key), raw in zip(keys, pipe.execute(), strict=True):
        if raw:
            optout = optout_from_json(raw)
            out.append({"scope": optout.scope, "campaign": optout.campaign, "at": _iso(optout.at),
                        "source": optout.source, "keyword": optout.keyword, "call_id": optout.call_id})
    return out


async def lookup(request: web.Request) -> web.Response:
    who, params = principal(request), query(request)
    if "phone" not in params:
        raise invalid("phone", "is required", code="missing_field")
    number = e164(params["phone"], params.get("country"))
    store = request.app[SERVICES]["campaigns"]
    if params.get("campaign"):
        stored = await sync(store.get, who.tenant, params["campaign"])
        if stored is None:
            raise invalid("campaign", "no such campaign")
        campaign = stored.gate_campaign()
    else:
        campaign = Campaign(id="lookup", tenant=who.tenant, purpose="telemarketing", caller_id=NOT_JUDGED)
    gate = gate_of(request)
    client = raw_redis(request)
    country = (params.get("country") or "").upper() or None
    at = await clock.now(request)  # Redis's clock, as the engine's (gateway/clock.py)
    now = await sync(gate.check, Contact(phone=number, country=country), campaign, at)
    decisions = await sync(decisions_about, client, who.tenant, gate.audit.person_ref(number))
    campaign_ids = await sync(store.ids, who.tenant)
    optouts = await sync(optouts_of, client, who.tenant, number, campaign_ids)
    consents = await sync(request.app[SERVICES]["facts"].consents, who.tenant, number)
    situation = situate(number, country, None, None)
    await trail.record(redis_of(request), who.tenant, "compliance.lookup", actor=who.user, token_id=who.token_id,
                       phone=AuditLog.mask(number), campaign=params.get("campaign", ""))
    now_json = {**decision_json(now), "campaign": params.get("campaign")}
    for reason in now_json["reasons"]:
        reason["summary"] = reason_text(reason["code"])
    codes = {r["code"] for d in decisions for r in d["reasons"]} | {r["code"] for r in now_json["reasons"]}
    return web.json_response({
        "phone": number, "masked": AuditLog.mask(number), "zones": list(situation.zones),
        "jurisdictions": list(situation.codes), "now": now_json, "decisions": decisions, "optouts": optouts,
        "consents": [_consent(c) for c in consents], "reason_texts": {c: reason_text(c) for c in sorted(codes)}})


def registry_freshness(store: RegistryStore, packs: Any, at: datetime) -> list[dict[str, Any]]:
    """Per registry: how old the live copy is against the largest age the rule packs allow."""
    limits: dict[str, list[tuple[int, str]]] = {}
    for pack in packs.packs:
        for rule in pack.rules:
            if rule.kind == "registry_freshness":
                limits.setdefault(rule.params["registry"], []).append((int(rule.params["max_age_days"]), pack.id))
    out = []
    for name in sorted(set(NATIONAL) | set(store.names()) | set(limits)):
        status = store.status(name)
        max_age = min((days for days, _ in limits.get(name, [])), default=None)
        item: dict[str, Any] = {"name": name, "packs": sorted({p for _, p in limits.get(name, [])}),
                                "max_age_days": max_age, "loaded_at": None, "copy_date": None, "age_days": None,
                                "rows": None}
        if status is not None:
            age = (at - status.copy_date).total_seconds() / 86400
            item.update(loaded_at=_iso(status.loaded_at), copy_date=_iso(status.copy_date), age_days=round(age, 2),
                        rows=status.rows)
        if status is None:
            state = "missing" if max_age is not None else "unused"
            text = ("no copy loaded: the gate denies calls that need it (REGISTRY_STALE)" if state == "missing"
                    else "no copy loaded; no rule pack uses it")
        elif max_age is None:
            state, text = "unused", f"copy {item['age_days']} days old; no rule pack sets a largest age"
        elif item["age_days"] > max_age:
            state = "stale"
            text = (f"copy {item['age_days']} days old, over the {max_age} days allowed: the gate denies calls that "
                    "need it (REGISTRY_STALE); load a new copy")
        else:
            state = "fresh"
            text = f"copy {item['age_days']} days old; at most {max_age} days allowed"
        out.append({**item, "state": state, "text": text})
    return out


async def registries(request: web.Request) -> web.Response:
    gate = gate_of(request)
    items = await sync(registry_freshness, RegistryStore(raw_redis(request)), gate.packs, await clock.now(request))
    return web.json_response({"items": items})


ROUTES = [
    Route("GET", "/v1/compliance/lookup", lookup, "Look up a number: the gate's decisions about it with reasons in "
          "words, a decision now with the next allowed time, its opt-outs and consents, its time zones",
          "gate.check", response=LOOKUP, query=LOOKUP_QUERY, tag="gate", errors=GATE_ERRORS),
    Route("GET", "/v1/compliance/registries", registries, "Registry freshness: each registry copy's age against "
          "the largest age the rule packs allow", "registry.read", response=REGISTRIES, tag="registries",
          errors=GATE_ERRORS),
]
