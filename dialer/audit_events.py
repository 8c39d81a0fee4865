"""What each part of the dialer writes to the tenant's audit trail (dialer/audit.py), in one place.

The audit trail outlives erasure, so no entry holds a phone number or a name: people are referenced by
the keyed hash `person` (AuditLog.person_ref), the masked number (`+33*******01`) and the tenant's contact
id. Who writes what:

  optout, consent        dialer.facts.FactStore (built with an AuditLog), in the same transaction as the write
  gate_decision ...      dialer.gate (its own scripts)
  import                 dialer.contacts.jobs, when an import is committed or fails
  registry_load          dialer.registry.jobs, to every tenant's trail (registries are shared)
  campaign_control       dialer.campaigns.CampaignStore (gateway, engine, scripts), in the same script as the move
  token_use, api         the gateway, through gateway.trail and the sink `dialer serve` installs (gateway_sink)
  export                 dialer.contacts.export (file exports are also registered for erasure and retention)
  access, rectification, erasure   dialer.privacy
  retention              dialer.retention
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis

from dialer.audit import AuditEvent, AuditLog, iso, trail_sink
from rules.model import Consent

TENANTS = "tenants"  # set of tenant ids (gateway/auth.py)


def exports_key(tenant: str) -> str:
    """hash path -> JSON {kind, at, rows, list, campaign}: export files written for the tenant, so that erasure can
    remove a person from them and retention can delete them."""
    return f"t:{tenant}:exports"


def _ref(audit: AuditLog, e164: str) -> str | None:
    """The keyed reference, or None when no key is configured (the entry is still written: an opt-out is never
    held back for want of a key; dialer.privacy then finds it by contact id only)."""
    try:
        return audit.person_ref(e164)
    except ValueError:
        return None


def optout_event(audit: AuditLog, e164: str, optout: Any, actor: str) -> AuditEvent:
    return AuditEvent("optout", actor, {
        "person": _ref(audit, e164), "phone": audit.mask(e164), "scope": optout.scope,
        "campaign": optout.campaign, "source": optout.source, "call_id": optout.call_id,
        "keyword": optout.keyword is not None}, optout.at)


def consent_event(audit: AuditLog, e164: str, consent: Consent, actor: str) -> AuditEvent:
    """A consent given or withdrawn: the evidence fields themselves stay in the fact store (they are personal
    data that retention and erasure remove); the trail proves when and from where it was recorded, and carries
    keyed references to the evidence and the wording shown (`evidence_ref`, `text_ref`: the same keyed hash as
    `person`), so the record's consent ledger can prove, years on, that a document produced is the one recorded."""
    at = consent.withdrawn_at if consent.given_at is None else consent.given_at
    return AuditEvent("consent", actor, {
        "person": _ref(audit, e164), "phone": audit.mask(e164),
        "action": "withdraw" if consent.given_at is None else "grant", "purpose": consent.purpose,
        "campaign": consent.campaign, "source": consent.source, "written": consent.written,
        "evidence": bool(consent.evidence), "text": bool(consent.text), "ip": bool(consent.ip),
        "expires_at": consent.expires_at,
        "evidence_ref": _ref(audit, "evidence\n" + consent.evidence) if consent.evidence else None,
        "text_ref": _ref(audit, "text\n" + consent.text) if consent.text else None}, at or datetime.now(UTC))


def record(client: redis.Redis, tenant: str, kind: str, actor: str, payload: dict[str, Any], at: datetime) -> int:
    """Append one entry (no person reference needed, so no key); returns its seq."""
    return AuditLog(client).append(tenant, kind, actor, payload, at).seq


def import_finished(client: redis.Redis, tenant: str, import_id: str, at: datetime) -> None:
    """An import committed or failed: its list, campaign, file name and summary (counts only)."""
    values = client.hmget(f"t:{tenant}:import:{import_id}", "list", "campaign", "file_name", "status", "error_code",
                          "summary", "fingerprint")
    names = ("list", "campaign", "file_name", "status", "error_code", "summary", "fingerprint")
    fields = {n: (v.decode() if isinstance(v, bytes) else v) for n, v in zip(names, values, strict=True)}
    summary = json.loads(fields.pop("summary") or "{}")
    record(client, tenant, "import", "job:import", {"import_id": import_id, **fields, "summary": summary}, at)


def registry_loaded(client: redis.Redis, report: dict[str, Any], at: datetime, actor: str = "job:registry") -> int:
    """A national registry copy was loaded (or refused): every tenant's trail records it, since every tenant's
    gate decisions rely on it. Returns the number of tenants told."""
    tenants = sorted((t.decode() if isinstance(t, bytes) else t) for t in client.smembers(TENANTS))
    payload = {k: v for k, v in report.items() if k not in ("bad_lines", "samples")}
    for tenant in tenants:
        record(client, tenant, "registry_load", actor, payload, at)
    return len(tenants)


def export_written(client: redis.Redis, tenant: str, kind: str, path: str, rows: int, at: datetime, *,
                   actor: str, list_id: str | None = None, campaign: str | None = None) -> None:
    """An export file was written: register it (erasure rewrites it, retention deletes it) and audit it."""
    entry = {"kind": kind, "at": iso(at), "rows": rows, "list": list_id, "campaign": campaign}
    client.hset(exports_key(tenant), path, json.dumps(entry, sort_keys=True))
    record(client, tenant, "export", actor, {**entry, "path": path}, at)


# --- the gateway's events ---------------------------------------------------------------------------

# Actions the gateway reports that are audited where the data is written, with the person's keyed reference
# and in the same transaction (FactStore for opt-outs and consents, dialer.privacy for subject requests,
# dialer.campaigns for campaign creation, configuration and moves): the gateway's copy would only duplicate
# them. The request's token stays on record: the gateway's `token.use` entry of that request.
AUDITED_AT_SOURCE = ("optout.", "consent.", "subject.", "campaign.")


async def gateway_sink(client: Any, tenant: str, event: dict[str, Any]) -> None:
    """The gateway.trail sink `dialer serve` installs: dialer.audit.trail_sink (the gate helper's: same chain,
    asyncio client, kinds by ACTION_KINDS) minus the actions audited at their source. Events carry the token
    id, never the token."""
    if str(event.get("action", "")).startswith(AUDITED_AT_SOURCE):
        return
    await trail_sink(client, tenant, event)
