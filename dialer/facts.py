"""What we know about one person, per tenant, in Redis: consent, relationships, opt-outs, attempts.

Every write to a person's facts also increments that person's version counter in the same
MULTI/EXEC. The gate reads facts and version together, decides, and reserves an attempt only
if the version has not moved (see dialer/gate.py): an opt-out or an attempt landing between
the read and the reservation makes the reservation retry, so no call slips through.

Keys (tenant-owned data lives under t:{tenant}:):
  t:{T}:p:{e164}:consent   list of consent records (JSON), append-only; a withdrawal is a record
  t:{T}:p:{e164}:rel       list of business relationships (JSON)
  t:{T}:p:{e164}:att       hash call_id -> attempt (JSON: at, campaign, outcome)
  t:{T}:p:{e164}:ver       integer version of the person's facts
  t:{T}:dnc                hash e164 -> company-wide opt-out (JSON: at, source, call_id, campaign, keyword)
  t:{T}:campaign:{C}:dnc   hash e164 -> campaign opt-out (JSON)
  t:{T}:optouts            stream: every opt-out ever recorded (evidence; never trimmed by the dialer)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
import redis

from dialer.audit import AuditLog
from dialer.usage import meter
from dialer.webhooks.events import queue_event
from rules.model import Attempt, Consent, Relationship, utc

OPTOUT_SCOPES = ("company", "campaign")

# Which outcome of one call wins when several are reported (the dialplan's AMI events at hangup, an agent's
# disposition before or after it, the recovery's `unknown`): the one that says more about the person. Data, not
# code: a later report never lowers the rank, so an agent's `refused` or `opted_out` survives the `answered`
# that arrives at hangup, and an `opted_out` heard by the dialplan survives an agent's `refused`. Lowest first;
# outcomes on one line share a rank (the first stored is kept).
OUTCOME_PRECEDENCE: tuple[tuple[str, ...], ...] = (
    ("reserved",),
    ("unknown",),
    ("busy", "no_answer", "congestion", "failed"),
    ("machine",),
    ("answered",),
    ("abandoned",),
    ("refused",),
    ("opted_out",),
)
_RANK = {outcome: rank for rank, names in enumerate(OUTCOME_PRECEDENCE) for outcome in names}


def outcome_rank(outcome: str) -> int:
    """An outcome's rank in OUTCOME_PRECEDENCE; one we do not know ranks lowest but `reserved`'s."""
    return _RANK.get(outcome, 0)


def stronger_outcome(stored: str, reported: str) -> str:
    """The outcome to keep when `reported` arrives for a call whose stored outcome is `stored`."""
    return reported if outcome_rank(reported) > outcome_rank(stored) else stored


# --- keys -------------------------------------------------------------------------------------

def person_key(tenant: str, e164: str, part: str) -> str:
    return f"t:{{{tenant}}}:p:{e164}:{part}"


def company_dnc_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:dnc"


def campaign_dnc_key(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:dnc"


def optout_log_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:optouts"


# --- JSON codec (pure) ------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return None if value is None else utc(value).isoformat().replace("+00:00", "Z")


def _instant(value: str | None) -> datetime | None:
    return None if value is None else _parse_instant(value)


@lru_cache(maxsize=65536)
def _parse_instant(value: str) -> datetime:
    # the same few instants recur across records (every reservation of a gate batch has the batch's instant)
    return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def _loads(text: str | bytes) -> Any:
    """orjson (several times faster); the standard parser for what orjson refuses but json accepts."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _dump(record: Any) -> str:
    data = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in asdict(record).items()}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


_CONSENT_TIMES = ("given_at", "expires_at", "withdrawn_at")


def consent_from_json(text: str | bytes) -> Consent:
    data = _loads(text)
    for key in _CONSENT_TIMES:
        data[key] = _instant(data.get(key))
    return Consent(**data)


def relationship_from_json(text: str | bytes) -> Relationship:
    data = _loads(text)
    return Relationship(kind=data["kind"], at=_instant(data["at"]), until=_instant(data.get("until")))  # type: ignore[arg-type]


def attempt_from_json(text: str | bytes) -> Attempt:
    data = _loads(text)
    return Attempt(at=_instant(data["at"]), campaign=data["campaign"], outcome=data["outcome"],  # type: ignore[arg-type]
                   call_id=data.get("call_id"))


def attempt_json(attempt: Attempt) -> str:
    return _dump(attempt)


@dataclass(frozen=True)
class OptOut:
    at: datetime
    source: str  # keypress, agent, api, sms, import ...
    scope: str = "company"
    campaign: str | None = None
    call_id: str | None = None
    keyword: str | None = None


def optout_from_json(text: str | bytes) -> OptOut:
    data = _loads(text)
    data["at"] = _instant(data["at"])
    return OptOut(**data)


@dataclass(frozen=True)
class PersonFacts:
    """A person's stored facts for one campaign, with the version they were read at."""

    consent: tuple[Consent, ...]
    relationships: tuple[Relationship, ...]
    history: tuple[Attempt, ...]
    company_dnc: OptOut | None
    campaign_dnc: OptOut | None
    version: int


class FactStore:
    """Reads and writes a person's facts. Synchronous redis client (thread-safe pool);
    async callers wrap calls in asyncio.to_thread."""

    def __init__(self, client: redis.Redis, audit: Any = None) -> None:
        """audit: a dialer.audit.AuditLog (with the secret key): opt-outs and consent changes are then appended
        to the tenant's audit trail in the same transaction as the write (dialer/audit_events.py)."""
        self.redis = client
        self.audit = audit
        self._meter_audit = audit if audit is not None else AuditLog(client)  # usage entries need no key

    # --- writes: each one bumps the person's version atomically with the data ---------------

    def _write(self, tenant: str, e164: str, ops: Iterable[tuple[str, tuple[Any, ...]]],
               audit: Any = None, webhook: tuple[str, dict[str, Any]] | None = None) -> None:
        pipe = self.redis.pipeline(transaction=True)
        self._queue_write(pipe, tenant, e164, ops, audit, webhook)
        pipe.execute()

    def _queue_write(self, pipe: Any, tenant: str, e164: str, ops: Iterable[tuple[str, tuple[Any, ...]]],
                     audit: Any = None, webhook: tuple[str, dict[str, Any]] | None = None) -> None:
        for method, args in ops:
            getattr(pipe, method)(*args)
        pipe.incr(person_key(tenant, e164, "ver"))
        if audit is not None and self.audit is not None:
            self.audit.queue(pipe, tenant, [audit])
        if webhook is not None:  # in the same transaction: the fact and its webhook event, or neither
            queue_event(pipe, tenant, webhook[0], e164, webhook[1])

    def add_consents_unless_erased(self, tenant: str, items: Sequence[tuple[str, Consent, str]], suppression: str, *,
                                   actor: str = "dialer", also: Sequence[tuple[str, tuple[Any, ...]]] = (),
                                   fence: tuple[str, str, str | None] | None = None,
                                   checker: Any = None) -> list[bool] | None:
        """add_consent for each (number, consent, the number's suppression ref) of `items`, except the numbers on
        the suppression list (`suppression`: its hash key, dialer.suppression), decided and written in one
        transaction (WATCH: an erasure between the check and the write makes it run again), with the caller's
        `also` commands in it (an import's progress). Returns, per item, whether its consent was written.
        `fence` (hash key, field, value or None for absent): written only while the field still holds that value
        (WATCHed with the list); another writer moved it (an import's commit taken over by a sweeper while this
        one still ran: same commit token, both past the lock) -> nothing written, None returned.
        `checker` (dialer.suppression.Suppression, the refs' key): its check_key runs once the list is watched, so
        refs made without the key, or with another, fail closed (SuppressionUnavailable) instead of matching
        nothing while the list has entries."""
        from dialer.audit_events import consent_event

        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(suppression, *([fence[0]] if fence is not None else []))
                    if checker is not None:
                        checker.check_key(tenant)
                    if fence is not None:
                        held = pipe.hget(fence[0], fence[1])
                        if (held.decode() if isinstance(held, bytes) else held) != fence[2]:
                            pipe.reset()
                            return None
                    erased = [v is not None for v in pipe.hmget(suppression, [ref for _, _, ref in items])] \
                        if items else []
                    pipe.multi()
                    for (e164, consent, _), gone in zip(items, erased, strict=True):
                        if not gone:
                            event = consent_event(self.audit, e164, consent, actor) if self.audit is not None \
                                else None
                            self._queue_write(pipe, tenant, e164,
                                              [("rpush", (person_key(tenant, e164, "consent"), _dump(consent)))],
                                              event)
                    for method, args in also:
                        getattr(pipe, method)(*args)
                    pipe.execute()
                    return [not gone for gone in erased]
                except redis.WatchError:
                    continue

    def add_consent(self, tenant: str, e164: str, consent: Consent, *, actor: str = "dialer") -> None:
        from dialer.audit_events import consent_event

        event = consent_event(self.audit, e164, consent, actor) if self.audit is not None else None
        webhook = None
        if consent.withdrawn_at is not None:
            webhook = ("consent.withdrawn", {"phone": e164, "purpose": consent.purpose, "campaign": consent.campaign,
                                             "withdrawn_at": _iso(consent.withdrawn_at), "source": consent.source})
        self._write(tenant, e164, [("rpush", (person_key(tenant, e164, "consent"), _dump(consent)))], event,
                    webhook)

    def withdraw_consent(
        self, tenant: str, e164: str, at: datetime, *, source: str, purpose: str = "telemarketing",
        campaign: str | None = None, evidence: str = "", actor: str = "dialer",
    ) -> None:
        """Record a withdrawal. It wins over every consent given before `at` for that purpose."""
        record = Consent(given_at=None, purpose=purpose, withdrawn_at=utc(at), source=source, evidence=evidence,
                         campaign=campaign)
        self.add_consent(tenant, e164, record, actor=actor)

    def add_relationship(self, tenant: str, e164: str, relationship: Relationship) -> None:
        self._write(tenant, e164, [("rpush", (person_key(tenant, e164, "rel"), _dump(relationship)))])

    def add_optout(
        self, tenant: str, e164: str, *, at: datetime, source: str, scope: str = "company",
        campaign: str | None = None, call_id: str | None = None, keyword: str | None = None, actor: str = "dialer",
    ) -> OptOut:
        """Record an opt-out durably: the DNC entry, the evidence log, and the version bump, in one
        transaction. A second opt-out keeps the first entry's date (the earliest request counts); the same call's
        opt-out reported again (same call_id) writes nothing more and returns the stored one."""
        if scope not in OPTOUT_SCOPES:
            raise ValueError(f"opt-out scope must be one of {OPTOUT_SCOPES}")
        if scope == "campaign" and not campaign:
            raise ValueError("a campaign opt-out needs the campaign")
        optout = OptOut(at=utc(at), source=source, scope=scope, campaign=campaign, call_id=call_id, keyword=keyword)
        dnc = company_dnc_key(tenant) if scope == "company" else campaign_dnc_key(tenant, campaign or "")
        entry = _dump(optout)
        log = {"e164": e164, **{k: v for k, v in json.loads(entry).items() if v is not None}}
        from dialer.audit_events import optout_event

        event = optout_event(self.audit, e164, optout, actor) if self.audit is not None else None
        webhook = ("optout.recorded", {"phone": e164, **{k: v for k, v in json.loads(entry).items()}})
        if call_id is None:
            self._write(tenant, e164, [
                ("hsetnx", (dnc, e164, entry)),
                ("xadd", (optout_log_key(tenant), log)),
            ], event, webhook)
            return optout
        # The same call's opt-out reported twice (the dialplan's event and its AstDB copy, a retried agent
        # request): one entry, one evidence record, one audit entry. WATCH: two reports at once write once.
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(dnc)
                    existing = pipe.hget(dnc, e164)
                    if existing is not None and json.loads(existing).get("call_id") == call_id:
                        pipe.unwatch()
                        return optout_from_json(existing)
                    pipe.multi()
                    pipe.hsetnx(dnc, e164, entry)
                    pipe.xadd(optout_log_key(tenant), log)
                    pipe.incr(person_key(tenant, e164, "ver"))
                    if event is not None and self.audit is not None:
                        self.audit.queue(pipe, tenant, [event])
                    queue_event(pipe, tenant, webhook[0], e164, webhook[1])
                    pipe.execute()
                    return optout
                except redis.WatchError:
                    continue

    def record_attempt(self, tenant: str, e164: str, attempt: Attempt) -> str:
        call_id = attempt.call_id or uuid.uuid4().hex
        stored = Attempt(at=attempt.at, campaign=attempt.campaign, outcome=attempt.outcome, call_id=call_id)
        self._write(tenant, e164, [("hset", (person_key(tenant, e164, "att"), call_id, attempt_json(stored)))])
        return call_id

    def record_outcome(self, tenant: str, e164: str, call_id: str, outcome: str, at: datetime | None = None,
                       *, details: dict[str, Any] | None = None, metered: dict[str, int] | None = None) -> str:
        """Set the outcome of an attempt the gate reserved, by OUTCOME_PRECEDENCE: the stored outcome is replaced
        only by a stronger one, so reports may arrive in any order. Returns the outcome stored afterwards.

        Its instant stays the reservation's, unless the attempt is unknown to us, in which case `at` (required
        then) is used. `details` (an agent's disposition: its word, note, who) are kept in the attempt record,
        merged over earlier ones whatever the rank, so they go where the attempt goes (access, erasure,
        retention). Read-compare-write under WATCH: two reports at once cannot both win.

        `metered` (dialer/usage/meter.py measures): what the placed call counts for. What the attempt record
        already counted is kept in it (`metered`), and only the difference is added to the usage counters, in this
        same transaction: a call is counted exactly once, however often its outcome is reported."""
        key = person_key(tenant, e164, "att")
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.hget(key, call_id)
                    if raw is not None:
                        record = json.loads(raw)
                        kept = stronger_outcome(record["outcome"], outcome)
                    elif at is not None:
                        record = {"at": _iso(utc(at)), "campaign": ""}
                        kept = outcome
                    else:
                        pipe.unwatch()
                        raise KeyError(f"no attempt {call_id} for this number")
                    merged = {**record, **(details or {}), "call_id": call_id, "outcome": kept}
                    added: dict[str, int] = {}
                    if metered is not None:
                        counted = meter.merge(record.get("metered"), metered)
                        added = meter.delta(record.get("metered"), counted)
                        merged["metered"] = counted
                    if raw is not None and merged == record:
                        pipe.unwatch()
                        return kept  # nothing new: the version does not move
                    pipe.multi()
                    pipe.hset(key, call_id, json.dumps(merged, separators=(",", ":"), sort_keys=True))
                    pipe.incr(person_key(tenant, e164, "ver"))
                    meter.queue_counts(pipe, tenant, str(merged.get("campaign") or ""),
                                       meter.day_of(merged.get("at"), utc(at) if at else datetime.now(UTC)), added,
                                       audit=self._meter_audit, call_id=call_id,
                                       at=utc(at) if at else datetime.now(UTC))
                    if raw is None or kept != record["outcome"]:  # a new or more precise outcome, not a detail
                        queue_event(pipe, tenant, "call.outcome", e164, {
                            "phone": e164, "call_id": call_id, "campaign": merged.get("campaign", ""),
                            "outcome": kept, "attempted_at": merged.get("at"),
                            "agent_outcome": (details or {}).get("agent_outcome")})
                    pipe.execute()
                    return kept
                except redis.WatchError:
                    continue

    def attempt_record(self, tenant: str, e164: str, call_id: str) -> dict[str, Any] | None:
        """One attempt as stored (with any agent details), or None."""
        raw = self.redis.hget(person_key(tenant, e164, "att"), call_id)
        return None if raw is None else json.loads(raw)

    # --- reads --------------------------------------------------------------------------------

    def _queue_reads(self, pipe: Any, tenant: str, e164: str, campaign: str) -> None:
        pipe.lrange(person_key(tenant, e164, "consent"), 0, -1)
        pipe.lrange(person_key(tenant, e164, "rel"), 0, -1)
        pipe.hvals(person_key(tenant, e164, "att"))
        pipe.hget(company_dnc_key(tenant), e164)
        pipe.hget(campaign_dnc_key(tenant, campaign), e164)
        pipe.get(person_key(tenant, e164, "ver"))

    @staticmethod
    def _build(raw: Sequence[Any]) -> PersonFacts:
        consent, rel, att, company, campaign, version = raw
        return PersonFacts(
            consent=tuple(consent_from_json(x) for x in consent),
            relationships=tuple(relationship_from_json(x) for x in rel),
            history=tuple(sorted((attempt_from_json(x) for x in att), key=lambda a: a.at)),
            company_dnc=optout_from_json(company) if company else None,
            campaign_dnc=optout_from_json(campaign) if campaign else None,
            version=int(version or 0),
        )

    def load(self, tenant: str, e164: str, campaign: str) -> PersonFacts:
        return self.load_many(tenant, [(e164, campaign)])[0]

    def load_many(self, tenant: str, items: Sequence[tuple[str, str]]) -> list[PersonFacts]:
        """Facts for many (e164, campaign) pairs in one round trip. Reads are not transactional
        across people; each person's reservation re-checks that person's version."""
        pipe = self.redis.pipeline(transaction=False)
        for e164, campaign in items:
            self._queue_reads(pipe, tenant, e164, campaign)
        raw = pipe.execute()
        return [self._build(raw[i * 6 : i * 6 + 6]) for i in range(len(items))]

    def consents(self, tenant: str, e164: str) -> list[Consent]:
        return [consent_from_json(x) for x in self.redis.lrange(person_key(tenant, e164, "consent"), 0, -1)]

    def attempts(self, tenant: str, e164: str) -> list[Attempt]:
        raw = self.redis.hvals(person_key(tenant, e164, "att"))
        return sorted((attempt_from_json(x) for x in raw), key=lambda a: a.at)

    def optout(self, tenant: str, e164: str, campaign: str | None = None) -> OptOut | None:
        """The company opt-out, else the campaign's, else None."""
        raw = self.redis.hget(company_dnc_key(tenant), e164)
        if raw is None and campaign:
            raw = self.redis.hget(campaign_dnc_key(tenant, campaign), e164)
        return optout_from_json(raw) if raw else None

    def version(self, tenant: str, e164: str) -> int:
        return int(self.redis.get(person_key(tenant, e164, "ver")) or 0)
