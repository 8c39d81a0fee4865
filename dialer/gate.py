"""The stateful compliance gate: read a person's facts from Redis, decide with the pure rule engine,
and reserve the attempt atomically, so that no call is placed that the rules did not allow at that instant.

How a reservation stays correct under concurrency (optimistic, per person):
  1. read the person's facts and their version counter (FactStore's layout, dialer/facts.py) in one Lua
     script per batch, a consistent snapshot in one round trip, plus the national-registry membership and
     copy dates (RegistryStore, in-process bitmaps);
  2. evaluate the pure engine (rules.evaluate) on those facts;
  3. if allowed, run one Lua script (per batch) that reserves only if the version is still the one read: it records the
     attempt (outcome `reserved`), bumps the version, indexes the call id and appends the audit entry, all
     atomically. Any other write to the person's facts (an opt-out, a consent withdrawal, another process's
     reservation) bumps the version too, so a decision made on facts that changed meanwhile never reserves:
     the gate re-reads and re-decides, a bounded number of times, then denies with CONTENTION.
Every decision, allowed or not, is appended to the tenant's audit trail (dialer/audit.py) with its reasons
and the rule-pack versions; an allowed reservation and its audit entry are written by the same script.

If Redis cannot be reached the gate denies with STATE_UNAVAILABLE (nothing can be reserved or audited then).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

import orjson
import redis

from dialer.audit import AUDIT_LUA, AuditEvent, AuditLog, head_key, iso, stream_key
from dialer.facts import (
    FactStore,
    PersonFacts,
    attempt_from_json,
    consent_from_json,
    optout_from_json,
    person_key,
    relationship_from_json,
)
from dialer.holds import CODES as HOLD_CODES
from dialer.holds import HOLD_LUA, STATUS_CODES
from dialer.registry.store import RegistryError
from dialer.suppression import key_fingerprint
from rules import geo
from rules.model import Attempt, Campaign, Contact, Decision, Facts, Lists, Reason, utc

log = logging.getLogger(__name__)

MAX_ROUNDS = 5  # read-decide-reserve rounds before a CONTENTION denial
CALL_INDEX_TTL = 7 * 24 * 3600  # how long call_id -> number stays resolvable for outcomes and release
REGISTRY_WARN_EVERY = 900.0  # seconds between two warnings about the same unusable registry
REGISTRY_DATE_TTL = 1.0  # seconds a registry copy date is cached (an older date can only deny more)


def registries_by_country(packs: Any) -> dict[str, tuple[str, ...]]:
    """Country -> names of the national registries its packs consult (rules of kind national_registry)."""
    found: dict[str, list[str]] = {}
    for pack in getattr(packs, "packs", ()):
        for rule in pack.rules:
            if rule.kind == "national_registry":
                names = found.setdefault(pack.jurisdiction[:2], [])
                if rule.params["registry"] not in names:
                    names.append(rule.params["registry"])
    return {country: tuple(names) for country, names in found.items()}


def registry_audiences(packs: Any) -> dict[str, frozenset[str] | None]:
    """Registry name -> the audiences whose calls consult it (None: every audience). The UK's CTPS is for business
    calls only: a consumer campaign never needs (or warns about) a CTPS copy."""
    found: dict[str, frozenset[str] | None] = {}
    for pack in getattr(packs, "packs", ()):
        for rule in pack.rules:
            if rule.kind != "national_registry":
                continue
            name, audiences = rule.params["registry"], getattr(rule, "audiences", None)
            if name in found and found[name] is None:
                continue
            found[name] = None if audiences is None else (found.get(name) or frozenset()) | audiences
    return found


class Registries(Protocol):
    """What the gate needs from dialer.registry.store.RegistryStore (see CONTRACTS.md)."""

    def contains_many(self, name: str, e164s: Sequence[str]) -> list[bool]: ...

    def loaded_at(self, name: str) -> datetime | None: ...


def _reason(code: str, text: str) -> Reason:
    return Reason(code=code, text=text, rule=f"gate/{code.lower()}", source="dialer gate (fail closed)")


CONTENTION = _reason("CONTENTION", "the person's facts kept changing while the gate decided; try again shortly")
STATE_UNAVAILABLE = _reason("STATE_UNAVAILABLE", "the gate could not read or write its state in Redis")
DUPLICATE_CALL_ID = _reason("DUPLICATE_CALL_ID", "this call id is already in use (call ids must be unique)")
ERASED_SUPPRESSED = _reason("ERASED_SUPPRESSED", "this person's data was erased at their request; the number is on "
                            "the tenant's suppression list and is never called again")
SUPPRESSION_UNVERIFIABLE = _reason("SUPPRESSION_UNVERIFIABLE", "the tenant's suppression list was written with "
                                   "another security.secret_key: erased numbers cannot be recognised")
HOLDS = {code: _reason(code, f"{text}: no call is placed for it until it is lifted")
         for code, text in HOLD_CODES.items()}
INVALID_NUMBER = Reason("INVALID_NUMBER", "the phone number is not a valid number", "gate/number",
                        "ITU-T E.164 (phonenumbers)")


@dataclass(frozen=True)
class Request:
    """One contact to decide on, for check_many / reserve_many."""

    contact: Contact
    campaign: Campaign
    call_id: str | None = None  # reserve_many: generated when None
    contact_id: str | None = None  # the tenant's contact id, kept in the audit (the number only as a keyed hash)


@dataclass(frozen=True)
class Reservation:
    """An allowed, reserved attempt: place the call with this call_id (DIALER_CALL_ID), then either record
    its outcome (Gate.record_outcome) or, if the Originate was never sent, Gate.release it."""

    call_id: str
    tenant: str
    campaign: str
    e164: str
    at: datetime
    decision: Decision
    version: int  # the person's fact version after the reservation
    audit_seq: int
    contact_id: str | None = None

    allowed = True


Outcome = Reservation | Decision
# decision, E.164 (None: invalid), the facts read, the registry copy dates used
Decided = tuple[Decision, str | None, PersonFacts | None, dict[str, datetime]]
# an allowed decision waiting for its reservation: request index, decision, E.164, facts read, registry dates
Reserving = tuple[int, Decision, str, PersonFacts, dict[str, datetime]]


@lru_cache(maxsize=65536)
def parse_number(phone: str, country: str | None) -> tuple[str, str] | None:
    """(E.164, country of the number) of a valid number, else None. The engine's own cached lookups, so a
    number is parsed once for both (French overseas departments are France)."""
    try:
        e164 = geo.normalize(phone, country)
    except geo.InvalidNumber:
        return None
    return e164, geo.jurisdiction_for_number(e164)[0]


# Read many people's facts in one script: one command to send and one reply to parse instead of six
# per person, and each batch is a consistent snapshot (facts and versions read at one instant).
# Keys are built here from the tenant prefix rather than passed in KEYS: that halves what the client
# encodes per person. Fine on a single Redis (our deployment); Redis Cluster would need KEYS and hash tags.
# ARGV: prefix "t:{T}:", count n, then per person e164, campaign, then per person its suppression ref
# (dialer/suppression.py: erased numbers are kept only as keyed hashes).
# Reply: per person [consent list, rel list, att values, company entry|nil, campaign entry|nil, ver|nil], then
# one list of 0/1 (suppressed) per person and the suppression key fingerprint (nil when never written).
_READ = r"""
local p = ARGV[1]
local n = tonumber(ARGV[2])
local out = {}
for i = 3, 2 + 2 * n, 2 do
  local e, c = ARGV[i], ARGV[i + 1]
  local k = p .. 'p:' .. e .. ':'
  out[#out + 1] = redis.call('LRANGE', k .. 'consent', 0, -1)
  out[#out + 1] = redis.call('LRANGE', k .. 'rel', 0, -1)
  out[#out + 1] = redis.call('HVALS', k .. 'att')
  out[#out + 1] = redis.call('HGET', p .. 'dnc', e)
  out[#out + 1] = redis.call('HGET', p .. 'campaign:' .. c .. ':dnc', e)
  out[#out + 1] = redis.call('GET', k .. 'ver')
end
local sup = {}
for i = 3 + 2 * n, 2 + 3 * n do
  sup[#sup + 1] = redis.call('HEXISTS', p .. 'suppression', ARGV[i])
end
out[#out + 1] = sup
out[#out + 1] = redis.call('GET', p .. 'suppression:key') or false
return out
"""

# Reserve a batch and audit every decision of it, in one atomic script. A reservation happens only if
# the person's version is still the one its decision was made on. Person keys are built from the prefix.
# KEYS: audit stream, audit head. ARGV: prefix "t:{T}:", reservations r, denials d, call index ttl; then per
# reservation: version, call_id, attempt, e164 and its audit entry (5 fields); per denial: its entry (5 fields).
# Reply: per reservation status (1 reserved, 0 version moved, -1 call id already used, for any number within
# the index's 7 days or for this number ever; -2, -3, -4 a kill-switch hold: dialer/holds.py), new version, audit seq.
# The holds are checked first, for every reservation, with no way around them (dialer/holds.py).
_RESERVE = AUDIT_LUA + HOLD_LUA + r"""
local a = audit_open(KEYS[1], KEYS[2])
if not a then return redis.error_reply(AUDIT_LOST) end
local p, r, d, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local out = {}
for i = 0, r - 1 do
  local b = 5 + i * 9
  local call, e = ARGV[b + 1], ARGV[b + 3]
  local ver, att = p .. 'p:' .. e .. ':ver', p .. 'p:' .. e .. ':att'
  local index = p .. 'call:' .. call
  local v = redis.call('GET', ver) or '0'
  local held = hold_of(p, cjson.decode(ARGV[b + 2]).campaign)
  if held ~= 0 then
    out[#out + 1] = held; out[#out + 1] = v; out[#out + 1] = 0
  elseif v ~= ARGV[b] then
    out[#out + 1] = 0; out[#out + 1] = v; out[#out + 1] = 0
  elseif redis.call('EXISTS', index) == 1 or redis.call('HEXISTS', att, call) == 1 then
    out[#out + 1] = -1; out[#out + 1] = v; out[#out + 1] = 0
  else
    redis.call('HSET', att, call, ARGV[b + 2])
    local nv = redis.call('INCR', ver)
    redis.call('SET', index, e, 'EX', ttl)
    local s = audit_add(a, ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8])
    out[#out + 1] = 1; out[#out + 1] = nv; out[#out + 1] = s
  end
end
local base = 5 + r * 9
for i = 0, d - 1 do
  local b = base + i * 5
  audit_add(a, ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4])
end
audit_close(a)
return out
"""

# Release: forget an attempt that was reserved but never placed. Only a still-`reserved` attempt.
# KEYS: att, ver, call index, audit stream, audit head. ARGV: call_id, audit entry (5 fields)
_RELEASE = AUDIT_LUA + r"""
local a = audit_open(KEYS[4], KEYS[5])
if not a then return redis.error_reply(AUDIT_LOST) end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
if not string.find(raw, '"outcome":"reserved"', 1, true) then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[3])
audit_add(a, ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
audit_close(a)
return 1
"""
BATCH = 256  # reservations per script call: bounds how long one call holds Redis (about 1-2 ms)
STREAM_SLICE = 128  # reserve_many of more requests than this decides a slice while Redis reserves the previous one


def attempt_record(at: datetime, campaign: str, call_id: str, outcome: str = "reserved") -> str:
    """An attempt as FactStore stores it (same canonical JSON), without dataclass overhead."""
    return orjson.dumps({"at": iso(at), "call_id": call_id, "campaign": campaign, "outcome": outcome},
                        option=orjson.OPT_SORT_KEYS).decode()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def tenant_prefix(tenant: str) -> str:
    return f"t:{tenant}:"


def consent_use_key(tenant: str, e164: str) -> str:
    """zset purpose -> epoch seconds of the last allowed call that used the person's consent (German contacts)."""
    return person_key(tenant, e164, "consent_used")


def _uses_german_consent(decision: Decision) -> bool:
    return any(j == "DE" or j.startswith("DE-") for j in decision.jurisdictions)


def call_index_key(tenant: str, call_id: str) -> str:
    return f"t:{tenant}:call:{call_id}"


# Parsed records are immutable and the same stored JSON recurs decision after decision (a person's history
# is re-read on every pass of a campaign): parse each distinct record once. Bounded: about 150 MB at most.
_consent = lru_cache(maxsize=50_000)(consent_from_json)
_relationship = lru_cache(maxsize=50_000)(relationship_from_json)
_attempt = lru_cache(maxsize=100_000)(attempt_from_json)  # about 630 bytes each
_optout = lru_cache(maxsize=50_000)(optout_from_json)


def _person_ref(audit: AuditLog, e164: str) -> str | None:
    """The keyed reference, or None without a secret key (an outcome is never held back for want of a key)."""
    try:
        return audit.person_ref(e164)
    except ValueError:
        return None


def _at(attempt: Attempt) -> datetime:
    return attempt.at


def person_facts(raw: Sequence[Any]) -> PersonFacts:
    """FactStore's reading of one person's raw values (same layout as FactStore.load), with cached parsing."""
    consent, rel, att, company, campaign, version = raw
    return PersonFacts(
        consent=tuple(_consent(x) for x in consent),
        relationships=tuple(_relationship(x) for x in rel),
        history=tuple(sorted((_attempt(x) for x in att), key=_at)),
        company_dnc=_optout(company) if company else None,
        campaign_dnc=_optout(campaign) if campaign else None,
        version=int(version or 0),
    )


class Gate:
    """The stateful gate. Thread-safe as far as the redis client is (a pooled redis.Redis is).

    packs: the loaded rule packs, passed to the engine unchanged. registries: a RegistryStore, or None (no
    registry copy loaded: regimes that require scrubbing then deny). audit: an AuditLog, or built from
    secret_key (setting security.secret_key; required, as the audit references people by keyed hash).
    """

    def __init__(
        self, client: redis.Redis, packs: Any, registries: Registries | None, *,
        audit: AuditLog | None = None, secret_key: str | bytes | None = None, actor: str = "gate",
        evaluate: Callable[..., Decision] | None = None, max_rounds: int = MAX_ROUNDS,
        extra_registries: Sequence[str] = (),
    ) -> None:
        if audit is None:
            if not secret_key:
                raise ValueError("setting security.secret_key is required: the audit trail keys phone numbers")
            audit = AuditLog(client, secret_key)
        if evaluate is None:
            from rules import evaluate as engine  # the pure engine (rules branch)
            evaluate = engine
        self.redis = client
        self.packs = packs
        self.registries = registries
        self.audit = audit
        self.facts = FactStore(client)
        self.actor = actor
        self.max_rounds = max_rounds
        self.extra_registries = tuple(extra_registries)
        self._registries_by_country = registries_by_country(packs)
        self._registry_audiences = registry_audiences(packs)
        self._evaluate = evaluate
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)
        self._read = client.register_script(_READ)
        self._dates: dict[str, tuple[float, datetime | None]] = {}
        self._warned: dict[str, float] = {}
        self._names: dict[tuple[str, str | None, str], tuple[str, ...]] = {}
        self._pack_refs: dict[tuple, list[str]] = {}

    # --- public API -----------------------------------------------------------------------------

    def check(self, contact: Contact, campaign: Campaign, at: datetime, *, contact_id: str | None = None,
              audit: bool = False) -> Decision:
        """What-if: the decision for this contact at `at`, reserving nothing. Audited only if asked."""
        return self.check_many([Request(contact, campaign, contact_id=contact_id)], at, audit=audit)[0]

    def check_many(self, requests: Sequence[Request], at: datetime, *, audit: bool = False) -> list[Decision]:
        at = utc(at)
        try:
            decided = self._decide(requests, at)
            decisions = [d[0] for d in decided]
            if audit:
                events: dict[str, list[AuditEvent]] = {}
                for request, (decision, e164, pf, copies) in zip(requests, decided, strict=True):
                    events.setdefault(request.campaign.tenant, []).append(
                        self._event(request, decision, at, e164, pf, mode="check", copies=copies))
                for tenant, batch in events.items():
                    self.audit.append_many(tenant, batch)
            return decisions
        except redis.RedisError as exc:
            log.warning("gate state unavailable: %s", exc)
            return [self._unavailable(at) for _ in requests]

    def check_and_reserve(self, contact: Contact, campaign: Campaign, at: datetime, call_id: str | None = None, *,
                          contact_id: str | None = None) -> Outcome:
        """Decide and, if allowed, reserve the attempt atomically. Returns a Reservation (place the call with
        its call_id) or the denying Decision. Audited either way."""
        return self.reserve_many([Request(contact, campaign, call_id, contact_id)], at)[0]

    def reserve_many(self, requests: Sequence[Request], at: datetime) -> list[Outcome]:
        """check_and_reserve for many contacts: one read script and one reserve-and-audit script per tenant
        and 256 reservations; contacts whose facts changed meanwhile are re-decided. Results are in order."""
        at = utc(at)
        results: list[Outcome | None] = [None] * len(requests)
        try:
            self._reserve_many(requests, at, results)
        except redis.RedisError as exc:
            # Reservations the script confirmed stand (reserved and audited); anything else is denied. A
            # reservation whose reply was lost stays recorded as an attempt: it counts, which is the safe side.
            log.warning("gate state unavailable: %s", exc)
            return [r if isinstance(r, Reservation) else self._unavailable(at) for r in results]
        return results  # type: ignore[return-value]

    def release(self, tenant: str, call_id: str, at: datetime, *, reason: str = "not originated") -> bool:
        """Give back a reservation whose call was never originated, so it does not count as an attempt.
        Returns False when there is nothing to release (unknown call id, or the attempt already has an
        outcome: a placed call always counts)."""
        e164 = self._number_of(tenant, call_id)
        if e164 is None:
            return False
        event = AuditEvent("gate_release", self.actor, {
            "call_id": call_id, "person": self.audit.person_ref(e164), "phone": self.audit.mask(e164),
            "reason": reason}, utc(at))
        keys = [person_key(tenant, e164, "att"), person_key(tenant, e164, "ver"), call_index_key(tenant, call_id),
                stream_key(tenant), head_key(tenant)]
        return int(self._release(keys=keys, args=[call_id, *event.argv()], client=self.redis)) == 1

    def record_outcome(self, tenant: str, call_id: str, outcome: str, at: datetime, *, e164: str | None = None,
                       actor: str | None = None, details: dict[str, Any] | None = None,
                       metered: dict[str, int] | None = None, call: dict[str, Any] | None = None) -> str:
        """Record what became of a reserved call (a dispositions value: answered, busy, no_answer, refused,
        abandoned, machine, opted_out ...). It counts in later decisions (caps, cool-offs). An opt-out must
        also be recorded with FactStore.add_optout (and audited as kind `optout`) by whoever heard it.

        Reports may come in any order (the AMI outcome at hangup, an agent's disposition before or after it):
        the stronger one is kept (dialer.facts.OUTCOME_PRECEDENCE). Returns the outcome stored; the audit entry
        says which outcome was kept and, when different, which one was reported. `metered`: what the placed call
        counts for (dialer/usage/meter.py), counted once per call id in the same transaction as the outcome.
        `call` (ring, talk and wrap-up seconds, hangup cause, endpoint: dialer.runtime.call_record) goes into
        the audit entry, whence the archiver makes the attempt's call record (dialer/record)."""
        number = e164 or self._number_of(tenant, call_id)
        if number is None:
            raise KeyError(f"call {call_id}: number unknown (index expired); pass e164")
        kept = self.facts.record_outcome(tenant, number, call_id, outcome, at, details=details, metered=metered)
        payload: dict[str, Any] = {"call_id": call_id, "outcome": kept, "person": _person_ref(self.audit, number),
                                   "phone": self.audit.mask(number)}
        if kept != outcome:
            payload["reported"] = outcome
        if call:
            payload["call"] = call
        elif details and details.get("agent"):
            payload["call"] = {"endpoint": f"agent:{details['agent']}"}
        self.audit.append(tenant, "call_outcome", actor or self.actor, payload, utc(at))
        return kept

    def number_of(self, tenant: str, call_id: str) -> str | None:
        """The number a call id was reserved for (the call index, 7 days), or None: unknown, released, expired,
        or another tenant's."""
        return self._number_of(tenant, call_id)

    # --- deciding -------------------------------------------------------------------------------

    def _number_of(self, tenant: str, call_id: str) -> str | None:
        raw = self.redis.get(call_index_key(tenant, call_id))
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    def _registry_names(self, country: str, address_country: str | None, audience: str = "") -> tuple[str, ...]:
        """Registries to look the number up in: those the packs of the number's country and of the address's
        country consult (both jurisdictions apply) for calls to this audience, plus any custom ones. Lookups are
        in-process bitmaps."""
        key = (country, address_country, audience)
        names = self._names.get(key)
        if names is None:
            names = tuple(n for n in self._registry_names_of(country, address_country)
                          if not audience or (self._registry_audiences.get(n) or {audience}) >= {audience})
            self._names[key] = names
        return names

    def _registry_names_of(self, country: str, address_country: str | None) -> tuple[str, ...]:
        names = self._registries_by_country.get(country, ())
        if address_country and address_country.upper() != country:
            names += self._registries_by_country.get(address_country.upper(), ())
        return tuple(dict.fromkeys(names + self.extra_registries))

    def _registry_date(self, name: str) -> datetime | None:
        now = time.monotonic()
        cached = self._dates.get(name)
        if cached and now - cached[0] < REGISTRY_DATE_TTL:
            return cached[1]
        try:
            value = self.registries.loaded_at(name) if self.registries is not None else None
        except RegistryError as exc:  # unreadable: as if no copy were loaded, so scrubbing regimes deny
            self._warn(name, exc)
            value = None
        self._dates[name] = (now, value)
        return value

    def _decide(self, requests: Sequence[Request], at: datetime) -> list[Decided]:
        """Read facts for all requests (one script per tenant, usually one), decide each."""
        numbers = [parse_number(r.contact.phone, r.contact.country) for r in requests]
        by_tenant: dict[str, list[int]] = {}
        for i, number in enumerate(numbers):
            if number is not None:
                by_tenant.setdefault(requests[i].campaign.tenant, []).append(i)
        person: dict[int, PersonFacts] = {}
        suppressed: dict[int, bool | None] = {}
        for tenant, idx in by_tenant.items():
            loaded, flags = self._read_facts(tenant, [(numbers[i][0], requests[i].campaign.id) for i in idx])  # type: ignore[index]
            person.update(zip(idx, loaded, strict=True))
            suppressed.update(zip(idx, flags, strict=True))
        return self._decide_read(requests, at, numbers, person, suppressed)

    def _decide_read(self, requests: Sequence[Request], at: datetime, numbers: Sequence[tuple[str, str] | None],
                     person: dict[int, PersonFacts], suppressed: dict[int, bool | None]) -> list[Decided]:
        """Decide each request on facts already read (by position in `requests`, for valid numbers: the facts,
        and whether the number is suppressed: True, False, None when the list cannot be checked)."""
        valid = [i for i, n in enumerate(numbers) if n is not None]
        names_of = {i: self._registry_names(numbers[i][1], requests[i].contact.country,  # type: ignore[index]
                                            requests[i].campaign.audience) for i in valid}
        membership = self._memberships([(numbers[i][0], names_of[i]) for i in valid])  # type: ignore[index]
        # one copy date per registry for the whole batch: every decision of it sees the same copies
        dates = {n: self._registry_date(n) for names in names_of.values() for n in names}
        out: list[Decided] = []
        for i, request in enumerate(requests):
            number = numbers[i]
            if number is None:
                facts = Facts()
                decision = self._evaluate(request.contact, request.campaign, facts, at, self.packs)
                if decision.allowed:  # the engine should never allow an invalid number: fail closed anyway
                    decision = Decision(False, at, (INVALID_NUMBER,), None, decision.packs, decision.jurisdictions)
                out.append((decision, None, None, {}))
                continue
            e164 = number[0]
            pf = person[i]
            names = names_of[i]
            facts = Facts(
                consent=pf.consent, relationships=pf.relationships, history=pf.history,
                lists=Lists(national={n: membership[(n, e164)] for n in names if (n, e164) in membership},
                            company=pf.company_dnc is not None,
                            campaign=pf.campaign_dnc is not None),
                registry_copies={n: d for n in names if (d := dates[n]) is not None},
            )
            decision = self._evaluate(request.contact, request.campaign, facts, at, self.packs)
            if suppressed[i] is not False:  # erased at the person's request (or the list is unreadable): never
                barred = ERASED_SUPPRESSED if suppressed[i] else SUPPRESSION_UNVERIFIABLE
                decision = Decision(False, at, (barred, *decision.reasons), None, decision.packs,
                                    decision.jurisdictions)
            out.append((decision, e164, pf, facts.registry_copies))
        return out

    def _warn(self, name: str, exc: Exception) -> None:
        """Log a registry problem once, then at most every REGISTRY_WARN_EVERY per registry (every decision carries
        the reason; a line a minute for a copy nobody loaded was noise: issue 14)."""
        now = time.monotonic()
        if now - self._warned.get(name, -1e9) >= REGISTRY_WARN_EVERY:
            self._warned[name] = now
            log.warning("gate: registry %s not usable (%s): calls needing it are denied", name, exc)

    def _memberships(self, numbers: Sequence[tuple[str, tuple[str, ...]]]) -> dict[tuple[str, str], bool]:
        wanted: dict[str, list[str]] = {}
        for e164, names in numbers:
            for name in names:
                wanted.setdefault(name, []).append(e164)
        found: dict[tuple[str, str], bool] = {}
        for name, e164s in wanted.items():
            unique = list(dict.fromkeys(e164s))
            # No store, or no live copy: the membership stays unknown (absent), which the engine denies as
            # missing data, and no copy date is given, so freshness rules deny too: fail closed.
            if self.registries is None:
                continue
            try:
                hits = self.registries.contains_many(name, unique)
            except RegistryError as exc:
                self._warn(name, exc)
                self._dates[name] = (time.monotonic(), None)
                continue
            found.update(((name, e), bool(h)) for e, h in zip(unique, hits, strict=True))
        return found

    def _reserve_many(self, requests: Sequence[Request], at: datetime, results: list[Outcome | None]) -> None:
        call_ids = [r.call_id or uuid.uuid4().hex for r in requests]
        pending = list(range(len(requests)))
        rounds = self.max_rounds
        if len(pending) > STREAM_SLICE and rounds > 0 and self._streamable():
            pending = self._reserve_streamed(requests, at, results, call_ids, pending)
            rounds -= 1
        for _ in range(rounds):
            if not pending:
                break
            decided = self._decide([requests[i] for i in pending], at)
            commands, chunks = self._reserve_commands(requests, at, results, call_ids, pending, decided)
            replies = self._execute(self.redis.pipeline(transaction=False), commands)
            pending = []
            uses: list[tuple[str, str, str]] = []
            for chunk, reply in zip(chunks, replies, strict=True):
                pending += self._apply_reply(requests, at, results, call_ids, chunk, reply, uses)
            if uses:
                self._record_consent_uses(uses, at)
        for i in pending:  # still contended after max_rounds: fail closed
            results[i] = self._deny_audited(requests[i], at, None, CONTENTION, call_ids[i], None)

    def _reserve_commands(self, requests: Sequence[Request], at: datetime, results: list[Outcome | None],
                          call_ids: Sequence[str], idxs: Sequence[int], decided: Sequence[Decided],
                          ) -> tuple[list[tuple[Any, list[str]]], list[list[Reserving]]]:
        """The reserve-and-audit script calls for decided requests (one per tenant and BATCH reservations; the
        denials ride with the tenant's first call); denials are put in `results` at once."""
        reserve: dict[str, list[Reserving]] = {}
        deny: dict[str, list[AuditEvent]] = {}
        for i, (decision, e164, pf, copies) in zip(idxs, decided, strict=True):
            tenant = requests[i].campaign.tenant
            if decision.allowed and e164 is not None and pf is not None:
                reserve.setdefault(tenant, []).append((i, decision, e164, pf, copies))
            else:
                deny.setdefault(tenant, []).append(self._event(
                    requests[i], decision, at, e164, pf, mode="reserve", call_id=call_ids[i], copies=copies))
                results[i] = decision
        commands: list[tuple[Any, list[str]]] = []  # (script, EVALSHA arguments) in order
        chunks: list[list[Reserving]] = []
        for tenant in reserve.keys() | deny.keys():
            wanted, denials = reserve.get(tenant, []), deny.get(tenant, [])
            for n in range(0, max(len(wanted), 1), BATCH):
                chunk = wanted[n:n + BATCH]
                keys = [stream_key(tenant), head_key(tenant)]
                args = [tenant_prefix(tenant), str(len(chunk)), str(len(denials) if n == 0 else 0),
                        str(CALL_INDEX_TTL)]
                for i, decision, e164, pf, copies in chunk:
                    call_id = call_ids[i]
                    args += [str(pf.version), call_id, attempt_record(at, requests[i].campaign.id, call_id), e164,
                             *self._event(requests[i], decision, at, e164, pf, mode="reserve",
                                          call_id=call_id, copies=copies).argv()]
                if n == 0:
                    for event in denials:
                        args += event.argv()
                commands.append((self._reserve, [self._reserve.sha, str(len(keys)), *keys, *args]))
                chunks.append(chunk)
        return commands, chunks

    def _apply_reply(self, requests: Sequence[Request], at: datetime, results: list[Outcome | None],
                     call_ids: Sequence[str], chunk: Sequence[Reserving], reply: Sequence[Any],
                     uses: list[tuple[str, str, str]]) -> list[int]:
        """Turn one reserve script's reply into Reservations (German consent uses go to `uses`); returns the
        requests to decide again."""
        again: list[int] = []
        for n, (i, decision, e164, _, _) in enumerate(chunk):
            status, version, seq = (int(x) for x in reply[n * 3:n * 3 + 3])
            request = requests[i]
            if status == 1:
                if _uses_german_consent(decision):
                    uses.append((request.campaign.tenant, e164, request.campaign.purpose))
                results[i] = Reservation(
                    call_id=call_ids[i], tenant=request.campaign.tenant, campaign=request.campaign.id,
                    e164=e164, at=at, decision=decision, version=version, audit_seq=seq,
                    contact_id=request.contact_id)
            elif status == 0:
                again.append(i)  # the person's facts changed since we read them: decide again
            elif status in STATUS_CODES:  # a kill-switch (dialer/holds.py): denied, audited, retried later
                results[i] = self._deny_audited(request, at, e164, HOLDS[STATUS_CODES[status]], call_ids[i], decision)
            else:
                results[i] = self._deny_audited(request, at, e164, DUPLICATE_CALL_ID, call_ids[i], decision)
                log.warning("gate: call id %s reused for another reservation", call_ids[i])
        return again

    # --- streaming: Redis reserves one slice while Python decides the next -----------------------------

    def _streamable(self) -> bool:
        """A plain client over a connection pool (not a single-connection client or a cluster)."""
        return type(self.redis) is redis.Redis and getattr(self.redis, "connection", None) is None

    def _read_commands(self, requests: Sequence[Request], idxs: Sequence[int],
                       numbers: Sequence[tuple[str, str] | None]) -> list[tuple[list[int], list[str]]]:
        by_tenant: dict[str, list[int]] = {}
        for i in idxs:
            if numbers[i] is not None:
                by_tenant.setdefault(requests[i].campaign.tenant, []).append(i)
        commands = []
        for tenant, ids in by_tenant.items():
            args = ["EVALSHA", self._read.sha, "0", tenant_prefix(tenant), str(len(ids))]
            for i in ids:
                args += (numbers[i][0], requests[i].campaign.id)  # type: ignore[index]
            args += [self.audit.person_ref(numbers[i][0]) for i in ids]  # type: ignore[index]
            commands.append((ids, args))
        return commands

    def _receive(self, conn: Any, script: Any, command: list[str]) -> Any:
        """The reply to one EVALSHA command sent on `conn`; a script missing from the server's cache (restart,
        SCRIPT FLUSH: the command did nothing) is loaded and the command run again on the pool."""
        try:
            return conn.read_response()
        except redis.exceptions.NoScriptError:
            self.redis.script_load(script.script)
            return self.redis.execute_command(*command)

    def _reserve_streamed(self, requests: Sequence[Request], at: datetime, results: list[Outcome | None],
                          call_ids: Sequence[str], pending: Sequence[int]) -> list[int]:
        """The first read-decide-reserve round of a large batch, in slices of STREAM_SLICE, pipelined on one
        connection so that Redis and Python work at the same time: each write carries the next slice's read
        script first, then this slice's reserve script; the read's reply comes back at once and the next
        slice is decided while Redis runs the reserve. Same scripts and checks as the plain round: a read
        that ran before an earlier slice's reservation of the same person is caught by the version check.
        Returns the requests to decide again."""
        numbers = [parse_number(r.contact.phone, r.contact.country) for r in requests]
        # A person asked about again later in the batch waits for the next round, as in the plain round (where
        # all are decided on one read and the first reservation makes the others re-decide): so the earliest
        # request still gets the slot, whichever slice the others fall in.
        first: list[int] = []
        again: list[int] = []
        seen: set[tuple[str, str]] = set()
        for i in pending:
            number = numbers[i]
            if number is not None:
                person_id = (requests[i].campaign.tenant, number[0])
                if person_id in seen:
                    again.append(i)
                    continue
                seen.add(person_id)
            first.append(i)
        slices = [first[k:k + STREAM_SLICE] for k in range(0, len(first), STREAM_SLICE)]
        pool = self.redis.connection_pool
        conn = pool.get_connection()
        try:
            reads = self._read_commands(requests, slices[0], numbers)
            conn.send_packed_command(conn.pack_commands([args for _, args in reads]))
            outstanding: tuple[list[tuple[Any, list[str]]], list[list[Reserving]]] | None = None
            uses: list[tuple[str, str, str]] = []
            for j, idxs in enumerate(slices):
                person: dict[int, PersonFacts] = {}
                suppressed: dict[int, bool | None] = {}
                for ids, args in reads:
                    facts, flags = self._facts_of(self._receive(conn, self._read, args), len(ids))
                    person.update(zip(ids, facts, strict=True))
                    suppressed.update(zip(ids, flags, strict=True))
                decided = self._decide_read([requests[i] for i in idxs], at, [numbers[i] for i in idxs],
                                            {n: person[i] for n, i in enumerate(idxs) if i in person},
                                            {n: suppressed[i] for n, i in enumerate(idxs) if i in suppressed})
                commands, chunks = self._reserve_commands(requests, at, results, call_ids, idxs, decided)
                reads = self._read_commands(requests, slices[j + 1], numbers) if j + 1 < len(slices) else []
                conn.send_packed_command(conn.pack_commands([args for _, args in reads] +
                                                            [["EVALSHA", *args] for _, args in commands]))
                if outstanding is not None:  # the previous slice's reserve replies come first on the wire
                    for (script, args), chunk in zip(*outstanding, strict=True):
                        again += self._apply_reply(requests, at, results, call_ids, chunk,
                                                   self._receive(conn, script, ["EVALSHA", *args]), uses)
                # the next read's replies are read at the top of the loop; this slice's reserve stays outstanding
                outstanding = (commands, chunks)
            if outstanding is not None:
                for (script, args), chunk in zip(*outstanding, strict=True):
                    again += self._apply_reply(requests, at, results, call_ids, chunk,
                                               self._receive(conn, script, ["EVALSHA", *args]), uses)
        except BaseException:
            conn.disconnect()  # replies may be left unread: never hand this connection to anyone else
            raise
        finally:
            pool.release(conn)
        if uses:
            self._record_consent_uses(uses, at)
        return sorted(again)

    def _record_consent_uses(self, uses: Sequence[tuple[str, str, str]], at: datetime) -> None:
        """German law keeps consent evidence 5 years from its grant and from each use: remember the last use
        per purpose (ZADD GT keeps the latest), for dialer/retention.py. Not a fact the gate decides on, so
        the person's version does not move."""
        pipe = self.redis.pipeline(transaction=False)
        for tenant, e164, purpose in uses:
            pipe.zadd(consent_use_key(tenant, e164), {purpose: at.timestamp()}, gt=True)
        pipe.execute()

    def _read_facts(self, tenant: str, items: Sequence[tuple[str, str]]) -> tuple[list[PersonFacts], list[bool | None]]:
        """Facts of many (e164, campaign) pairs of one tenant in one script call (see _READ), and whether each
        number is suppressed (erased): True, False, or None when the list cannot be checked (other key)."""
        args = [tenant_prefix(tenant), str(len(items))]
        for e164, campaign in items:
            args += (e164, campaign)
        args += [self.audit.person_ref(e164) for e164, _ in items]
        command = ["EVALSHA", self._read.sha, "0", *args]
        try:  # EVALSHA directly: redis-py's Script wrapper costs more than the command itself for one person
            raw = self.redis.execute_command(*command)
        except redis.exceptions.NoScriptError:  # not in the server's script cache (restart, SCRIPT FLUSH)
            self.redis.script_load(self._read.script)
            raw = self.redis.execute_command(*command)
        return self._facts_of(raw, len(items))

    def _facts_of(self, raw: Sequence[Any], count: int) -> tuple[list[PersonFacts], list[bool | None]]:
        """The read script's reply for `count` people: their facts, and their suppression flags."""
        facts = [person_facts(raw[n * 6:n * 6 + 6]) for n in range(count)]
        flags, stored_key = raw[count * 6], raw[count * 6 + 1]
        if stored_key and _s(stored_key) != key_fingerprint(self.audit._key):
            return facts, [None] * count
        return facts, [bool(flag) for flag in flags]

    def _execute(self, pipe: Any, commands: Sequence[tuple[Any, list[str]]]) -> list[Any]:
        """Run EVALSHAs (one directly, several in a pipeline); scripts missing from the server's cache (after a
        restart or SCRIPT FLUSH) are loaded and only the commands that failed with NOSCRIPT are run again
        (they did nothing)."""
        if not commands:
            return []
        if len(commands) == 1:  # the common single-decision case: no pipeline machinery
            script, args = commands[0]
            try:
                return [self.redis.execute_command("EVALSHA", *args)]
            except redis.exceptions.NoScriptError:
                self.redis.script_load(script.script)
                return [self.redis.execute_command("EVALSHA", *args)]
        for _, args in commands:
            pipe.execute_command("EVALSHA", *args)
        replies = pipe.execute(raise_on_error=False)
        for n, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                script, args = commands[n]
                self.redis.script_load(script.script)
                replies[n] = self.redis.execute_command("EVALSHA", *args)
            elif isinstance(reply, Exception):
                raise reply
        return replies

    # --- audit ----------------------------------------------------------------------------------

    def _event(self, request: Request, decision: Decision, at: datetime, e164: str | None,
               pf: PersonFacts | None, *, mode: str, call_id: str | None = None,
               copies: dict[str, datetime] | None = None) -> AuditEvent:
        payload: dict[str, Any] = {
            "mode": mode,
            "campaign": request.campaign.id,
            "contact_id": request.contact_id,
            "person": self.audit.person_ref(e164) if e164 else None,
            "phone": self.audit.mask(e164 or request.contact.phone),
            "allowed": decision.allowed,
            "reasons": [[r.code, r.rule, iso(r.until) if r.until else None] for r in decision.reasons],
            "next_allowed_at": iso(decision.next_allowed_at) if decision.next_allowed_at else None,
            "packs": self._refs_of(decision.packs),
            "jurisdictions": list(decision.jurisdictions),
            "version": pf.version if pf else None,
            "registries": {name: iso(date) for name, date in (copies or {}).items()},
        }
        if call_id:
            payload["call_id"] = call_id
        return AuditEvent("gate_decision", self.actor, payload, at)

    def _refs_of(self, packs: tuple) -> list[str]:
        refs = self._pack_refs.get(packs)
        if refs is None:
            refs = [f"{p.id}@{p.version}" for p in packs]
            if len(self._pack_refs) < 1000:
                self._pack_refs[packs] = refs
        return list(refs)

    def _deny_audited(self, request: Request, at: datetime, e164: str | None, reason: Reason, call_id: str,
                      basis: Decision | None) -> Decision:
        decision = Decision(False, at, (reason,), None, basis.packs if basis else (),
                            basis.jurisdictions if basis else ())
        self.audit.append(request.campaign.tenant, "gate_decision", self.actor,
                          self._event(request, decision, at, e164, None, mode="reserve", call_id=call_id).payload, at)
        return decision

    @staticmethod
    def _unavailable(at: datetime) -> Decision:
        return Decision(False, at, (STATE_UNAVAILABLE,))
