"""Scrub report: for each contact of a list (for a campaign), callable now, later (when, why) or never.

The core takes a decision function, so it runs against the real gate (dialer/gate.py Gate.check_many,
which reads registries, DNC lists and facts) or any rules.evaluate wrapper; `gate_decider` builds the
one the CLI and the gateway use. A decision is read as:
  allowed                                  -> now
  denied with next_allowed_at              -> later (earliest time, reason codes)
  denied without next_allowed_at           -> never (registry, DNC, invalid number, no consent ...)
Rows refused at import (invalid numbers) never became contacts: the summary counts them apart.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import redis

from dialer.contacts.csvsafe import SafeWriter
from dialer.contacts.store import Keys, _s, iter_contacts, list_member_ids
from rules.model import Campaign, Contact, Decision

# (contact as stored, E.164 to check) pairs -> one Decision each, all at the same instant.
DecideMany = Callable[[Sequence[tuple[dict[str, Any], str]], datetime], list[Decision]]
NOW, LATER, NEVER = "now", "later", "never"


@dataclass(frozen=True)
class ScrubLine:
    contact_id: str
    e164: str
    verdict: str  # now | later | never
    earliest: datetime | None
    reasons: tuple[str, ...]
    texts: tuple[str, ...] = ()


def classify(decision: Decision) -> tuple[str, datetime | None]:
    if decision.allowed:
        return NOW, None
    if decision.next_allowed_at is not None:
        return LATER, decision.next_allowed_at
    return NEVER, None


def scrub(contacts: Iterable[dict[str, Any]], decide: DecideMany, at: datetime, batch: int = 200,
          ) -> Iterator[ScrubLine]:
    """Pure core: one line per contact (its primary number), in the order given."""
    pending: list[tuple[dict[str, Any], str]] = []

    def flush() -> Iterator[ScrubLine]:
        decisions = decide(pending, at)
        if len(decisions) != len(pending):
            raise RuntimeError("decision function answered for a different number of contacts")
        for (contact, e164), decision in zip(pending, decisions, strict=True):
            verdict, earliest = classify(decision)
            yield ScrubLine(str(contact.get("id")), e164, verdict, earliest,
                            tuple(r.code for r in decision.reasons), tuple(r.text for r in decision.reasons))
        pending.clear()

    for contact in contacts:
        pending.append((contact, contact["phone"]))
        if len(pending) >= batch:
            yield from flush()
    if pending:
        yield from flush()


def summarize(lines: Iterable[ScrubLine]) -> dict[str, Any]:
    verdicts: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {LATER: Counter(), NEVER: Counter()}
    earliest: datetime | None = None
    for line in lines:
        verdicts[line.verdict] += 1
        if line.verdict in reasons:
            reasons[line.verdict].update(line.reasons)
        if line.verdict == LATER and line.earliest and (earliest is None or line.earliest < earliest):
            earliest = line.earliest
    return {
        "now": verdicts[NOW], "later": verdicts[LATER], "never": verdicts[NEVER],
        "later_by_reason": dict(reasons[LATER]), "never_by_reason": dict(reasons[NEVER]),
        "earliest_later": earliest.isoformat() if earliest else None,
    }


def rejected_at_import(client: redis.Redis, tenant: str, list_id: str) -> dict[str, int]:
    """Rows of the list's imports refused as invalid, by reason (they never became contacts)."""
    totals: Counter[str] = Counter()
    for import_id in client.lrange(f"{Keys(tenant).list(list_id)}:imports", 0, -1):
        raw = client.hget(Keys(tenant, _s(import_id)).status, "summary")
        if raw:
            totals.update(json.loads(raw).get("invalid_by_reason", {}))
    return dict(totals)


def scrub_list(client: redis.Redis, tenant: str, list_id: str, decide: DecideMany, at: datetime,
               out: TextIO | None = None) -> dict[str, Any]:
    """Scrub every contact of a list; write the per-contact CSV to `out` if given; return the summary."""
    writer = SafeWriter(out) if out is not None else None
    if writer:
        writer.row(["contact_id", "phone", "verdict", "earliest", "reasons", "explanation"])

    def lines() -> Iterator[ScrubLine]:
        for line in scrub(iter_contacts(client, tenant, list_member_ids(client, tenant, list_id)), decide, at):
            if writer:
                writer.row([line.contact_id, line.e164, line.verdict,
                            line.earliest.isoformat() if line.earliest else "", " ".join(line.reasons),
                            " / ".join(line.texts)])
            yield line

    summary = summarize(lines())
    summary["rejected_at_import"] = rejected_at_import(client, tenant, list_id)
    summary["list"] = list_id
    summary["at"] = at.isoformat()
    return summary


def contact_for_gate(contact: dict[str, Any], e164: str) -> Contact:
    """The gate's view of a stored contact: its number and address (country, postal code, state)."""
    country = (contact.get("country") or "").strip()
    # Only an ISO code is an address country the gate can use; "France" in a CRM column is not guessed.
    iso = country.upper() if len(country) == 2 and country.isalpha() else None
    return Contact(phone=e164, country=iso, postal_code=contact.get("postal_code") or None,
                   state=(contact.get("state") or None))


def gate_decider(gate: Any, campaign: Campaign) -> DecideMany:
    """A DecideMany over the real gate: `gate` is a dialer.gate.Gate (check_many, no reservation)."""
    from dialer.gate import Request

    def decide(items: Sequence[tuple[dict[str, Any], str]], at: datetime) -> list[Decision]:
        requests = [Request(contact=contact_for_gate(c, e164), campaign=campaign, contact_id=str(c.get("id")))
                    for c, e164 in items]
        return list(gate.check_many(requests, at))

    return decide
