"""Data subject rights (GDPR Art. 15-17): access, rectification and erasure, by phone number or contact id.

Our clients (tenants) are the controllers; we answer their data subjects' requests on their behalf.
What we hold about a person is keyed by their phone number (the fact store: consents, relationships,
attempts, opt-outs) and by contact id (the contact lists). A subject is therefore a set of numbers: the
number asked about, or every number of the contact asked about, and every contact holding one of them
(a number shared by several people is one subject to us: we cannot tell them apart).

  access(client, tenant, phone=... | contact_id=..., ...)  -> dict (JSON-ready); access_csv -> str
  rectify(client, tenant, contact_id, changes, actor, at)   -> the contact after the change
  erase(client, tenant, phone=... | contact_id=..., actor, at, secret_key) -> ErasureReport

Erasure removes the person's data from contacts, list and campaign indexes, the fact store (consents and
their evidence, relationships, attempts, opt-out entries and the opt-out log), import error reports and
registered export files, and keeps one keyed-hash suppression entry (dialer/suppression.py) carrying the
dates of their opt-outs, so the number is never called (the gate denies ERASED_SUPPRESSED) or imported
(import rows are rejected SUPPRESSED) again. The audit trail is not rewritten: it holds no number, only
the keyed reference, a masked number and contact ids, and it is the evidence that the request was honoured.
Every request is itself audited (kinds access, rectification, erasure).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import phonenumbers
import redis

from dialer.audit import AuditEvent, AuditLog, iso
from dialer.audit_events import exports_key
from dialer.contacts.phones import normalize as normalize_cell
from dialer.contacts.store import Keys, Scripts, contacts_for_phone, get_contact
from dialer.facts import (
    FactStore,
    campaign_dnc_key,
    company_dnc_key,
    optout_from_json,
    optout_log_key,
    person_key,
    relationship_from_json,
)
from dialer.gate import call_index_key, consent_use_key
from dialer.record.contacts import erase_numbers
from dialer.record.store import RecordUnavailable
from dialer.runtime.queues import ContactQueue, queue_erase
from dialer.suppression import Suppression, SuppressionUnavailable
from dialer.webhooks import queue as webhook_queue

PERSON_PARTS = ("consent", "rel", "att", "consent_used")  # t:{T}:p:{e164}:{part}, removed by erasure
ERASED_VERSION_TTL = 600  # seconds the person's version counter outlives erasure (see erase())
RECTIFIABLE = ("first_name", "last_name", "full_name", "email", "postal_code", "city", "country", "state",
               "external_id")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class PrivacyError(Exception):
    """A request that cannot be carried out; str() is one line for people. `code` is stable."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_tenant(tenant: str) -> str:
    """Tenant ids become part of Redis keys: letters, digits, '_', '.', '-' only (no ':' reaching another
    tenant's keys)."""
    if not _TENANT.match(tenant or ""):
        raise PrivacyError("bad_tenant", "tenant ids are 1-64 letters, digits, '_', '.' or '-'", "tenant")
    return tenant


def e164_of(phone: str, country: str | None = None) -> str:
    """The number in E.164 (possible numbers accepted: an erasure must not fail on a numbering-plan detail)."""
    try:
        parsed = phonenumbers.parse(phone, country.upper() if country else None)
    except phonenumbers.NumberParseException:
        raise PrivacyError("bad_phone", f"not a phone number: give E.164 (+33...) or a country "
                           f"({len(phone)} characters given)", "phone") from None
    if not phonenumbers.is_possible_number(parsed):
        raise PrivacyError("bad_phone", "not a possible phone number", "phone")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass
class Subject:
    """Who a request is about: their numbers and the contacts holding them."""

    numbers: list[str]
    contact_ids: list[str]
    contacts: list[dict[str, Any]] = field(default_factory=list)


def find_subject(client: redis.Redis, tenant: str, phone: str | None = None, contact_id: str | None = None,
                 country: str | None = None) -> Subject:
    check_tenant(tenant)
    if (phone is None) == (contact_id is None):
        raise PrivacyError("bad_request", "give exactly one of phone or contact id")
    if contact_id is not None and (not contact_id or ":" in contact_id or len(contact_id) > 200):
        raise PrivacyError("bad_request", "not a contact id", "contact_id")
    if contact_id is not None:
        contact = get_contact(client, tenant, contact_id)
        if contact is None:
            raise PrivacyError("not_found", f"no contact {contact_id} for tenant {tenant}", "contact_id")
        numbers = [p["e164"] for p in contact["phones"]] or [contact["phone"]]
    else:
        numbers = [e164_of(phone or "", country)]
    ids: list[str] = [contact_id] if contact_id else []
    for number in numbers:
        ids += [cid for cid in contacts_for_phone(client, tenant, number) if cid not in ids]
    contacts = [c for c in (get_contact(client, tenant, cid) for cid in ids) if c is not None]
    for contact in contacts:  # every number of every contact found belongs to the subject too
        numbers += [p["e164"] for p in contact["phones"] if p["e164"] not in numbers]
    return Subject(numbers, ids, contacts)


# --- where things are ---------------------------------------------------------------------------

def _campaigns(client: redis.Redis, tenant: str) -> list[str]:
    """Every campaign id the tenant has: the campaign store and the campaigns imports filled."""
    found = {_s(c) for c in client.zrange(f"t:{{{tenant}}}:campaigns", 0, -1)}
    for import_id in client.zrange(Keys(tenant).imports, 0, -1):
        campaign = client.hget(Keys(tenant, _s(import_id)).status, "campaign")
        if campaign:
            found.add(_s(campaign))
    return sorted(found)


def _lists(client: redis.Redis, tenant: str) -> list[str]:
    return sorted(_s(x) for x in client.smembers(Keys(tenant).lists))


def _imports(client: redis.Redis, tenant: str) -> list[tuple[str, str]]:
    """(import id, region) of every import of the tenant."""
    out = []
    for import_id in client.zrange(Keys(tenant).imports, 0, -1):
        region = client.hget(Keys(tenant, _s(import_id)).status, "region")
        out.append((_s(import_id), _s(region or "FR")))
    return out


def _error_matches(entry: dict[str, Any], numbers: set[str], region: str) -> bool:
    value = str(entry.get("value") or "").strip()
    if not value:
        return False
    if value in numbers:
        return True
    phone = normalize_cell(value, region)
    return getattr(phone, "e164", None) in numbers


def _import_errors(client: redis.Redis, tenant: str, numbers: set[str],
                   staged: bool = False) -> list[tuple[str, bytes, dict]]:
    """(import id, raw stored item, entry) of the error-report entries whose cell holds one of the numbers.
    `staged`: also the duplicates a committing import has not moved into its report yet (both lists read at once)."""
    found = []
    for import_id, region in _imports(client, tenant):
        keys = Keys(tenant, import_id)
        if staged:
            pipe = client.pipeline(transaction=True)
            pipe.lrange(keys.errors, 0, -1)
            pipe.lrange(keys.duplicates, 0, -1)
            items = [raw for part in pipe.execute() for raw in part]
        else:
            items = client.lrange(keys.errors, 0, -1)
        for raw in items:
            entry = json.loads(raw)
            if _error_matches(entry, numbers, region):
                found.append((import_id, raw, entry))
    return found


def _optout_log(client: redis.Redis, tenant: str, numbers: set[str]) -> list[tuple[str, dict[str, str]]]:
    found = []
    for entry_id, fields in client.xrange(optout_log_key(tenant), "-", "+"):
        decoded = {_s(k): _s(v) for k, v in fields.items()}
        if decoded.get("e164") in numbers:
            found.append((_s(entry_id), decoded))
    return found


def _audit_mentions(audit: AuditLog, tenant: str, refs: set[str], contact_ids: set[str]) -> list[dict[str, Any]]:
    out = []
    for entry in audit.entries(tenant):
        payload = entry.payload
        if payload.get("person") in refs or payload.get("contact_id") in contact_ids \
                or refs & set(payload.get("people") or ()) or contact_ids & set(payload.get("contact_ids") or ()):
            out.append({"seq": entry.seq, "at": iso(entry.at), "kind": entry.kind, "actor": entry.actor,
                        "payload": payload})
    return out


def _all_mentions(audit: AuditLog, record: Any, tenant: str, refs: set[str],
                  contact_ids: set[str]) -> list[dict[str, Any]]:
    """The Redis tail's mentions and the record's archived ones (docs/record.md), each entry once, in seq order."""
    found = {e["seq"]: e for e in _audit_mentions(audit, tenant, refs, contact_ids)}
    if record is not None:
        from dialer.record.reports import audit_mentions
        from dialer.record.store import RecordNotMigrated

        try:
            for entry in audit_mentions(record, tenant, refs, contact_ids):
                found.setdefault(entry["seq"], entry)
        except RecordNotMigrated:  # no record was ever set up: everything is still in Redis
            pass
    return [found[s] for s in sorted(found)]


def _exports(client: redis.Redis, tenant: str) -> dict[str, dict[str, Any]]:
    return {_s(k): json.loads(v) for k, v in client.hgetall(exports_key(tenant)).items()}


def _export_rows(path: str, numbers: set[str], contact_ids: set[str]) -> Iterator[tuple[bool, list[str]]]:
    """(mentions the subject, row) for each row of an export file (cells lose the formula-guard apostrophe)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:  # our exports start with a byte-order mark
        for n, row in enumerate(csv.reader(fh)):
            cells = {c[1:] if c.startswith("'") else c for c in row}
            words = {w for c in cells for w in c.split()}
            yield n > 0 and bool((cells | words) & (numbers | contact_ids)), row


# --- access -------------------------------------------------------------------------------------

def _record_contacts(record: Any, tenant: str, numbers: list[str]) -> list[dict[str, Any]]:
    """The person's contacts in the record's contact store (docs/record.md), each once."""
    if record is None:
        return []
    from dialer.record.contacts import contacts_for_phone
    from dialer.record.store import RecordNotMigrated

    found: dict[str, dict[str, Any]] = {}
    try:
        for number in numbers:
            for contact in contacts_for_phone(record, tenant, number):
                found.setdefault(str(contact["id"]), contact)
    except RecordNotMigrated:  # no record (or no contact store) was ever set up
        return []
    return [found[k] for k in sorted(found)]


def access(client: redis.Redis, tenant: str, *, phone: str | None = None, contact_id: str | None = None,
           country: str | None = None, actor: str = "cli", at: datetime, secret_key: str | bytes = b"",
           audit_request: bool = True, record: Any = None) -> dict[str, Any]:
    """Everything we hold about the person (GDPR Art. 15), JSON-ready. Audited as kind `access`. `record` (a
    dialer.record.store.Record): audit entries already archived there and trimmed from Redis are included too; a
    record that cannot be read raises RecordUnavailable rather than answer with part of the history."""
    subject = find_subject(client, tenant, phone, contact_id, country)
    numbers = set(subject.numbers)
    facts = FactStore(client)
    audit = AuditLog(client, secret_key)
    refs = {audit.person_ref(n) for n in subject.numbers} if secret_key else set()
    campaigns = _campaigns(client, tenant)
    memberships = []
    from dialer.record.contacts import contact_lists
    from dialer.record.current import contact_record

    for contact in subject.contacts:
        cid = contact["id"]
        memberships.append({  # the record's memberships (docs/record.md); a contact's campaign is its import's
            "contact_id": cid,
            "lists": contact_lists(record if record is not None else contact_record(), tenant, cid),
            "campaigns": [c for c in campaigns if c == contact.get("campaign")],
        })
    people = []
    for number in subject.numbers:
        consents = [{k: (_iso(v) if isinstance(v, datetime) else v) for k, v in asdict(c).items()}
                    for c in facts.consents(tenant, number)]
        rels = [relationship_from_json(r) for r in client.lrange(person_key(tenant, number, "rel"), 0, -1)]
        optouts: dict[str, Any] = {}
        company = client.hget(company_dnc_key(tenant), number)
        if company:
            optouts["company"] = _optout_dict(company)
        for campaign in campaigns:
            entry = client.hget(campaign_dnc_key(tenant, campaign), number)
            if entry:
                optouts.setdefault("campaigns", {})[campaign] = _optout_dict(entry)
        uses = {_s(p): iso(datetime.fromtimestamp(float(s), UTC)) for p, s in
                client.zrange(consent_use_key(tenant, number), 0, -1, withscores=True)}
        people.append({
            "phone": number,
            "consents": consents,
            "consent_last_used": uses,
            "relationships": [{"kind": r.kind, "at": iso(r.at), "until": _iso(r.until)} for r in rels],
            "attempts": [{"at": iso(a.at), "campaign": a.campaign, "outcome": a.outcome, "call_id": a.call_id}
                         for a in facts.attempts(tenant, number)],
            "optouts": optouts,
            "optout_log": [f for _, f in _optout_log(client, tenant, {number})],
            "campaign_queues": _queue_entries(client, tenant, campaigns, number, subject.contact_ids),
        })
    errors = [{"import_id": i, **e} for i, _, e in _import_errors(client, tenant, numbers)]
    exports = []
    for path, meta in _exports(client, tenant).items():
        if os.path.exists(path):
            rows = sum(1 for hit, _ in _export_rows(path, numbers, set(subject.contact_ids)) if hit)
            if rows:
                exports.append({"path": path, "rows": rows, "kind": meta.get("kind"), "written_at": meta.get("at")})
    suppression = Suppression(client, secret_key) if secret_key else None
    result = {
        "tenant": tenant,
        "generated_at": iso(at),
        "phones": subject.numbers,
        "contact_ids": subject.contact_ids,
        "contacts": subject.contacts,
        "memberships": memberships,
        "people": people,
        "import_errors": errors,
        "exports": exports,
        "suppressed": [e for e in (suppression.entry(tenant, n) for n in subject.numbers) if e] if suppression else [],
        "audit": _all_mentions(audit, record, tenant, refs, set(subject.contact_ids)),
        "record_contacts": _record_contacts(record, tenant, subject.numbers),
    }
    if audit_request:
        audit.append(tenant, "access", actor, {
            "people": sorted(refs), "contact_ids": subject.contact_ids,
            "by": "contact_id" if contact_id else "phone"}, at)
    return result


def _queue_entries(client: redis.Redis, tenant: str, campaigns: list[str], number: str,
                   contact_ids: list[str]) -> list[dict[str, Any]]:
    """The number's entries in the campaigns' runtime queues (dialer/runtime/queues.py): what the engine holds
    to dial it (number, postal code, zones), its state, attempts, last step and why it left the queue. Also by the
    person's contact ids: a completed campaign no longer maps numbers to contacts (its loader's `phones` is gone)."""
    found = []
    for campaign in campaigns:
        queue = ContactQueue(client, tenant, campaign)
        hits = {h.contact_id: h for h in queue.find(e164=number)}
        for cid in contact_ids:
            for hit in queue.find(contact_id=cid):
                if hit.entry is None or hit.entry.contact.phone == number:
                    hits.setdefault(hit.contact_id, hit)
        for hit in hits.values():
            found.append({"campaign": campaign, "contact_id": hit.contact_id, "state": hit.state,
                          "data": hit.entry.contact.data() if hit.entry else None, "attempts": hit.attempts,
                          "last": hit.last, "final": hit.final})
    return found


def _optout_dict(raw: bytes | str) -> dict[str, Any]:
    optout = optout_from_json(raw)
    return {"at": iso(optout.at), "source": optout.source, "scope": optout.scope, "campaign": optout.campaign,
            "call_id": optout.call_id, "keyword": optout.keyword}


def access_csv(client: redis.Redis, tenant: str, **kwargs: Any) -> str:
    """access() as CSV: one row per value, columns section, item, field, value (formula-safe)."""
    from dialer.contacts.csvsafe import SafeWriter

    data = access(client, tenant, **kwargs)
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.row(["section", "item", "field", "value"])
    for section in ("contacts", "memberships", "people", "import_errors", "exports", "suppressed", "audit"):
        for n, item in enumerate(data[section]):
            for path, value in _flatten(item):
                writer.row([section, n + 1, path, value])
    return out.getvalue()


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        if not value:
            yield prefix, ""
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        if not value:
            yield prefix, ""
        for n, inner in enumerate(value):
            yield from _flatten(inner, f"{prefix}[{n}]")
    else:
        yield prefix, "" if value is None else str(value)


# --- rectification ------------------------------------------------------------------------------

def contact_for_phone(client: redis.Redis, tenant: str, phone: str, country: str | None = None) -> str:
    """The one contact holding this number, for a rectification asked by phone number. Several contacts may hold
    a number (a shared line): correcting all of them could change another person's record, so that is refused
    (code `ambiguous`, naming the contact ids to choose from)."""
    check_tenant(tenant)
    ids = contacts_for_phone(client, tenant, e164_of(phone, country))
    if not ids:
        raise PrivacyError("not_found", f"no contact holds this number for tenant {tenant}", "phone")
    if len(ids) > 1:
        raise PrivacyError("ambiguous", f"{len(ids)} contacts hold this number ({', '.join(ids)}): give the "
                           "contact id to correct", "phone")
    return ids[0]


def rectify(client: redis.Redis, tenant: str, contact_id: str, changes: dict[str, str | None], actor: str,
            at: datetime) -> dict[str, Any]:
    """Correct a contact's fields (GDPR Art. 16): RECTIFIABLE fields and kept columns (x.<name>); None or ""
    clears a field. Phone numbers are not rectified here (facts are kept per number): erase the wrong number
    and import the right one. Audited as kind `rectification` with the field names (not the values)."""
    check_tenant(tenant)
    current = None if ":" in contact_id else get_contact(client, tenant, contact_id)  # in the record
    if current is None:
        raise PrivacyError("not_found", f"no contact {contact_id} for tenant {tenant}", "contact_id")
    if not changes:
        raise PrivacyError("bad_request", "no field to change", "changes")
    sets: dict[str, str] = {}
    clears: list[str] = []
    for name, value in changes.items():
        if name not in RECTIFIABLE and not (name.startswith("x.") and name in current):
            hint = " (phone numbers: erase the wrong number and import the right one)" if "phone" in name else ""
            raise PrivacyError("bad_field", f"field {name!r} cannot be rectified; fields: "
                               f"{', '.join(RECTIFIABLE)} or an existing x.<column>{hint}", name)
        if value is None or str(value).strip() == "":
            clears.append(name)
            continue
        text = str(value).strip()
        if len(text) > 1000:
            raise PrivacyError("bad_value", f"{name}: at most 1000 characters", name)
        if name == "email" and not _EMAIL.match(text):
            raise PrivacyError("bad_value", "email: not an e-mail address", name)
        if name == "country":
            text = text.upper()
            if not re.fullmatch(r"[A-Z]{2}", text):
                raise PrivacyError("bad_value", "country: an ISO 3166-1 alpha-2 code such as FR", name)
        sets[name] = text
    from dialer.record.contacts import update_fields
    from dialer.record.current import contact_record

    # The record first (RecordUnavailable: nothing changed, nothing audited), then the audit entry.
    if update_fields(contact_record(), tenant, contact_id, sets, clears) is None:
        raise PrivacyError("not_found", f"no contact {contact_id} for tenant {tenant}", "contact_id")
    AuditLog(client).append_many(tenant, [AuditEvent("rectification", actor, {
        "contact_id": contact_id, "fields": sorted(changes)}, at)])
    return get_contact(client, tenant, contact_id) or {}


FIRST_PASS_WAIT = 20.0  # seconds the erasure's first pass waits for a busy record before failing (nothing erased)
SECOND_PASS_WAIT = 120.0  # seconds the erasure's second pass waits for a busy record (a publish holding SQLite's lock)

# --- erasure ------------------------------------------------------------------------------------

@dataclass
class ErasureReport:
    tenant: str
    people: list[str]  # keyed references (the numbers are gone)
    contact_ids: list[str]
    removed: dict[str, int]
    suppressed: int
    audit_seq: int
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase(client: redis.Redis, tenant: str, *, phone: str | None = None, contact_id: str | None = None,
          country: str | None = None, actor: str, at: datetime, secret_key: str | bytes,
          reason: str = "data subject request", record: Any = None) -> ErasureReport:
    """Erase everything we hold about the person (GDPR Art. 17) except one keyed-hash suppression entry.
    `record`: their contacts in the record's contact store go too (first; a record that cannot be read raises
    RecordUnavailable with nothing erased in Redis).

    Fails closed: without security.secret_key nothing is erased (PrivacyError code `no_secret_key`), since
    we could neither suppress the number nor reference the person in the audit trail. Idempotent: erasing
    again finds nothing more to remove and keeps the suppression entry."""
    try:
        suppression = Suppression(client, secret_key)
        suppression.require_key("erase personal data (the suppression entry is a keyed hash)")
    except SuppressionUnavailable as exc:
        raise PrivacyError("no_secret_key", f"refusing to erase: {exc}") from None
    try:  # a list made with another key would be silently broken by entries made with this one
        suppression.check_key(check_tenant(tenant))
    except SuppressionUnavailable as exc:
        raise PrivacyError("suppression_key_mismatch", f"refusing to erase: {exc}") from None
    subject = find_subject(client, tenant, phone, contact_id, country)
    if record is None:  # the person's contacts live in the record (docs/record.md): never leave them there
        from dialer.record.current import contact_record

        record = contact_record()
    audit = AuditLog(client, secret_key)
    numbers = set(subject.numbers)
    ids = set(subject.contact_ids)
    keys = Keys(tenant)
    campaigns, lists = _campaigns(client, tenant), _lists(client, tenant)
    removed: dict[str, int] = {}
    warnings: list[str] = []

    def count(name: str, n: int = 1) -> None:
        removed[name] = removed.get(name, 0) + n

    # Export files first (outside Redis): rows naming the person are removed, the file rewritten atomically.
    for path in _exports(client, tenant):
        if not os.path.exists(path):
            continue
        try:
            rows = list(_export_rows(path, numbers, ids))
            hits = sum(1 for hit, _ in rows if hit)
            if hits:
                tmp = f"{path}.erasing"
                from dialer.private_files import create_private

                with create_private(tmp, "w", newline="", encoding="utf-8-sig") as out:  # 0600, as exported
                    writer = csv.writer(out)
                    for hit, row in rows:
                        if not hit:
                            writer.writerow(row)
                os.replace(tmp, path)
                count("export_rows", hits)
        except OSError as exc:
            warnings.append(f"export {path} could not be rewritten ({exc.strerror}): remove the person by hand")

    # The record's contact store first: a record that cannot be read stops the erasure here (RecordUnavailable),
    # before anything in Redis changed, rather than leave the person's contacts there unsaid.
    # Staged rows of running imports holding the number go in the same transactions (and again after the
    # suppression entry is written, below). These are write transactions: on SQLite one waits for an import's
    # publish holding the write lock (FIRST_PASS_WAIT), where the read it replaces did not.
    in_record, problem = erase_numbers(record, tenant, subject.numbers, wait=FIRST_PASS_WAIT)
    if problem:
        if in_record:  # numbers erased before the record failed stay erased: count their lists down now (a
            pipe = client.pipeline(transaction=True)  # second erasure finds nothing there to count)
            for list_id in [list_id for lists in in_record.values() for list_id in lists]:
                pipe.hincrby(keys.list(list_id), "contacts", -1)
            pipe.execute()
        raise RecordUnavailable(problem)
    left_lists = [list_id for lists in in_record.values() for list_id in lists]  # the lists' counters go down
    if in_record:
        count("record_contacts", len(in_record))
    optout_log = _optout_log(client, tenant, numbers)
    errors = _import_errors(client, tenant, numbers)
    pipe = client.pipeline(transaction=True)
    queued: list[int] = []  # positions of the campaign queue erasures in the transaction
    for number in subject.numbers:
        evidence = []
        company = client.hget(company_dnc_key(tenant), number)
        if company:
            evidence.append(_optout_dict(company))
            pipe.hdel(company_dnc_key(tenant), number)
            count("optouts")
        for campaign in campaigns:
            entry = client.hget(campaign_dnc_key(tenant, campaign), number)
            if entry:
                evidence.append(_optout_dict(entry))
                pipe.hdel(campaign_dnc_key(tenant, campaign), number)
                count("optouts")
            if client.sismember(keys.campaign_phones(campaign), number):
                pipe.srem(keys.campaign_phones(campaign), number)
            hits = ContactQueue(client, tenant, campaign).find(e164=number)  # the runtime's queue
            if hits:
                if not any(h.state == "inflight" for h in hits):  # in flight: erased by the next run
                    count("campaign_queue_entries", len(hits))
                queue_erase(client, pipe, tenant, campaign, number, at.timestamp())
                queued.append(len(pipe.command_stack) - 1)
        for list_id in lists:
            if client.sismember(keys.list_phones(list_id), number):
                pipe.srem(keys.list_phones(list_id), number)
        suppression.queue_add(pipe, tenant, number, at, reason="erased" + ("_optout" if evidence else ""),
                              actor=actor, optouts=evidence)
        for call_id in client.hkeys(person_key(tenant, number, "att")):
            pipe.delete(call_index_key(tenant, _s(call_id)))
        for part in PERSON_PARTS:
            if client.exists(person_key(tenant, number, part)):
                count({"consent": "consent_records", "rel": "relationships", "att": "attempt_records",
                       "consent_used": "consent_uses"}[part],
                      int(client.llen(person_key(tenant, number, part)) if part in ("consent", "rel")
                          else client.hlen(person_key(tenant, number, part)) if part == "att"
                          else client.zcard(person_key(tenant, number, part))))
            pipe.delete(person_key(tenant, number, part))
        # The version keeps moving (a decision read before this transaction cannot reserve: the gate re-reads
        # and meets the suppression entry), then the key, which names the number, goes away.
        webhooks = webhook_queue.queue_erasure(client, pipe, tenant, number)
        if webhooks:
            count("webhook_deliveries", webhooks)
        ver = person_key(tenant, number, "ver")
        pipe.incr(ver)
        pipe.expire(ver, ERASED_VERSION_TTL)
        pipe.delete(keys.phone(number))
    for entry_id, _ in optout_log:
        pipe.xdel(optout_log_key(tenant), entry_id)
    if optout_log:
        count("optout_log_entries", len(optout_log))
    for import_id, raw, _ in errors:
        pipe.lrem(Keys(tenant, import_id).errors, 0, raw)
    if errors:
        count("import_error_entries", len(errors))
    erase_contact = Scripts(client).erase  # the contacts module's own erasure (contact, indexes, list counter)
    for contact in subject.contacts:
        cid = contact["id"]
        erase_contact(args=[keys.p, cid], client=pipe)
        count("contacts")
        for campaign in campaigns:  # contacts imported before they recorded their campaign
            if client.sismember(keys.campaign_contacts(campaign), cid):
                pipe.srem(keys.campaign_contacts(campaign), cid)
    for list_id in left_lists:
        pipe.hincrby(keys.list(list_id), "contacts", -1)
    people = sorted(audit.person_ref(n) for n in subject.numbers)
    audit.queue(pipe, tenant, [AuditEvent("erasure", actor, {
        "people": people, "contact_ids": subject.contact_ids, "reason": reason, "removed": removed,
        "by": "contact_id" if contact_id else "phone"}, at)])
    replies = pipe.execute()
    seq = int(replies[-1][0]) if replies and isinstance(replies[-1], list) and replies[-1] else 0
    states = [int(replies[i]) for i in queued]
    if states.count(2):
        warnings.append(f"{states.count(2)} call(s) to this person were in progress in a campaign: the gate denies "
                        "every new call, but run the erasure again once they ended to remove the queue entry")
    # Once more, now that the suppression entry is there (issue 18: an erasure during an import): see erase_numbers.
    late, problem = erase_numbers(record, tenant, subject.numbers, wait=SECOND_PASS_WAIT)
    if problem:
        warnings.append(f"the record could not be checked again after the erasure ({problem}): an import "
                        "committed meanwhile may hold the number; the gate denies it anyway (ERASED_SUPPRESSED). "
                        "Run the erasure again once the record is back")
    # And the import reports once more: a commit that found the number a duplicate before the suppression entry
    # (its publish ran before the first pass) may have written that entry since the scan above; one writing after
    # the entry leaves it out (dialer.contacts.commit). Its duplicates wait in the import's `duplicates` list, then
    # move to the report in one step: both lists are read, and cleaned, together.
    late_errors = _import_errors(client, tenant, numbers, staged=True)
    if late_errors:
        pipe = client.pipeline(transaction=True)
        for import_id, raw, _ in late_errors:
            pipe.lrem(Keys(tenant, import_id).errors, 0, raw)
            pipe.lrem(Keys(tenant, import_id).duplicates, 0, raw)
        pipe.execute()
        removed["import_error_entries"] = removed.get("import_error_entries", 0) + len(late_errors)
    if late:
        removed["record_contacts"] = removed.get("record_contacts", 0) + len(late)
        pipe = client.pipeline(transaction=True)
        for list_id in [list_id for lists in late.values() for list_id in lists]:
            pipe.hincrby(keys.list(list_id), "contacts", -1)
        pipe.execute()
    return ErasureReport(tenant, people, subject.contact_ids, removed, len(subject.numbers), seq, warnings)
