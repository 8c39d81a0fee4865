"""Is there valid consent, and does a business relationship exempt the contact, at an instant?

Consent records are never edited: a withdrawal is a record with `withdrawn_at` (and usually no
`given_at`). A withdrawal wins over every consent given before it (for the same purpose, and for
the same campaign when the withdrawal names one); only a consent given after it counts again.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import Enum

from rules.model import Consent, Relationship

ANY = ("*", "any")


class ConsentState(Enum):
    VALID = "valid"
    WITHDRAWN = "withdrawn"  # some consent existed but a later withdrawal cancels it
    NONE = "none"


def _purpose_matches(record_purpose: str, purpose: str) -> bool:
    return record_purpose == purpose or record_purpose in ANY


def _scope_matches(record_campaign: str | None, campaign: str) -> bool:
    return record_campaign is None or record_campaign == campaign


def consent_state(
    records: Sequence[Consent], *, purpose: str, campaign: str, at: datetime, written: bool = False,
    channels: Iterable[str] = ("phone",),
) -> ConsentState:
    """The consent situation for a call for `purpose` in `campaign` at `at`."""
    channels = tuple(channels)
    withdrawals = [
        r.withdrawn_at for r in records
        if r.withdrawn_at is not None and r.withdrawn_at <= at
        and _purpose_matches(r.purpose, purpose) and _scope_matches(r.campaign, campaign)
    ]
    latest_withdrawal = max(withdrawals) if withdrawals else None
    for r in records:
        if r.given_at is None or r.given_at > at:
            continue
        if not (_purpose_matches(r.purpose, purpose) and _scope_matches(r.campaign, campaign)):
            continue
        if written and not r.written:
            continue
        if r.channel not in channels and r.channel not in ANY:
            continue
        if r.expires_at is not None and r.expires_at <= at:
            continue
        if latest_withdrawal is not None and latest_withdrawal >= r.given_at:
            continue
        return ConsentState.VALID
    if latest_withdrawal is not None:
        return ConsentState.WITHDRAWN
    return ConsentState.NONE


def add_months(instant: datetime, months: int) -> datetime:
    """Calendar months later, clamping the day (31 Jan + 1 month = 28/29 Feb)."""
    month0 = instant.month - 1 + months
    year, month = instant.year + month0 // 12, month0 % 12 + 1
    day = min(instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


def relationship_exempts(relationships: Sequence[Relationship], specs: Iterable[dict], at: datetime) -> str | None:
    """The kind of the first relationship that exempts at `at` under the pack's specs, else None.
    Specs: {"kind", "months" | "days" | "ongoing": true}."""
    for spec in specs:
        for rel in relationships:
            if rel.kind != spec["kind"] or rel.at > at:
                continue
            if spec.get("ongoing"):
                if rel.until is None or rel.until > at:
                    return rel.kind
            elif "months" in spec:
                if at < add_months(rel.at, spec["months"]):
                    return rel.kind
            elif at < rel.at + timedelta(days=spec["days"]):
                return rel.kind
    return None
