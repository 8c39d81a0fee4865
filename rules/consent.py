"""Is there valid consent, and does a business relationship exempt the contact, at an instant?

Consent records are never edited: a withdrawal is a record with `withdrawn_at` (and usually no
`given_at`). A withdrawal wins over every consent given before it (for the same purpose, and for
the same campaign when the withdrawal names one); only a consent given after it counts again.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

from rules.model import Consent, Relationship

ANY = ("*", "any")


class ConsentState(Enum):
    VALID = "valid"
    WITHDRAWN = "withdrawn"  # some consent existed but a later withdrawal cancels it
    UNPROVED = "unproved"  # a consent that would count has neither evidence nor source: it cannot be proved
    NONE = "none"


def proved(record: Consent) -> bool:
    """Whether a consent record can be proved: it names its evidence or at least its source. Where the law puts
    the proof on the caller (C. consom. D.223-9 al. 2 and L.223-1 al. 3; UWG s. 7a), a bare claim is no consent."""
    return bool(record.evidence.strip() or record.source.strip())


def _purpose_matches(record_purpose: str, purpose: str) -> bool:
    return record_purpose == purpose or record_purpose in ANY


def _scope_matches(record_campaign: str | None, campaign: str) -> bool:
    return record_campaign is None or record_campaign == campaign


def consent_state(
    records: Sequence[Consent], *, purpose: str, campaign: str, at: datetime, written: bool = False,
    channels: Iterable[str] = ("phone",), proof: bool = True,
) -> ConsentState:
    """The consent situation for a call for `purpose` in `campaign` at `at`. With `proof`, a record with
    neither evidence nor source does not count (UNPROVED when it is the only one that would)."""
    channels = tuple(channels)
    withdrawals = [
        r.withdrawn_at for r in records
        if r.withdrawn_at is not None and r.withdrawn_at <= at
        and _purpose_matches(r.purpose, purpose) and _scope_matches(r.campaign, campaign)
    ]
    latest_withdrawal = max(withdrawals) if withdrawals else None
    unproved = False
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
        if proof and not proved(r):
            unproved = True
            continue
        return ConsentState.VALID
    if latest_withdrawal is not None:
        return ConsentState.WITHDRAWN
    return ConsentState.UNPROVED if unproved else ConsentState.NONE


def add_months(instant: datetime, months: int) -> datetime:
    """Calendar months later, clamping the day (31 Jan + 1 month = 28/29 Feb)."""
    month0 = instant.month - 1 + months
    year, month = instant.year + month0 // 12, month0 % 12 + 1
    day = min(instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


def months_before(day: date, months: int) -> date:
    """The same day `months` calendar months earlier, clamped (31 Aug - 6 months = 28/29 Feb)."""
    month0 = day.month - 1 - months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def _within(start: datetime, spec: dict, at: datetime, zones: Sequence[str]) -> bool:
    """Whether `start` falls within the spec's months or days "immediately preceding the date of the call"
    (47 CFR 64.1200(f)(5)): calendar dates in the called party's zone, in every candidate zone (fail closed).
    Without zones (a caller that does not know them), UTC dates."""
    for name in zones or ("UTC",):
        tz = ZoneInfo(name)
        call_day, then = at.astimezone(tz).date(), start.astimezone(tz).date()
        earliest = months_before(call_day, spec["months"]) if "months" in spec else call_day - timedelta(
            days=spec["days"])
        if then < earliest:
            return False
    return True


def relationship_exempts(relationships: Sequence[Relationship], specs: Iterable[dict], at: datetime,
                         zones: Sequence[str] = (), contract_related: bool = False) -> str | None:
    """The kind of the first relationship that exempts at `at` under the pack's specs, else None.
    Specs: {"kind", "months" | "days" | "ongoing": true, "counted_from": "start" | "end", "campaign_related"}.
    Months and days are calendar dates in the called party's `zones`; "counted_from": "end" counts them from
    the relationship's end (`until`: ongoing, or ended within the period); "campaign_related" needs a campaign
    that declares its calls relate to that relationship (`contract_related`)."""
    for spec in specs:
        if spec.get("campaign_related") and not contract_related:
            continue
        for rel in relationships:
            if rel.kind != spec["kind"] or rel.at > at:
                continue
            ongoing = rel.until is None or rel.until > at
            if spec.get("ongoing"):
                if ongoing:
                    return rel.kind
            elif spec.get("counted_from") == "end":
                if ongoing or _within(rel.until, spec, at, zones):  # type: ignore[arg-type]
                    return rel.kind
            elif _within(rel.at, spec, at, zones):
                return rel.kind
    return None
