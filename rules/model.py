"""The gate's vocabulary: what it is asked about and what it answers.

Plain frozen dataclasses, no I/O. Every instant is an aware datetime (UTC in storage);
the engine never reads a clock, the caller passes `at`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

# Attempt outcomes as the gate sees them (history entries). `reserved` is an attempt the gate
# allowed and reserved whose outcome is not known yet: it counts against caps like any attempt.
OUTCOMES = (
    "reserved", "answered", "no_answer", "busy", "congestion", "failed", "machine", "refused", "abandoned",
    "opted_out", "unknown",
)
PURPOSES = ("telemarketing", "informational", "debt_collection", "survey", "political", "charity")
AUDIENCES = ("consumer", "business")
VOICES = ("human", "artificial")
# How a campaign's numbers are dialled. Every mode but `manual` has the system select the next number from a
# list and dial it (the runtime's progressive, power, predictive and agentless modes; `preview` dials on the
# agent's click): state "automated system" laws cover them (docs/gate.md). None: not said, read as automated.
DIALING_MODES = ("manual", "preview", "progressive", "power", "predictive", "agentless")


def utc(value: datetime) -> datetime:
    """The same instant in UTC; naive datetimes are refused rather than guessed."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: an instant needs a time zone")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Contact:
    phone: str  # E.164, or national format when `country` is given
    country: str | None = None  # ISO 3166-1 alpha-2 of the address
    postal_code: str | None = None
    state: str | None = None  # subdivision code of the address (US state, CA province, FR department...)


@dataclass(frozen=True)
class Campaign:
    id: str
    tenant: str
    purpose: str = "telemarketing"
    audience: str = "consumer"
    dialing: str | None = None  # one of DIALING_MODES; None (unknown) matches every rule filter (fail closed)
    contract_related: bool = False  # calls made in the performance of the person's ongoing contract, about it
    voice: str = "human"  # "artificial" covers AI voice agents and prerecorded messages
    recording: bool = False
    # the number presented to the called person, E.164; "" presents none (masked); None: not stated (the
    # caller-ID rules then deny with MISSING_DATA: fail closed). rules/caller_id.py
    caller_id: str | None = None


@dataclass(frozen=True)
class Consent:
    """One consent record. Records are never edited: a withdrawal is a record with withdrawn_at."""

    given_at: datetime | None
    purpose: str = "telemarketing"
    written: bool = False
    expires_at: datetime | None = None
    withdrawn_at: datetime | None = None
    source: str = ""
    evidence: str = ""
    channel: str = "phone"
    campaign: str | None = None  # None: any campaign of the tenant
    ip: str | None = None
    text: str | None = None  # the wording shown, or a reference to it


@dataclass(frozen=True)
class Relationship:
    """An existing business relationship: purchase, inquiry, contract (ongoing while `until` is None)."""

    kind: str
    at: datetime
    until: datetime | None = None


@dataclass(frozen=True)
class Attempt:
    at: datetime
    campaign: str
    outcome: str
    call_id: str | None = None


@dataclass(frozen=True)
class Lists:
    """Opposition-list membership. `national` maps a registry name (us_dnc, bloctel, tps, ctps, dncl)
    to membership; the key "*" means "the national registry of whichever jurisdiction applies"
    (the scenario format's `lists.national: true`)."""

    national: dict[str, bool] = field(default_factory=dict)
    company: bool = False
    campaign: bool = False


@dataclass(frozen=True)
class Facts:
    consent: tuple[Consent, ...] = ()
    relationships: tuple[Relationship, ...] = ()
    lists: Lists = field(default_factory=Lists)
    registry_copies: dict[str, datetime] = field(default_factory=dict)  # registry name (or "national") -> copy date
    history: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class Reason:
    code: str  # stable: OUTSIDE_CALLING_HOURS, NO_CONSENT, ...
    text: str  # for people
    rule: str  # pack rule id, e.g. "fr/hours"
    source: str  # legal citation
    until: datetime | None = None  # when this reason clears; None when only a change of facts clears it


@dataclass(frozen=True)
class PackRef:
    id: str
    version: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    at: datetime
    reasons: tuple[Reason, ...] = ()
    next_allowed_at: datetime | None = None
    packs: tuple[PackRef, ...] = ()
    jurisdictions: tuple[str, ...] = ()

    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]
