"""The scenario format of `dialer gate check` (a public interface, docs/gate.md), and decisions as JSON.

A scenario is one JSON object: the contact, the campaign, every fact the gate needs, and the instant.
`parse_scenario` turns it into the engine's vocabulary or raises ScenarioError naming the field;
`decision_json` is the answer line. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rules.model import (
    AUDIENCES,
    DIALING_MODES,
    OUTCOMES,
    PURPOSES,
    VOICES,
    Attempt,
    Campaign,
    Consent,
    Contact,
    Decision,
    Facts,
    Lists,
    Relationship,
)

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
TOP_FIELDS = {"id", "at", "contact", "campaign", "consent", "relationships", "lists", "registry_copies", "history"}


class ScenarioError(ValueError):
    """A malformed scenario; str() names the field."""


@dataclass(frozen=True)
class Scenario:
    id: Any
    at: datetime
    contact: Contact
    campaign: Campaign
    facts: Facts


def _table(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ScenarioError(f"{where}: expected an object")
    return v


def _known(v: dict[str, Any], where: str, allowed: set[str]) -> None:
    unknown = set(v) - allowed
    if unknown:
        raise ScenarioError(f"{where}.{sorted(unknown)[0]}: unknown field")


def _instant(v: Any, where: str, required: bool = True) -> datetime | None:
    if v is None:
        if required:
            raise ScenarioError(f"{where}: required instant (ISO 8601 with a zone, e.g. 2026-01-12T08:30:00Z)")
        return None
    if not isinstance(v, str):
        raise ScenarioError(f"{where}: expected an ISO 8601 string")
    try:
        value = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"{where}: not an ISO 8601 instant: {v!r}") from None
    if value.tzinfo is None:
        raise ScenarioError(f"{where}: the instant needs a zone (Z or +hh:mm)")
    return value.astimezone(UTC)


def _opt_str(v: Any, where: str) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise ScenarioError(f"{where}: expected a string or null")
    return v.strip() or None


def _choice(v: Any, where: str, allowed: tuple[str, ...], default: str) -> str:
    if v is None:
        return default
    if v not in allowed:
        raise ScenarioError(f"{where}: expected one of {', '.join(allowed)}")
    return v


def _bool(v: Any, where: str, default: bool = False) -> bool:
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ScenarioError(f"{where}: expected true or false")
    return v


def _list(v: Any, where: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ScenarioError(f"{where}: expected a list")
    return v


def _contact(v: Any) -> Contact:
    v = _table(v, "contact")
    _known(v, "contact", {"phone", "country", "postal_code", "state"})
    phone = v.get("phone")
    if not isinstance(phone, str) or not phone.strip():
        raise ScenarioError("contact.phone: required string")
    postal = v.get("postal_code")
    if isinstance(postal, int) and not isinstance(postal, bool):
        raise ScenarioError("contact.postal_code: expected a string (leading zeros matter)")
    return Contact(phone=phone.strip(), country=_opt_str(v.get("country"), "contact.country"),
                   postal_code=_opt_str(postal, "contact.postal_code"), state=_opt_str(v.get("state"), "contact.state"))


def _campaign(v: Any) -> Campaign:
    v = _table(v, "campaign")
    _known(v, "campaign", {"id", "tenant", "purpose", "audience", "voice", "recording", "dialing",
                           "contract_related", "caller_id"})
    cid = v.get("id")
    if not isinstance(cid, str) or not cid:
        raise ScenarioError("campaign.id: required string")
    tenant = v.get("tenant", "default")
    if not isinstance(tenant, str) or not tenant:
        raise ScenarioError("campaign.tenant: expected a string")
    return Campaign(
        id=cid, tenant=tenant,
        purpose=_choice(v.get("purpose"), "campaign.purpose", PURPOSES, "telemarketing"),
        audience=_choice(v.get("audience"), "campaign.audience", AUDIENCES, "consumer"),
        voice=_choice(v.get("voice"), "campaign.voice", VOICES, "human"),
        recording=_bool(v.get("recording"), "campaign.recording"),
        # absent: unknown, which every dialing-mode rule matches (fail closed)
        dialing=_choice(v["dialing"], "campaign.dialing", DIALING_MODES, "") if v.get("dialing") is not None
        else None,
        contract_related=_bool(v.get("contract_related"), "campaign.contract_related"),
        caller_id=_caller_id(v.get("caller_id")),
    )


def _caller_id(v: Any) -> str | None:
    """Absent or null: not stated (the caller-ID rules deny with MISSING_DATA); "": masked; else E.164, kept as
    given so that a well-formed but unassigned number is a decision (CALLER_ID_NOT_ALLOWED), not an error."""
    if v is None:
        return None
    if not isinstance(v, str) or (v.strip() and not _E164.match(v.strip())):
        raise ScenarioError('campaign.caller_id: expected an E.164 number ("+33162000000") or "" for none shown')
    return v.strip()


def _consent(v: Any, where: str) -> Consent:
    v = _table(v, where)
    _known(v, where, {"given_at", "purpose", "written", "expires_at", "withdrawn_at", "source", "evidence", "channel",
                      "campaign", "ip", "text"})
    given = _instant(v.get("given_at"), f"{where}.given_at", required=False)
    withdrawn = _instant(v.get("withdrawn_at"), f"{where}.withdrawn_at", required=False)
    if given is None and withdrawn is None:
        raise ScenarioError(f"{where}: needs given_at, withdrawn_at or both")
    purpose = v.get("purpose", "telemarketing")
    if not isinstance(purpose, str) or purpose not in (*PURPOSES, "*", "any"):
        raise ScenarioError(f"{where}.purpose: expected one of {', '.join(PURPOSES)} or *")
    return Consent(
        given_at=given, purpose=purpose, written=_bool(v.get("written"), f"{where}.written"),
        expires_at=_instant(v.get("expires_at"), f"{where}.expires_at", required=False), withdrawn_at=withdrawn,
        source=_opt_str(v.get("source"), f"{where}.source") or "",
        evidence=_opt_str(v.get("evidence"), f"{where}.evidence") or "",
        channel=_opt_str(v.get("channel"), f"{where}.channel") or "phone",
        campaign=_opt_str(v.get("campaign"), f"{where}.campaign"),
        ip=_opt_str(v.get("ip"), f"{where}.ip"), text=_opt_str(v.get("text"), f"{where}.text"),
    )


def _relationship(v: Any, where: str) -> Relationship:
    v = _table(v, where)
    _known(v, where, {"kind", "at", "until"})
    kind = v.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ScenarioError(f"{where}.kind: required string (purchase, transaction, inquiry, contract ...)")
    return Relationship(kind=kind, at=_instant(v.get("at"), f"{where}.at"),  # type: ignore[arg-type]
                        until=_instant(v.get("until"), f"{where}.until", required=False))


def _lists(v: Any) -> Lists:
    if v is None:
        return Lists()
    v = _table(v, "lists")
    _known(v, "lists", {"national", "company", "campaign"})
    national = v.get("national")
    if national is None:
        nat: dict[str, bool] = {}  # unknown: a regime that needs it denies with MISSING_DATA
    elif isinstance(national, bool):
        nat = {"*": national}
    elif isinstance(national, dict) and all(isinstance(x, bool) for x in national.values()):
        nat = dict(national)
    else:
        raise ScenarioError("lists.national: expected true, false or {registry name: true|false}")
    return Lists(national=nat, company=_bool(v.get("company"), "lists.company"),
                 campaign=_bool(v.get("campaign"), "lists.campaign"))


def _copies(v: Any) -> dict[str, datetime]:
    if v is None:
        return {}
    v = _table(v, "registry_copies")
    out = {}
    for name, when in v.items():
        instant = _instant(when, f"registry_copies.{name}", required=False)
        if instant is not None:
            out[name] = instant
    return out


def _attempt(v: Any, where: str, default_campaign: str) -> Attempt:
    v = _table(v, where)
    _known(v, where, {"at", "campaign", "outcome", "call_id"})
    campaign = v.get("campaign", default_campaign)
    if not isinstance(campaign, str):
        raise ScenarioError(f"{where}.campaign: expected a string")
    return Attempt(at=_instant(v.get("at"), f"{where}.at"),  # type: ignore[arg-type]
                   campaign=campaign, outcome=_choice(v.get("outcome"), f"{where}.outcome", OUTCOMES, "unknown"),
                   call_id=_opt_str(v.get("call_id"), f"{where}.call_id"))


def parse_scenario(data: Any) -> Scenario:
    """A scenario object -> Scenario. Raises ScenarioError naming the field."""
    data = _table(data, "scenario")
    unknown = set(data) - TOP_FIELDS
    if unknown:
        raise ScenarioError(f"{sorted(unknown)[0]}: unknown field")
    campaign = _campaign(data.get("campaign"))
    facts = Facts(
        consent=tuple(_consent(c, f"consent[{i}]") for i, c in enumerate(_list(data.get("consent"), "consent"))),
        relationships=tuple(_relationship(r, f"relationships[{i}]")
                            for i, r in enumerate(_list(data.get("relationships"), "relationships"))),
        lists=_lists(data.get("lists")),
        registry_copies=_copies(data.get("registry_copies")),
        history=tuple(sorted((_attempt(h, f"history[{i}]", campaign.id)
                              for i, h in enumerate(_list(data.get("history"), "history"))), key=lambda a: a.at)),
    )
    return Scenario(id=data.get("id"), at=_instant(data.get("at"), "at"),  # type: ignore[arg-type]
                    contact=_contact(data.get("contact")), campaign=campaign, facts=facts)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def decision_json(decision: Decision, scenario_id: Any = None) -> dict[str, Any]:
    """The answer line: id, allowed, reasons (code, text, rule, source, until), next_allowed_at, packs,
    plus at and jurisdictions."""
    return {
        "id": scenario_id,
        "allowed": decision.allowed,
        "reasons": [{"code": r.code, "text": r.text, "rule": r.rule, "source": r.source, "until": iso(r.until)}
                    for r in decision.reasons],
        "next_allowed_at": iso(decision.next_allowed_at),
        "packs": [{"id": p.id, "version": p.version} for p in decision.packs],
        "at": iso(decision.at),
        "jurisdictions": list(decision.jurisdictions),
    }
