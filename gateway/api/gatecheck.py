"""The gate, asked over HTTP: a what-if check, and "why is this contact not being called".

`POST /v1/gate/check` decides for one contact and one campaign at an instant (default now) with the real
gate (dialer/gate.py: registries, DNC lists, consent, attempt history, rule packs) and reserves nothing. The
check is recorded in the audit trail (mode `check`): who asked about whom is evidence too.

`GET /v1/campaigns/{id}/contacts/{contact}/why` answers for a contact id, or a number written as its E.164
digits without the `+` (`33145678901`; a `+` cannot appear in a path value). It combines:
  - the campaign runtime's queue entry (dialer/runtime/queues.py keys `t:{T}:campaign:{C}:q:*`): state
    (ready, wait, inflight, final), when it is due, why it left the queue, its last step;
  - the gate's latest reservation decision about that person for that campaign, from the audit trail
    (the newest AUDIT_SCAN entries are searched, newest first);
  - a fresh what-if decision now (not audited: a read), with reasons and the next allowed time.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer.audit import AuditLog, iso
from dialer.contacts.scrub import contact_for_gate
from dialer.contacts.store import contacts_for_phone, get_contact
from dialer.record.trail import ArchiveFilter, newest_first
from dialer.runtime.queues import ContactQueue
from gateway import clock, trail
from gateway.api.facts import e164
from gateway.api.support import gate_of, raw_redis, sync
from gateway.clock import instant
from gateway.errors import invalid, not_found
from gateway.routing import SERVICES, Route, body, principal, redis_of
from rules.model import Contact, Decision

log = logging.getLogger(__name__)

AUDIT_SCAN = 50_000  # newest audit entries searched for the latest decision about a contact
_DIGITS = re.compile(r"^[0-9]{6,15}$")

REASON: dict[str, Any] = {"type": "object", "required": ["code"], "properties": {
    "code": {"type": "string"}, "text": {"type": "string"}, "rule": {"type": "string"},
    "source": {"type": "string"}, "until": {"type": "string", "nullable": True}}}
DECISION: dict[str, Any] = {"type": "object", "required": ["allowed", "at", "reasons"], "properties": {
    "allowed": {"type": "boolean"}, "at": {"type": "string"},
    "reasons": {"type": "array", "items": REASON},
    "next_allowed_at": {"type": "string", "nullable": True},
    "jurisdictions": {"type": "array", "items": {"type": "string"}},
    "packs": {"type": "array", "items": {"type": "string"}}}}
CHECK_IN: dict[str, Any] = {
    "type": "object", "required": ["campaign"], "additionalProperties": False,
    "properties": {
        "campaign": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
        "contact_id": {"type": "string", "pattern": r"^[A-Za-z0-9_.@-]{1,64}$",
                       "description": "a stored contact (else give phone and the address fields)"},
        "phone": {"type": "string", "minLength": 3, "maxLength": 40},
        "country": {"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "address country (ISO code)"},
        "postal_code": {"type": "string", "maxLength": 20},
        "state": {"type": "string", "maxLength": 10},
        "at": {"type": "string", "format": "date-time", "description": "decide at this instant (default now)"},
    },
}
CHECK_OUT: dict[str, Any] = {"type": "object", "required": ["campaign", "decision"], "properties": {
    "campaign": {"type": "string"}, "contact_id": {"type": "string", "nullable": True},
    "phone": {"type": "string", "description": "masked"}, "decision": DECISION}}
WHY_OUT: dict[str, Any] = {"type": "object", "required": ["campaign", "contact_id", "now"], "properties": {
    "campaign": {"type": "string"}, "contact_id": {"type": "string"}, "phone": {"type": "string"},
    "in_campaign": {"type": "boolean"},
    "queue": {"type": "object", "nullable": True, "additionalProperties": {}},
    "last_decision": {"type": "object", "nullable": True, "additionalProperties": {}},
    "now": DECISION,
    "next_attempt_at": {"type": "string", "nullable": True},
    "summary": {"type": "string"}}}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "allowed": decision.allowed,
        "at": _iso(decision.at),
        "reasons": [{"code": r.code, "text": r.text, "rule": r.rule, "source": r.source, "until": _iso(r.until)}
                    for r in decision.reasons],
        "next_allowed_at": _iso(decision.next_allowed_at),
        "jurisdictions": list(decision.jurisdictions),
        "packs": [f"{p.id}@{p.version}" for p in decision.packs],
    }


async def _campaign(request: web.Request, tenant: str, campaign_id: str, *, in_body: bool) -> Any:
    stored = await sync(request.app[SERVICES]["campaigns"].get, tenant, campaign_id)
    if stored is None:
        if in_body:
            raise invalid("campaign", "no such campaign", rule="no_such_campaign")
        raise not_found("campaign")
    return stored


async def check(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    stored = await _campaign(request, who.tenant, data["campaign"], in_body=True)
    contact_id = data.get("contact_id")
    if contact_id:
        found = await sync(get_contact, raw_redis(request), who.tenant, contact_id)
        if found is None:
            raise invalid("contact_id", "no such contact", rule="no_such_contact")
        contact = contact_for_gate(found, found["phone"])
    elif data.get("phone"):
        contact = Contact(phone=e164(data["phone"], data.get("country")),
                          country=(data.get("country") or "").upper() or None,
                          postal_code=data.get("postal_code"), state=data.get("state"))
    else:
        raise invalid("phone", "give phone (or contact_id)", code="missing_field", rule="phone_or_contact")
    gate = gate_of(request)
    decision = await sync(gate.check, contact, stored.gate_campaign(), await instant(request, data.get("at")),
                          contact_id=contact_id, audit=True)
    await trail.record(redis_of(request), who.tenant, "gate.check", actor=who.user, token_id=who.token_id,
                       campaign=stored.id, phone=AuditLog.mask(contact.phone), allowed=decision.allowed)
    return web.json_response({"campaign": stored.id, "contact_id": contact_id, "phone": AuditLog.mask(contact.phone),
                              "decision": decision_json(decision)})


def queue_entry(client: Any, tenant: str, campaign: str, contact_id: str,
                moved: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The runtime's queue entry for the contact (dialer/runtime/queues.py layout), or None if never queued.
    `moved`: its final in the record (a contact that left a record window leaves Redis), if any."""
    found = ContactQueue(client, tenant, campaign).find(contact_id=contact_id)
    if not found:
        if moved is None:
            return None
        return {"state": "final", "attempts": int(moved.get("attempts") or 0),
                "final": _instants_as_iso(moved)}
    hit = found[0]
    entry: dict[str, Any] = {"state": hit.state, "attempts": hit.attempts}
    if hit.due is not None:
        entry["due_at"] = _iso(datetime.fromtimestamp(hit.due, UTC))
    for name, doc in (("final", hit.final), ("last", hit.last)):
        if doc:
            entry[name] = _instants_as_iso(doc)
    return entry


async def _moved_final(request: web.Request, tenant: str, campaign: str, contact_id: str) -> dict[str, Any] | None:
    """The contact's final in the record's campaign_finals, or None (none there, or no record to ask)."""
    from dialer.record.contacts import campaign_final
    from dialer.record.store import RecordUnavailable
    from gateway.api.reports import record_of
    from gateway.errors import ApiError

    try:
        return await sync(campaign_final, record_of(request), tenant, campaign, contact_id)
    except (ApiError, RecordUnavailable):
        return None


async def _last_decision(request: web.Request, client: Any, tenant: str, campaign: str, person: str,
                         contact_id: str) -> dict[str, Any] | None:
    """last_decision over the whole trail; with the record unreachable, over the Redis tail (said in the log)."""
    from dialer.record.store import RecordUnavailable
    from gateway.api.reports import record_of
    from gateway.errors import ApiError

    try:
        return await sync(last_decision, client, tenant, campaign, person, contact_id, record_of(request))
    except (ApiError, RecordUnavailable) as exc:
        log.warning("tenant %s: the archived audit trail is not readable (%s); the last decision is looked up in "
                    "Redis's tail only", tenant, getattr(exc, "detail", exc))
        return await sync(last_decision, client, tenant, campaign, person, contact_id)


def _instants_as_iso(doc: Any) -> Any:
    """The runtime stores instants as epoch seconds (`at`, `*_at`); API bodies give ISO 8601 everywhere."""
    if not isinstance(doc, dict):
        return doc
    out = dict(doc)
    for key, value in doc.items():
        if (key == "at" or key.endswith("_at")) and isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = _iso(datetime.fromtimestamp(float(value), UTC))
    return out


def last_decision(client: Any, tenant: str, campaign: str, person: str, contact_id: str,
                  record: Any = None) -> dict[str, Any] | None:
    """The newest `reserve` gate decision about this person in this campaign, from the audit trail: the Redis tail,
    then the part archived in `record` (dialer/record/trail.py; None: Redis only). At most AUDIT_SCAN entries (of
    the archived part, gate decisions only: the kind is applied in SQL there)."""
    decisions = ArchiveFilter(kind="gate_decision")
    for scanned, entry in enumerate(newest_first(client, record, tenant, chunk=1000, match=decisions)):
        if scanned >= AUDIT_SCAN:
            return None
        if entry.kind != "gate_decision":
            continue
        payload = entry.payload
        if payload.get("mode") != "reserve" or payload.get("campaign") != campaign:
            continue
        if payload.get("person") == person or (contact_id and payload.get("contact_id") == contact_id):
            return {"seq": entry.seq, "at": iso(entry.at), "allowed": payload.get("allowed"),
                    "reasons": [{"code": r[0], "rule": r[1], "until": r[2]} for r in payload.get("reasons", [])],
                    "next_allowed_at": payload.get("next_allowed_at"), "call_id": payload.get("call_id"),
                    "jurisdictions": payload.get("jurisdictions", []), "packs": payload.get("packs", [])}
    return None


def _summary(queue: dict[str, Any] | None, last: dict[str, Any] | None, now: Decision) -> tuple[str, str | None]:
    """One sentence for people, and when the next attempt can be."""
    codes = ", ".join(r.code for r in now.reasons)
    if queue and queue["state"] == "final":
        final = queue.get("final") or {}
        return f"left the campaign's queue: {final.get('reason', 'final')} {final.get('detail', '')}".strip(), None
    if queue and queue["state"] == "inflight":
        return "being called now", None
    if queue and queue["state"] == "wait":
        why = (queue.get("last") or {}).get("reason") or (last or {}).get("reasons", [{}])[0].get("code", "")
        return f"waiting until {queue.get('due_at')} ({why or 'retry'})", queue.get("due_at")
    if not now.allowed:
        when = _iso(now.next_allowed_at)
        if when:
            return f"the gate denies it now ({codes}); allowed again at {when}", when
        return f"the gate denies it ({codes}) until the facts change", None
    if queue and queue["state"] == "ready":
        return "allowed now; waiting its turn in the queue", None
    return "allowed now, but not queued in this campaign (is the campaign running and its list attached?)", None


async def why(request: web.Request) -> web.Response:
    who = principal(request)
    campaign_id, ref = request.match_info["id"], request.match_info["contact"]
    stored = await _campaign(request, who.tenant, campaign_id, in_body=False)
    client = raw_redis(request)
    contact: dict[str, Any] | None = None
    if _DIGITS.match(ref):
        number = "+" + ref
        ids = await sync(contacts_for_phone, client, who.tenant, number)
        queued = await sync(ContactQueue(client, who.tenant, campaign_id).find, e164=number)
        cid = queued[0].contact_id if queued else (sorted(ids)[0] if ids else None)
        contact = await sync(get_contact, client, who.tenant, cid) if cid else None
    else:
        contact = await sync(get_contact, client, who.tenant, ref)
    if contact is None:
        raise not_found("contact")
    cid, number = str(contact["id"]), contact["phone"]
    gate = gate_of(request)
    queue = await sync(queue_entry, client, who.tenant, campaign_id, cid)
    if queue is None:  # a contact that left a record window is only in the record now
        queue = await sync(queue_entry, client, who.tenant, campaign_id, cid, await _moved_final(request, who.tenant,
                                                                                               campaign_id, cid))
    person = gate.audit.person_ref(number) if number.startswith("+") else ""
    last = await _last_decision(request, client, who.tenant, campaign_id, person, cid)
    now = await sync(gate.check, contact_for_gate(contact, number), stored.gate_campaign(), await clock.now(request),
                     contact_id=cid)
    members = f"t:{{{who.tenant}}}:campaign:{campaign_id}:contacts"
    in_campaign = bool(queue) or bool(await sync(client.sismember, members, cid)) \
        or contact.get("list") in (stored.config.get("lists") or [])
    summary, next_at = _summary(queue, last, now)
    return web.json_response({"campaign": campaign_id, "contact_id": cid, "phone": AuditLog.mask(number),
                              "in_campaign": in_campaign, "queue": queue, "last_decision": last,
                              "now": decision_json(now), "next_attempt_at": next_at, "summary": summary})


GATE_ERRORS = {"503": "no gate: security.secret_key is unset"}

ROUTES = [
    Route("POST", "/v1/gate/check", check, "What-if: the gate's decision for a contact and a campaign (no reservation)",
          "gate.check", body=CHECK_IN, response=CHECK_OUT, tag="gate", errors=GATE_ERRORS),
    Route("GET", "/v1/campaigns/{id}/contacts/{contact}/why", why,
          "Why is this contact (id, or E.164 digits without +) not being called: queue state, the gate's latest "
          "decision, and a decision now, with reasons and the next time", "gate.check", response=WHY_OUT,
          resource="campaign_contact", tag="gate", errors=GATE_ERRORS),
]
