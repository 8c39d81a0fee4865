"""Audit entries as the record's rows (pure: no I/O).

Every change that must outlive Redis is an audit entry written in the same atomic Redis step as the change (the
gate's reserve script, FactStore's transactions, the outcome recorder): the tenant's audit stream is therefore
the outbox. Each entry becomes one audit_archive row, byte for byte, and according to its kind one row in the
table that reports read: gate_decisions (+ gate_denials), call_records, consents, optouts, usage_records. Every
row's key holds the entry's seq, so copying an entry twice inserts nothing the second time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dialer.usage.meter import MEASURES as USAGE_MEASURES  # usage_records' measure columns, in this order

# A live answer: the person (or a machine the AMD did not catch) picked up.
LIVE_OUTCOMES = ("answered", "abandoned", "opted_out", "refused")


class MalformedEntry(ValueError):
    """An audit entry lacks a field the chain needs: the archiver stops at it (verify names it)."""


@dataclass
class Rows:
    """The rows one batch of entries makes, by table, in seq order."""

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    instants: dict[str, list[datetime]] = field(default_factory=dict)  # per partitioned table, for partitions

    def add(self, table: str, row: tuple[Any, ...], instant: datetime | None = None) -> None:
        self.tables.setdefault(table, []).append(row)
        if instant is not None:
            self.instants.setdefault(table, []).append(instant)


def instant(text: Any) -> datetime | None:
    if not text or not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def add_entry(rows: Rows, tenant: str, fields: Mapping[str, str], ts: Any, shift: int = 0) -> tuple[int, str, str]:
    """Add the rows of one raw stream entry; returns (Redis seq, prev, hash). `ts` turns an instant into the
    dialect's stored value (Record.ts). Rows are keyed by the record seq, Redis's seq + `shift` (non-zero after a
    confirmed break: dialer/record/relink.py)."""
    try:
        seq = int(fields["seq"])
        written = int(fields["written"])
        at_text, kind, actor, payload_text = fields["at"], fields["kind"], fields["actor"], fields["payload"]
        body, prev, hash_ = fields["body"], fields["prev"], fields["hash"]
    except (KeyError, ValueError):
        raise MalformedEntry(f"entry {fields.get('seq', '?')} is malformed") from None
    written_at = datetime.fromtimestamp(written / 1000, UTC)
    redis_seq, seq = seq, seq + shift
    rows.add("audit_archive", (tenant, seq, at_text, written, ts(written_at), kind, actor, payload_text, body, prev,
                               hash_), written_at)
    try:
        payload = json.loads(payload_text)
    except ValueError:
        payload = None
    at = instant(at_text) or written_at
    if isinstance(payload, dict):
        derive = _DERIVED.get(kind)
        if derive is not None:
            derive(rows, tenant, seq, at, actor, payload, ts)
    return redis_seq, prev, hash_


def _gate_decision(rows: Rows, tenant: str, seq: int, at: datetime, actor: str, p: dict[str, Any], ts: Any) -> None:
    reasons = p.get("reasons") or []
    allowed = bool(p.get("allowed"))
    rows.add("gate_decisions", (tenant, seq, ts(at), _text(p.get("campaign")), _text(p.get("contact_id")),
                                _text(p.get("person")), _text(p.get("phone")), _text(p.get("mode")), allowed,
                                json.dumps(reasons, separators=(",", ":")), _text(p.get("call_id"))), at)
    if not allowed and p.get("mode") == "reserve":  # what-if checks (mode "check") reserve nothing: not a denial
        for code in dict.fromkeys(str(r[0]) for r in reasons if isinstance(r, list) and r):
            rows.add("gate_denials", (tenant, seq, ts(at), _text(p.get("campaign")), code))


def _call_outcome(rows: Rows, tenant: str, seq: int, at: datetime, actor: str, p: dict[str, Any], ts: Any) -> None:
    call = p.get("call") if isinstance(p.get("call"), dict) else {}
    outcome = str(p.get("outcome") or "unknown")
    live = call.get("live")
    cause = call.get("cause")
    rows.add("call_records", (
        tenant, seq, ts(at), _text(p.get("call_id")), _text(call.get("campaign")), _text(call.get("contact_id")),
        _text(p.get("person")), _text(p.get("phone")), outcome, _text(p.get("reported")),
        bool(live) if isinstance(live, bool) else outcome in LIVE_OUTCOMES,
        bool(call.get("abandoned")) or outcome == "abandoned",
        _num(call.get("ring_s")), _num(call.get("talk_s")), _num(call.get("wrapup_s")),
        int(cause) if isinstance(cause, int) and not isinstance(cause, bool) else None,
        _text(call.get("endpoint")), actor, None, None), at)


def _consent(rows: Rows, tenant: str, seq: int, at: datetime, actor: str, p: dict[str, Any], ts: Any) -> None:
    rows.add("consents", (tenant, seq, ts(at), _text(p.get("person")), _text(p.get("phone")), _text(p.get("action")),
                          _text(p.get("purpose")), _text(p.get("campaign")), _text(p.get("source")),
                          bool(p.get("written")), _text(p.get("evidence_ref")), _text(p.get("text_ref")),
                          bool(p.get("ip")), _text(p.get("expires_at")), actor))


def _optout(rows: Rows, tenant: str, seq: int, at: datetime, actor: str, p: dict[str, Any], ts: Any) -> None:
    rows.add("optouts", (tenant, seq, 0, ts(at), _text(p.get("person")), _text(p.get("phone")), _text(p.get("scope")),
                         _text(p.get("campaign")), _text(p.get("source")), _text(p.get("call_id")),
                         bool(p.get("keyword")), actor))


def _erasure(rows: Rows, tenant: str, seq: int, at: datetime, actor: str, p: dict[str, Any], ts: Any) -> None:
    """Erased people stay on the suppression list (dialer/suppression.py, same pipeline as this entry)."""
    for part, person in enumerate(p.get("people") or ()):
        rows.add("optouts", (tenant, seq, part, ts(at), _text(person), None, "suppressed", None,
                             f"erasure:{p.get('reason') or ''}", None, False, actor))


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _usage(rows: Rows, tenant: str, seq: int, at: datetime, actor: str, p: dict[str, Any], ts: Any) -> None:
    """One increment of the usage counters (a call's `added`), or a contacts-stored reading."""
    day = p.get("day")
    if not isinstance(day, str) or len(day) != 10:
        return
    added = p.get("added") if isinstance(p.get("added"), dict) else {}
    stored = p.get("contacts_stored")
    rows.add("usage_records", (tenant, seq, ts(at), day, _text(p.get("call_id")), _text(p.get("campaign")),
                               *(_int(added.get(m)) for m in USAGE_MEASURES),
                               _int(stored) if stored is not None else None))


_DERIVED = {"gate_decision": _gate_decision, "call_outcome": _call_outcome, "consent": _consent, "optout": _optout,
            "erasure": _erasure, "usage": _usage}
