"""Reports that need SQL, read from the record (the reason it exists).

  campaign_days   per campaign and UTC day: attempts, live answers, abandons, abandon rate, denials by reason,
                  hours dialed; as rows or CSV
  person_history  for one person (by number): every call with the gate's decision for it, every decision about
                  them (denials included), their opt-outs, suppression and consents

Definitions (docs/record.md): an attempt is a call that got an outcome (one call record per call id); an answer
is a live answer (answered, abandoned, opted out: a person picked up); the abandon rate is abandons / answers,
as the pacing guard counts it (dialer/pacing/abandons.py), None without answers; hours dialed is the line time
(ring + talk seconds) in hours; denials count each reason of each denied gate decision.
Tenants are isolated by a `tenant = %s` condition on every query; numbers are looked up by their keyed reference
(the record holds no phone number).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from dialer.contacts.csvsafe import SafeWriter
from dialer.record.store import Record

MAX_DAYS = 400  # one report spans at most this many days
PERSON_LIMIT = 5000  # rows per list in a person's history


class ReportError(ValueError):
    """Bad report parameters: `field` names the one at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def day_range(since: str | None, until: str | None, today: date) -> tuple[date, date]:
    """[since, until] inclusive as dates (YYYY-MM-DD); default: the last 30 days up to today."""
    def parse(name: str, value: str | None, default: date) -> date:
        if not value:
            return default
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ReportError(name, f"{name}: expected a date YYYY-MM-DD, got {value!r}") from None

    last = parse("until", until, today)
    first = parse("since", since, last - timedelta(days=29))
    if first > last:
        raise ReportError("since", "since: after until")
    if (last - first).days >= MAX_DAYS:
        raise ReportError("since", f"since: a report spans at most {MAX_DAYS} days")
    return first, last


def _bounds(record: Record, first: date, last: date) -> tuple[Any, Any]:
    start = datetime.combine(first, time(0), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
    return record.ts(start), record.ts(end)


def campaign_days(record: Record, tenant: str, first: date, last: date,
                  campaign: str | None = None) -> list[dict[str, Any]]:
    start, end = _bounds(record, first, last)
    where = "tenant = %s AND at >= %s AND at < %s" + (" AND campaign = %s" if campaign else "")
    params: tuple[Any, ...] = (tenant, start, end, *((campaign,) if campaign else ()))
    day = record.day_sql("at")
    flag = "CASE WHEN {} THEN 1 ELSE 0 END"
    calls = record.query(
        f"SELECT {day} AS day, coalesce(campaign, '') AS campaign, count(*), sum({flag.format('live')}), "
        f"sum({flag.format('abandoned')}), sum(coalesce(ring_s, 0) + coalesce(talk_s, 0)) "
        f"FROM call_attempts WHERE {where} GROUP BY 1, 2", params)
    denials = record.query(
        f"SELECT {day} AS day, coalesce(campaign, '') AS campaign, code, count(*) FROM gate_denials "
        f"WHERE {where} GROUP BY 1, 2, 3", params)
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def row(d: str, c: str) -> dict[str, Any]:
        return out.setdefault((d, c), {"day": d, "campaign": c, "attempts": 0, "answers": 0, "abandons": 0,
                                       "abandon_rate": None, "hours_dialed": 0.0, "denials": {}, "denied": 0})

    for d, c, attempts, answers, abandons, seconds in calls:
        r = row(str(d), str(c))
        r.update(attempts=int(attempts), answers=int(answers or 0), abandons=int(abandons or 0),
                 hours_dialed=round(float(seconds or 0) / 3600, 4))
        r["abandon_rate"] = round(r["abandons"] / r["answers"], 4) if r["answers"] else None
    for d, c, code, n in denials:
        r = row(str(d), str(c))
        r["denials"][str(code)] = int(n)
    for r in out.values():
        r["denials"] = dict(sorted(r["denials"].items()))
        r["denied"] = sum(r["denials"].values())
    return [out[k] for k in sorted(out)]


def campaign_days_csv(rows: Sequence[dict[str, Any]]) -> str:
    """One line per campaign and day; one column per denial reason found (denied:<CODE>)."""
    codes = sorted({code for r in rows for code in r["denials"]})
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.row(["day", "campaign", "attempts", "answers", "abandons", "abandon_rate", "hours_dialed", "denied",
                *(f"denied:{c}" for c in codes)])
    for r in rows:
        writer.row([r["day"], r["campaign"], r["attempts"], r["answers"], r["abandons"],
                    "" if r["abandon_rate"] is None else r["abandon_rate"], r["hours_dialed"], r["denied"],
                    *(r["denials"].get(c, 0) for c in codes)])
    return buffer.getvalue()


def _reasons(text: Any) -> list[dict[str, Any]]:
    try:
        raw = json.loads(text) if text else []
    except ValueError:
        raw = []
    return [{"code": r[0], "rule": r[1] if len(r) > 1 else None, "until": r[2] if len(r) > 2 else None}
            for r in raw if isinstance(r, list) and r]


def person_history(record: Record, tenant: str, person: str, limit: int = PERSON_LIMIT) -> dict[str, Any]:
    """Everything the record holds about one person (their keyed reference: AuditLog.person_ref(e164))."""
    iso_at = record.iso_sql("at")
    decisions = record.query(
        f"SELECT seq, {iso_at}, campaign, contact_id, phone, mode, allowed, reasons, call_id FROM gate_decisions "
        "WHERE tenant = %s AND person = %s ORDER BY seq LIMIT %s", (tenant, person, limit + 1))
    calls = record.query(
        f"SELECT call_id, seq, {iso_at}, campaign, contact_id, phone, outcome, live, abandoned, ring_s, talk_s, "
        "wrapup_s, hangup_cause, endpoint, gate_seq FROM call_attempts WHERE tenant = %s AND person = %s "
        "ORDER BY seq LIMIT %s", (tenant, person, limit + 1))
    optouts = record.query(
        f"SELECT seq, {iso_at}, scope, campaign, source, call_id, actor FROM optouts "
        "WHERE tenant = %s AND person = %s ORDER BY seq, part LIMIT %s", (tenant, person, limit + 1))
    consents = record.query(
        f"SELECT seq, {iso_at}, action, purpose, campaign, source, written_consent, evidence_ref, text_ref, "
        "expires_at, actor FROM consents WHERE tenant = %s AND person = %s ORDER BY seq LIMIT %s",
        (tenant, person, limit + 1))
    by_seq = {}
    decision_items = []
    for seq, at, campaign, contact_id, phone, mode, allowed, reasons, call_id in decisions[:limit]:
        item = {"seq": int(seq), "at": at, "campaign": campaign, "contact_id": contact_id, "phone": phone,
                "mode": mode, "allowed": bool(allowed), "reasons": _reasons(reasons), "call_id": call_id}
        by_seq[int(seq)] = item
        decision_items.append(item)
    call_items = []
    for (call_id, _seq, at, campaign, contact_id, phone, outcome, live, abandoned, ring, talk, wrapup, cause,
         endpoint, gate_seq) in calls[:limit]:
        gate = by_seq.get(int(gate_seq)) if gate_seq is not None else None
        call_items.append({
            "call_id": call_id, "at": at, "campaign": campaign, "contact_id": contact_id, "phone": phone,
            "outcome": outcome, "live": bool(live), "abandoned": bool(abandoned), "ring_seconds": ring,
            "talk_seconds": talk, "wrapup_seconds": wrapup, "hangup_cause": cause, "endpoint": endpoint,
            "gate": None if gate is None else {k: gate[k] for k in ("seq", "at", "allowed", "reasons", "mode")}})
    return {
        "person": person,
        "calls": call_items,
        "decisions": decision_items,
        "optouts": [{"seq": int(s), "at": a, "scope": sc, "campaign": c, "source": so, "call_id": ci, "actor": ac}
                    for s, a, sc, c, so, ci, ac in optouts[:limit]],
        "consents": [{"seq": int(s), "at": a, "action": ac, "purpose": p, "campaign": c, "source": so,
                      "written": bool(w), "evidence_ref": ev, "text_ref": tx, "expires_at": ex, "actor": who}
                     for s, a, ac, p, c, so, w, ev, tx, ex, who in consents[:limit]],
        "truncated": any(len(x) > limit for x in (decisions, calls, optouts, consents)),
    }


def audit_mentions(record: Record, tenant: str, refs: set[str], contact_ids: set[str]) -> list[dict[str, Any]]:
    """Archived audit entries about a person (their keyed references or contact ids), for a subject access request:
    the gate's decisions, their calls, opt-outs, suppression and consents, found through the derived tables."""
    lookups = [(table, "person", sorted(refs)) for table in ("gate_decisions", "call_records", "optouts", "consents")]
    lookups += [(table, "contact_id", sorted(contact_ids)) for table in ("gate_decisions", "call_records")]
    seqs: set[int] = set()
    for table, column, values in lookups:
        for i in range(0, len(values), 500):
            part = values[i:i + 500]
            rows = record.query(f"SELECT seq FROM {table} WHERE tenant = %s AND {column} IN "
                                f"({', '.join(['%s'] * len(part))})", (tenant, *part))
            seqs.update(int(r[0]) for r in rows)
    ordered = sorted(seqs)
    out = []
    for i in range(0, len(ordered), 500):
        part = ordered[i:i + 500]
        rows = record.query(f"SELECT seq, at, kind, actor, payload FROM audit_archive WHERE tenant = %s AND seq IN "
                            f"({', '.join(['%s'] * len(part))}) ORDER BY seq", (tenant, *part))
        for seq, at, kind, actor, payload in rows:
            try:
                body = json.loads(payload)
            except ValueError:
                body = {"_raw": payload}
            out.append({"seq": int(seq), "at": at, "kind": kind, "actor": actor, "payload": body})
    return out
