"""Contacts in the record (issue 18): the store that grows to tens of millions of contacts per tenant, read a
window at a time into Redis (dialer.runtime.window) instead of held whole in Redis memory; `store_finals` keeps
what became of each contact that left a window (`campaign_finals`), so Redis forgets it.

A contact arrives as the import builds it (dialer.contacts.jobs: id, phone, phones, kept fields x.<name> ...):
`store_contacts` writes it in bulk (PostgreSQL: COPY into a staging table, then one INSERT ... ON CONFLICT DO
NOTHING, so a batch written twice inserts nothing the second time) with its list membership. `window_page` reads
the next contacts of a campaign (its lists' members and its own contacts) by keyset on the contact id: what the
gate and the Originate need, nothing more. `contacts_for_phone` and `erase_phone` serve data-subject requests.

The record holds personal data here (numbers, names): these tables are not append-only, an erasure deletes the
rows, and its evidence is the audit entry of the erasure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dialer.record.contacts_schema import COLUMNS, KEYS
from dialer.record.store import Record, RecordNotMigrated, RecordUnavailable, Tx
from dialer.runtime.loader import priority_of
from dialer.runtime.queues import QueuedContact

BATCH = 5000  # rows per record transaction when storing
# the staging tables keyed by (tenant, import_id, attempt, row_no): one staged contact's rows (import_phones last:
# drop_staged_holding finds the contacts there)
STAGED_WITH_ROWS = ("import_contacts", "import_consents", "import_phones")


def contact_row(tenant: str, contact: dict[str, Any]) -> tuple[Any, ...]:
    """One contacts row from a contact as the import builds it (every value a string, phones as compact JSON)."""
    phones = contact.get("phones")
    zones = contact.get("timezones") or ""
    row = {
        "tenant": tenant, "id": str(contact["id"]), "import_id": contact.get("import") or None,
        "campaign": contact.get("campaign") or None, "row_no": int(contact["row"]) if contact.get("row") else None,
        "phone": contact.get("phone") or None,
        "country": contact.get("country") or contact.get("phone_country") or None,
        "postal_code": contact.get("postal_code") or None, "state": contact.get("state") or None,
        "zones": ",".join(zones) if isinstance(zones, list) else zones, "priority": priority_of(contact),
        "data": json.dumps({**contact, "phones": json.loads(phones) if isinstance(phones, str) else phones or []},
                           separators=(",", ":"), ensure_ascii=False),
    }
    return tuple(row[c] for c in COLUMNS["contacts"])


def numbers_of(contact: dict[str, Any]) -> list[str]:
    phones = contact.get("phones")
    listed = json.loads(phones) if isinstance(phones, str) else phones or []
    found = [contact.get("phone") or ""] + [str(p.get("e") or p.get("e164") or "") for p in listed]
    return [n for n in dict.fromkeys(found) if n]


def store_contacts(record: Record, tenant: str, list_id: str | None, contacts: Iterable[dict[str, Any]],
                   batch: int = BATCH) -> int:
    """Write contacts (and their membership of `list_id`) in transactions of `batch`; idempotent by contact id.
    Returns the number of contacts given."""
    total = 0
    rows: list[tuple[Any, ...]] = []
    members: list[tuple[str, str, str]] = []
    phones: set[tuple[str, str, str]] = set()

    def flush() -> None:
        with record.transaction() as tx:
            tx.insert_new("contacts", COLUMNS["contacts"], KEYS["contacts"], rows)
            tx.insert_new("list_members", COLUMNS["list_members"], KEYS["list_members"], members)
            tx.insert_new("contact_phones", COLUMNS["contact_phones"], KEYS["contact_phones"], sorted(phones))
        rows.clear()
        members.clear()
        phones.clear()

    for contact in contacts:
        row = contact_row(tenant, contact)
        rows.append(row)
        if list_id:
            members.append((tenant, list_id, row[1]))
        for number in numbers_of(contact):
            phones.add((tenant, number, row[1]))
        total += 1
        if len(rows) >= batch:
            flush()
    if rows:
        flush()
    return total


@dataclass(frozen=True)
class WindowContact(QueuedContact):
    """A contact of a window page; `duplicate_of`: the campaign's first contact (by id) with the same main number,
    when it is not that one (the campaign calls a number once)."""

    duplicate_of: str = ""


def _member_of(alias: str, lists: Sequence[str]) -> str:
    if not lists:
        return f"{alias}.campaign = %s"
    return (f"({alias}.campaign = %s OR EXISTS (SELECT 1 FROM list_members m WHERE m.tenant = {alias}.tenant AND "
            f"m.contact_id = {alias}.id AND m.list_id IN ({', '.join(['%s'] * len(lists))})))")


def window_page(record: Record, tenant: str, campaign: str, lists: Sequence[str], after: str,
                limit: int) -> list[WindowContact]:
    """The campaign's next `limit` contacts after the contact id `after` (""): its lists' members and the contacts
    imported into the campaign itself, in contact id order (a stable keyset: a page never repeats or skips one),
    without those that already left the campaign (campaign_finals). A contact whose main number an earlier contact
    of the campaign holds comes with `duplicate_of` set."""
    member = [campaign, *lists]
    rows = record.query(
        "SELECT c.id, c.phone, c.country, c.postal_code, c.state, c.zones, c.priority, "
        "(SELECT MIN(p.contact_id) FROM contact_phones p JOIN contacts o ON o.tenant = p.tenant AND "
        "o.id = p.contact_id WHERE p.tenant = c.tenant AND p.phone = c.phone AND p.contact_id < c.id AND "
        f"o.phone = p.phone AND {_member_of('o', lists)}) "
        f"FROM contacts c WHERE c.tenant = %s AND c.id > %s AND {_member_of('c', lists)} AND NOT EXISTS "
        "(SELECT 1 FROM campaign_finals f WHERE f.tenant = c.tenant AND f.campaign = %s AND f.contact_id = c.id) "
        "ORDER BY c.id LIMIT %s",
        (*member, tenant, after, *member, campaign, int(limit)))
    return [WindowContact(str(cid), phone or "", country, postal, state,
                          tuple(z for z in (zones or "").split(",") if z), int(priority or 0), str(dup or ""))
            for cid, phone, country, postal, state, zones, priority, dup in rows]


def store_finals(record: Record, tenant: str, campaign: str, finals: dict[str, dict[str, Any]]) -> int:
    """Contacts that left a campaign's window, with why (idempotent by contact: a final is written once)."""
    rows = [(tenant, campaign, cid, str(f.get("reason") or ""), str(f.get("detail") or ""), float(f.get("at") or 0),
             int(f.get("attempts") or 0), f.get("disposition") or None) for cid, f in sorted(finals.items())]
    with record.transaction() as tx:
        tx.insert_new("campaign_finals", COLUMNS["campaign_finals"], KEYS["campaign_finals"], rows)
    return len(rows)


def campaign_finals(record: Record, tenant: str, campaign: str, contact_id: str | None = None,
                    ) -> dict[str, dict[str, Any]]:
    """Every contact that left the campaign's window (or only `contact_id`), by id: {reason, detail, at, attempts,
    disposition}."""
    one = " AND contact_id = %s" if contact_id is not None else ""
    rows = record.query("SELECT contact_id, reason, detail, at, attempts, disposition FROM campaign_finals "
                        f"WHERE tenant = %s AND campaign = %s{one} ORDER BY contact_id",
                        (tenant, campaign, *([contact_id] if contact_id is not None else [])))
    return {str(cid): {"reason": reason, "detail": detail, "at": at, "attempts": int(attempts),
                       "disposition": disposition} for cid, reason, detail, at, attempts, disposition in rows}


def campaign_final(record: Record, tenant: str, campaign: str, contact_id: str) -> dict[str, Any] | None:
    """One contact's final in the campaign (moved from its window), or None."""
    return campaign_finals(record, tenant, campaign, contact_id).get(contact_id)


def iter_tenant_finals(record: Record, tenant: str, page: int = 5000) -> Iterator[dict[str, Any]]:
    """Every campaign final of the tenant (offboarding's export), a page at a time."""
    after = ("", "")
    while True:
        rows = record.query("SELECT campaign, contact_id, reason, detail, at, attempts, disposition "
                            "FROM campaign_finals WHERE tenant = %s AND "
                            "(campaign > %s OR (campaign = %s AND contact_id > %s)) ORDER BY campaign, contact_id "
                            "LIMIT %s", (tenant, after[0], after[0], after[1], page))
        if not rows:
            return
        for campaign, cid, reason, detail, at, attempts, disposition in rows:
            yield {"campaign": campaign, "contact_id": cid, "reason": reason, "detail": detail, "at": at,
                   "attempts": int(attempts), "disposition": disposition}
        after = (str(rows[-1][0]), str(rows[-1][1]))


def iter_tenant_contacts(record: Record, tenant: str, page: int = 5000) -> Iterator[dict[str, Any]]:
    """Every contact of the tenant with its lists (`lists`), in id order, a page at a time (memory bounded)."""
    after = ""
    while True:
        rows = record.query("SELECT id, data FROM contacts WHERE tenant = %s AND id > %s ORDER BY id LIMIT %s",
                            (tenant, after, page))
        if not rows:
            return
        ids = [str(r[0]) for r in rows]
        lists: dict[str, list[str]] = {}
        for cid, list_id in record.query(
                "SELECT contact_id, list_id FROM list_members WHERE tenant = %s AND contact_id >= %s AND "
                "contact_id <= %s ORDER BY list_id", (tenant, ids[0], ids[-1])):
            lists.setdefault(str(cid), []).append(str(list_id))
        for cid, data in rows:
            yield {**json.loads(data), "lists": lists.get(str(cid), [])}
        after = ids[-1]


def delete_tenant(record: Record, tenant: str) -> int:
    """Offboarding: every contact of the tenant, its memberships and numbers, in one transaction."""
    with record.transaction() as tx:
        tx.execute("DELETE FROM contact_phones WHERE tenant = %s", (tenant,))
        tx.execute("DELETE FROM campaign_finals WHERE tenant = %s", (tenant,))
        tx.execute("DELETE FROM list_members WHERE tenant = %s", (tenant,))
        for staged in ("import_consents", "import_phones", "import_contacts", "import_outcomes"):  # not committed
            tx.execute(f"DELETE FROM {staged} WHERE tenant = %s", (tenant,))
        return tx.execute("DELETE FROM contacts WHERE tenant = %s", (tenant,))


def get_contact(record: Record, tenant: str, contact_id: str) -> dict[str, Any] | None:
    rows = record.query("SELECT data FROM contacts WHERE tenant = %s AND id = %s", (tenant, contact_id))
    return json.loads(rows[0][0]) if rows else None


def contacts_for_phone(record: Record, tenant: str, e164: str) -> list[dict[str, Any]]:
    """Every contact holding this number as its main number or another one (access and erasure requests)."""
    rows = record.query("SELECT c.data FROM contact_phones p JOIN contacts c ON c.tenant = p.tenant AND "
                        "c.id = p.contact_id WHERE p.tenant = %s AND p.phone = %s ORDER BY c.id", (tenant, e164))
    return [json.loads(r[0]) for r in rows]


def lock_erasures(tx: Tx, tenant: str, wait: float | None = None) -> None:
    """An erasure's record transaction and an import's publish (dialer/contacts/publish.py) of one tenant take
    turns, so the erasure either deletes the staged rows before the publish reads them or finds the contacts it
    made (issue 18: an erasure during an import). SQLite: every write transaction already holds the database's
    write lock (BEGIN IMMEDIATE; its busy timeout bounds the wait). PostgreSQL: a transaction-scoped advisory lock
    on the tenant; each statement after it sees what the other transaction committed (READ COMMITTED).
    `wait` (seconds; PostgreSQL): give up after that long (lock_timeout: a LockNotAvailable, an OperationalError,
    so RecordUnavailable) instead of waiting as long as a whole list's publish runs; the erasure passes one (an
    API request must answer 503, not hang), the publish none (it waits for an erasure, which is short)."""
    if tx.dialect == "postgresql":
        if wait is not None:  # transaction-local: the pooled connection keeps its default afterwards
            tx.execute("SELECT set_config('lock_timeout', %s, true)", (f"{max(1, int(wait * 1000))}ms",))
        tx.execute("SELECT pg_advisory_xact_lock(1804, hashtext(%s))", (tenant,))


def staged_imports(tx: Tx, tenant: str) -> list[str]:
    """The imports of the tenant that have rows staged (a skip scan of import_phones' primary key: one probe per
    import, whatever the number of rows staged)."""
    rows = tx.query("WITH RECURSIVE ids(i) AS (SELECT MIN(import_id) FROM import_phones WHERE tenant = %s "
                    "UNION ALL SELECT (SELECT MIN(import_id) FROM import_phones WHERE tenant = %s AND "
                    "import_id > ids.i) FROM ids WHERE ids.i IS NOT NULL) SELECT i FROM ids WHERE i IS NOT NULL",
                    (tenant, tenant))
    return [str(r[0]) for r in rows]


def drop_staged_holding(tx: Tx, tenant: str, import_id: str, numbers: Sequence[str], attempt: str | None = None) -> int:
    """Delete the import's staged contacts (all attempts, or one) that hold one of these numbers, whole, with their
    numbers and consents: an erased number's staged row goes like its published contact would (erase_phone).
    Returns the staged contacts deleted."""
    if not numbers:
        return 0
    marks = ", ".join(["%s"] * len(numbers))
    which, params = "tenant = %s AND import_id = %s", [tenant, import_id]
    if attempt is not None:
        which, params = which + " AND attempt = %s", [*params, attempt]
    held = sorted(set(tx.query(f"SELECT attempt, row_no FROM import_phones WHERE {which} AND phone IN ({marks})",
                               (*params, *numbers))))
    for held_attempt, row_no in held:
        for table in STAGED_WITH_ROWS:
            tx.execute(f"DELETE FROM {table} WHERE tenant = %s AND import_id = %s AND attempt = %s AND row_no = %s",
                       (tenant, import_id, held_attempt, row_no))
    return len(held)


def erase_number(record: Record, tenant: str, e164: str, lock_wait: float | None = None) -> dict[str, list[str]]:
    """Delete every contact holding this number (with its list memberships and numbers) and every staged row of a
    running import holding it, in one transaction (taking turns with imports' publish: lock_erasures, waiting at
    most `lock_wait` seconds on PostgreSQL, the record's timeout when None). Returns the contacts deleted, each
    with the lists it was on."""
    with record.transaction() as tx:
        lock_erasures(tx, tenant, record.timeout if lock_wait is None else lock_wait)
        ids = [str(r[0]) for r in tx.query(
            "SELECT c.id FROM contact_phones p JOIN contacts c ON c.tenant = p.tenant AND c.id = p.contact_id "
            "WHERE p.tenant = %s AND p.phone = %s ORDER BY c.id", (tenant, e164))]
        found: dict[str, list[str]] = {cid: [] for cid in ids}
        if ids:
            marks = ", ".join(["%s"] * len(ids))
            for cid, list_id in tx.query(f"SELECT contact_id, list_id FROM list_members WHERE tenant = %s AND "
                                         f"contact_id IN ({marks}) ORDER BY list_id", (tenant, *ids)):
                found[str(cid)].append(str(list_id))
            tx.execute(f"DELETE FROM list_members WHERE tenant = %s AND contact_id IN ({marks})", (tenant, *ids))
            tx.execute(f"DELETE FROM contact_phones WHERE tenant = %s AND contact_id IN ({marks})", (tenant, *ids))
            tx.execute(f"DELETE FROM contacts WHERE tenant = %s AND id IN ({marks})", (tenant, *ids))
        for import_id in staged_imports(tx, tenant):
            drop_staged_holding(tx, tenant, import_id, [e164])
        # and the consents a commit has yet to write after it deleted the staged rows (it skips an erased number's
        # anyway: this is about the number left in the record)
        tx.execute("DELETE FROM import_consents WHERE tenant = %s AND phone = %s", (tenant, e164))
    return found


def erase_numbers(record: Record | None, tenant: str, numbers: Sequence[str],
                  wait: float = 0.0) -> tuple[dict[str, list[str]], str]:
    """An erasure's pass over the record (erase_number for each number): the contacts deleted, each with its lists,
    and "" (or why the record could not be used: nothing raised). `wait` > 0: a record that is busy or down is
    tried again for that long first. With wait 0 RecordUnavailable is raised (the first pass: nothing is erased
    in Redis then). A record never set up holds nothing.

    dialer.privacy.erase runs it before its Redis transaction and again after it, once the suppression entry is
    there (issue 18: an erasure during an import). An import's publish takes turns with these transactions
    (lock_erasures): one that ran since the first pass published the number, and its contacts go now; one still to
    come finds no staged row holding it, since a chunk staged after the entry reads it, and one staging meanwhile
    sees the list's version move at its next batch and deletes its rows (dialer/contacts/staging.py)."""
    if record is None:
        return {}, ""
    deadline = time.monotonic() + wait
    # Across tries: a number erased before a later one failed is done (its transaction committed); erasing it
    # again would find nothing, and its contacts' lists would never be counted down.
    found: dict[str, list[str]] = {}
    left = list(numbers)
    while True:
        try:
            while left:
                lock_wait = record.timeout if wait <= 0 else max(0.1, min(record.timeout,
                                                                          deadline - time.monotonic()))
                found.update(erase_number(record, tenant, left[0], lock_wait))
                left.pop(0)
            return found, ""
        except RecordNotMigrated:  # no record (or no contact store) was ever set up
            return {}, ""
        except RecordUnavailable as exc:
            if wait <= 0:
                raise
            if time.monotonic() >= deadline:
                return found, str(exc)
            time.sleep(0.5)


def erase_phone(record: Record, tenant: str, e164: str) -> list[str]:
    """Delete every contact holding this number and its list memberships (and staged rows holding it: erase_number),
    in one transaction. Returns the ids."""
    return sorted(erase_number(record, tenant, e164))


# --- the readers (issue 18: contacts live in the record; the import's commit is dialer/contacts/publish.py) -----

def _campaign_members(tenant: str, after: str, campaign: str | None, lists: Sequence[str]) -> tuple[str, list[Any]]:
    """The WHERE clause (over `contacts c`) of a campaign's contacts after the id `after`: its own contacts and its
    lists' members; with its parameters."""
    in_lists, params = "", [tenant, after, campaign or ""]
    if lists:
        in_lists = (" OR EXISTS (SELECT 1 FROM list_members m WHERE m.tenant = c.tenant AND "
                    f"m.contact_id = c.id AND m.list_id IN ({', '.join(['%s'] * len(lists))}))")
        params += list(lists)
    return f"c.tenant = %s AND c.id > %s AND (c.campaign = %s{in_lists})", params


def member_ids(record: Record, tenant: str, *, list_id: str | None = None, campaign: str | None = None,
               lists: Sequence[str] = (), page: int = 5000) -> Iterator[str]:
    """Contact ids of a list, or of a campaign (its lists' members and its own contacts), in id order, a page at
    a time (memory bounded)."""
    after = ""
    while True:
        if list_id is not None:
            rows = record.query("SELECT contact_id FROM list_members WHERE tenant = %s AND list_id = %s AND "
                                "contact_id > %s ORDER BY contact_id LIMIT %s", (tenant, list_id, after, page))
        else:
            where, params = _campaign_members(tenant, after, campaign, lists)
            rows = record.query(f"SELECT id FROM contacts c WHERE {where} ORDER BY c.id LIMIT %s", (*params, page))
        if not rows:
            return
        yield from (str(r[0]) for r in rows)
        after = str(rows[-1][0])


def iter_members(record: Record, tenant: str, *, list_id: str | None = None, campaign: str | None = None,
                 lists: Sequence[str] = (), page: int = 2000) -> Iterator[dict[str, Any]]:
    """The contacts (`data`, as the import built them) of a list or a campaign, in id order, a page at a time."""
    after = ""
    while True:
        if list_id is not None:
            rows = record.query("SELECT c.id, c.data FROM list_members m JOIN contacts c ON c.tenant = m.tenant AND "
                                "c.id = m.contact_id WHERE m.tenant = %s AND m.list_id = %s AND m.contact_id > %s "
                                "ORDER BY m.contact_id LIMIT %s", (tenant, list_id, after, page))
        else:
            where, params = _campaign_members(tenant, after, campaign, lists)
            rows = record.query(f"SELECT c.id, c.data FROM contacts c WHERE {where} ORDER BY c.id LIMIT %s",
                                (*params, page))
        if not rows:
            return
        for _, data in rows:
            yield json.loads(data)
        after = str(rows[-1][0])


def list_counts(record: Record, tenant: str) -> dict[str, int]:
    """Members per list of the tenant."""
    return {str(k): int(n) for k, n in record.query(
        "SELECT list_id, COUNT(*) FROM list_members WHERE tenant = %s GROUP BY list_id", (tenant,))}


def campaign_count(record: Record, tenant: str, campaign: str, lists: Sequence[str] = ()) -> int:
    """Contacts of a campaign: its lists' members and its own contacts, each once."""
    in_lists, params = "", [tenant, campaign]
    if lists:
        in_lists = (" OR EXISTS (SELECT 1 FROM list_members m WHERE m.tenant = c.tenant AND m.contact_id = c.id "
                    f"AND m.list_id IN ({', '.join(['%s'] * len(lists))}))")
        params += list(lists)
    return int(record.query(f"SELECT COUNT(*) FROM contacts c WHERE c.tenant = %s AND (c.campaign = %s{in_lists})",
                            params)[0][0])


def tenant_count(record: Record, tenant: str) -> int:
    """Contacts the tenant keeps (the contacts-stored gauge)."""
    return int(record.query("SELECT COUNT(*) FROM contacts WHERE tenant = %s", (tenant,))[0][0])


def contact_ids_for_phone(record: Record, tenant: str, e164: str) -> list[str]:
    return [str(r[0]) for r in record.query(
        "SELECT contact_id FROM contact_phones WHERE tenant = %s AND phone = %s ORDER BY contact_id", (tenant, e164))]


def contact_lists(record: Record, tenant: str, contact_id: str) -> list[str]:
    return [str(r[0]) for r in record.query(
        "SELECT list_id FROM list_members WHERE tenant = %s AND contact_id = %s ORDER BY list_id",
        (tenant, contact_id))]


def update_fields(record: Record, tenant: str, contact_id: str, sets: dict[str, str],
                  clears: Sequence[str]) -> dict[str, Any] | None:
    """Rectification: change fields of a contact's `data` (and the window columns that mirror them) in one
    transaction. None when the tenant has no such contact."""
    with record.transaction() as tx:
        rows = tx.query("SELECT data FROM contacts WHERE tenant = %s AND id = %s", (tenant, contact_id))
        if not rows:
            return None
        data = json.loads(rows[0][0])
        for name in clears:
            data.pop(name, None)
        data.update(sets)
        mirrored = {"postal_code": data.get("postal_code") or None, "state": data.get("state") or None,
                    "country": data.get("country") or data.get("phone_country") or None}
        tx.execute("UPDATE contacts SET data = %s, postal_code = %s, state = %s, country = %s "
                   "WHERE tenant = %s AND id = %s",
                   (json.dumps(data, separators=(",", ":"), ensure_ascii=False), mirrored["postal_code"],
                    mirrored["state"], mirrored["country"], tenant, contact_id))
        return data
