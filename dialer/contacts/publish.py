"""The import's publish step (issue 18): its staged rows become contacts, in one short record transaction.

The workers staged the import's valid rows in the record (dialer/contacts/staging.py: `import_contacts`,
`import_phones`, invisible to readers). After the import's commit point (dialer.contacts.commit) `publish` runs one
transaction of a few set-based statements, whatever the list's size:

  1. the rows of chunk attempts that were not published (a chunk staged twice after a worker died) are deleted;
  2. dedupe, on the staged numbers (the index on import_phones (tenant, import_id, phone, row_no), and
     contact_phones' primary key for the list's and the campaign's numbers): a number kept by an earlier row of
     the file is `duplicate_in_file` (first_row: the lowest row holding it); one a contact of the list already
     holds, `duplicate_in_list`; one a contact imported into the campaign already holds, `duplicate_in_campaign`;
  3. the duplicates' report entries and counts are read; contacts left without a number are dropped (duplicate
     rows), and the few that keep some numbers only are narrowed (their first kept number becomes the main one);
  4. INSERT ... SELECT into contacts, list_members and contact_phones; the outcome is written (import_outcomes).

The staged rows are deleted after it (forget_staged: a short transaction per chunk), once Redis has the outcome.

A crash or a record outage before the transaction commits leaves nothing visible; once it committed the whole list
is there. Concurrent imports into one list commit one after the other (the list's commit lock in Redis,
dialer.contacts.commit), so the second one's dedupe sees the first one's contacts. The outcome for Redis (the
summary's counters, the duplicates' report entries, the `published` mark) is written after the record's commit, in
one script, once; a retry after a crash between the two finds the outcome in import_outcomes and reports the same.

On SQLite the transaction holds the database's write lock for these statements only (docs/record.md).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from dialer.contacts.limits import ERRORS_KEPT
from dialer.contacts.store import Keys
from dialer.record.contacts import contact_row, lock_erasures
from dialer.record.contacts_schema import COLUMNS
from dialer.record.store import Record, Tx

NARROW_PAGE = 500  # contacts read per statement when some of their numbers are duplicates


@dataclass
class Outcome:
    contacts: int = 0
    duplicate_rows: int = 0
    duplicate_phones: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # the first ERRORS_KEPT report entries, in order

    def to_json(self) -> str:
        return json.dumps({"contacts": self.contacts, "duplicate_rows": self.duplicate_rows,
                           "duplicate_phones": self.duplicate_phones, "by_reason": dict(self.by_reason),
                           "duplicates": self.duplicates})

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        doc = json.loads(text)
        return cls(int(doc["contacts"]), int(doc["duplicate_rows"]), int(doc["duplicate_phones"]),
                   Counter(doc["by_reason"]), list(doc["duplicates"]))


def _narrow(contact: dict[str, Any], dropped: set[str]) -> bool:
    """Keep only the numbers not dropped (the first kept becomes the main one); False when none is left."""
    phones = [p for p in contact.get("phones") or [] if p["e"] not in dropped]
    if not phones:
        return False
    main = phones[0]
    contact.update(phones=phones, phone=main["e"], line_type=main["t"], timezones=main["z"],
                   phone_country=main["c"], phone_subdivision=main["s"])
    return True


def publish(record: Record, tenant: str, import_id: str, losers: Sequence[str], list_id: str, campaign: str,
            beat: Callable[[], Any] = lambda: None) -> Outcome:
    """Make the import's staged rows contacts of the list, in one record transaction, leaving out (deleting) the
    rows of the chunk attempts `losers` (started, but not the attempt their chunk's `done` entry names); returns
    what happened (nothing is written to Redis here). Run again after it committed, it returns the same outcome
    and writes nothing."""
    with record.transaction() as tx:
        lock_erasures(tx, tenant)  # an erasure meanwhile deletes the rows before this reads them, or after it
        stored = tx.query("SELECT outcome FROM import_outcomes WHERE tenant = %s AND import_id = %s",
                          (tenant, import_id))
        if stored:
            return Outcome.from_json(stored[0][0])
        outcome = _publish(tx, tenant, import_id, losers, list_id, campaign, beat)
        tx.execute("INSERT INTO import_outcomes (tenant, import_id, outcome) VALUES (%s, %s, %s)",
                   (tenant, import_id, outcome.to_json()))
    return outcome


def forget_staged(record: Record, tenant: str, import_id: str, attempts: Sequence[str]) -> None:
    """After the commit, once Redis holds the outcome (the `published` mark): delete the import's staged rows, one
    short transaction per chunk attempt (on SQLite each holds the write lock briefly: other writers get their
    turn between them), then the record's copy of the outcome. Nothing reads these rows any more: a retry of the
    publish finds the outcome and returns it; a retry of this deletes what is left."""
    for attempt in attempts:
        with record.transaction() as tx:
            for table in ("import_phones", "import_contacts"):
                tx.execute(f"DELETE FROM {table} WHERE tenant = %s AND import_id = %s AND attempt = %s",
                           (tenant, import_id, attempt))
    with record.transaction() as tx:
        for table in ("import_phones", "import_contacts", "import_outcomes"):  # and anything a straggler wrote
            tx.execute(f"DELETE FROM {table} WHERE tenant = %s AND import_id = %s", (tenant, import_id))


def _publish(tx: Tx, tenant: str, import_id: str, losers: Sequence[str], list_id: str, campaign: str,
             beat: Callable[[], Any]) -> Outcome:
    mine = "tenant = %s AND import_id = %s"
    me = (tenant, import_id)
    outcome = Outcome()
    # 1. rows of attempts nobody publishes (a chunk staged again after its worker was thought dead)
    for attempt in losers:
        for table in ("import_phones", "import_contacts"):
            tx.execute(f"DELETE FROM {table} WHERE {mine} AND attempt = %s", (*me, attempt))
    if tx.dialect == "postgresql":
        # the staging table's statistics predate these rows: without fresh ones the planner may take a
        # million staged numbers for a handful and pick nested loops over them (the columns the dedupe reads)
        tx.execute("ANALYZE import_phones (tenant, import_id, attempt, row_no, phone, reason)")
        tx.execute("ANALYZE import_contacts (tenant, import_id, attempt, row_no)")
    beat()
    # 2. dedupe: each number's first row in the file, then the list's and the campaign's numbers
    tx.execute("UPDATE import_phones AS s SET reason = 'duplicate_in_file', first_row = f.first_row FROM "
               f"(SELECT phone, MIN(row_no) AS first_row FROM import_phones WHERE {mine} GROUP BY phone "
               "HAVING COUNT(*) > 1) AS f "
               "WHERE s.tenant = %s AND s.import_id = %s AND s.phone = f.phone AND s.row_no > f.first_row",
               (*me, *me))
    held = ("UPDATE import_phones AS s SET reason = %s, first_row = s.row_no "
            "WHERE s.tenant = %s AND s.import_id = %s AND s.reason IS NULL AND EXISTS "
            "(SELECT 1 FROM contact_phones p JOIN {join} WHERE p.tenant = s.tenant AND p.phone = s.phone AND {cond})")
    fresh = False
    if _others_hold(tx, tenant, list_id=list_id):
        fresh = _analyze_held(tx, fresh)
        tx.execute(held.format(join="list_members m ON m.tenant = p.tenant AND m.contact_id = p.contact_id",
                               cond="m.list_id = %s"), ("duplicate_in_list", *me, list_id))
    if campaign and _others_hold(tx, tenant, campaign=campaign):
        fresh = _analyze_held(tx, fresh)
        tx.execute(held.format(join="contacts c ON c.tenant = p.tenant AND c.id = p.contact_id",
                               cond="c.campaign = %s"), ("duplicate_in_campaign", *me, campaign))
    beat()
    # 3. the duplicates: counts, the report's first entries (row order, then the row's number order), the rows
    #    left without a number (dropped) and those left with some (narrowed)
    for reason, count in tx.query(f"SELECT reason, COUNT(*) FROM import_phones WHERE {mine} AND reason IS NOT NULL "
                                  "GROUP BY reason", me):
        outcome.by_reason[str(reason)] = int(count)
    outcome.duplicate_phones = sum(outcome.by_reason.values())
    if outcome.duplicate_phones:
        if tx.dialect == "postgresql":
            # statistics taken before the marking say "no duplicate": the planner would then walk the marked rows
            # once per staged contact below (a 20,000-row import with 10,000 duplicates took minutes)
            tx.execute("ANALYZE import_phones (tenant, import_id, attempt, row_no, phone, reason)")
        rows = tx.query("SELECT p.row_no, c.line, p.col, p.phone, p.reason, p.first_row FROM import_phones p "
                        "JOIN import_contacts c ON c.tenant = p.tenant AND c.import_id = p.import_id AND "
                        "c.attempt = p.attempt AND c.row_no = p.row_no "
                        "WHERE p.tenant = %s AND p.import_id = %s AND p.reason IS NOT NULL "
                        "ORDER BY p.row_no, p.pos LIMIT %s", (*me, ERRORS_KEPT))
        outcome.duplicates = [{"row": int(row), "line": int(line), "column": col, "value": phone, "reason": reason,
                               "first_row": int(first), "severity": "duplicate"}
                              for row, line, col, phone, reason, first in rows]
        dropped = ("SELECT row_no FROM import_phones WHERE tenant = %s AND import_id = %s AND reason IS NOT NULL")
        outcome.duplicate_rows = tx.execute(
            f"DELETE FROM import_contacts WHERE {mine} AND row_no IN ({dropped}) AND NOT EXISTS "
            "(SELECT 1 FROM import_phones k WHERE k.tenant = import_contacts.tenant AND "
            "k.import_id = import_contacts.import_id AND k.attempt = import_contacts.attempt AND "
            "k.row_no = import_contacts.row_no AND k.reason IS NULL)", (*me, *me))
        _narrow_partial(tx, tenant, import_id, dropped)
    beat()
    # 4. the contacts, their list membership and their numbers; then the staging rows go
    cols = ", ".join(COLUMNS["contacts"])
    # (in key order: each index then grows at its right edge instead of at random pages)
    outcome.contacts = tx.execute(f"INSERT INTO contacts ({cols}) SELECT {cols} FROM import_contacts WHERE {mine} "
                                  "ORDER BY id", me)
    tx.execute("INSERT INTO list_members (tenant, list_id, contact_id) "
               f"SELECT tenant, %s, id FROM import_contacts WHERE {mine} ORDER BY id", (list_id, *me))
    # (SQLite: in the staging table's order; sorting them first costs it more than it saves)
    order = " ORDER BY phone, contact_id" if tx.dialect == "postgresql" else ""
    tx.execute("INSERT INTO contact_phones (tenant, phone, contact_id) "
               f"SELECT tenant, phone, contact_id FROM import_phones WHERE {mine} AND reason IS NULL{order}", me)
    if tx.dialect == "sqlite":
        # SQLite has no statistics until ANALYZE: without them it joined list_members to contact_phones through
        # the primary key's tenant column alone (a list's 30,000 numbers counted in 172 s instead of 0.04 s).
        # A sampled ANALYZE (400 rows an index) takes milliseconds whatever the tables' size.
        tx.execute("PRAGMA analysis_limit = 400")
        for table in ("contacts", "list_members", "contact_phones"):
            tx.execute(f"ANALYZE {table}")
    return outcome


def _narrow_partial(tx: Tx, tenant: str, import_id: str, dropped_rows: str) -> None:
    """Contacts that keep some of their numbers: drop the others from their staged row (few: a contact with several
    numbers, some of them duplicates)."""
    me = (tenant, import_id)
    rows = tx.query(f"SELECT c.row_no, c.data FROM import_contacts c WHERE c.tenant = %s AND c.import_id = %s AND "
                    f"c.row_no IN ({dropped_rows}) ORDER BY c.row_no", (*me, *me))
    for start in range(0, len(rows), NARROW_PAGE):
        page = rows[start:start + NARROW_PAGE]
        marks = ", ".join(["%s"] * len(page))
        gone: dict[int, set[str]] = {}
        for row_no, phone in tx.query(f"SELECT row_no, phone FROM import_phones WHERE tenant = %s AND "
                                      f"import_id = %s AND reason IS NOT NULL AND row_no IN ({marks})",
                                      (*me, *[r[0] for r in page])):
            gone.setdefault(int(row_no), set()).add(str(phone))
        updates = []
        for row_no, data in page:
            contact = json.loads(data)
            _narrow(contact, gone.get(int(row_no), set()))
            row = dict(zip(COLUMNS["contacts"], contact_row(tenant, contact), strict=True))
            updates.append((row["phone"], row["country"], row["zones"], row["data"], tenant, import_id, int(row_no)))
        tx.executemany("UPDATE import_contacts SET phone = %s, country = %s, zones = %s, data = %s "
                       "WHERE tenant = %s AND import_id = %s AND row_no = %s", updates)


def _analyze_held(tx: Tx, done: bool) -> bool:
    """PostgreSQL, once per publish: fresh statistics of the tables the list's and campaign's numbers are read from.
    An import that just filled them (a previous import's commit, before autovacuum saw it) leaves them looking
    empty, and the planner then probes them once per staged number instead of joining them once (sampled: a
    fraction of a second whatever their size)."""
    if tx.dialect == "postgresql" and not done:
        for table in ("contact_phones", "list_members", "contacts (tenant, id, campaign)"):
            tx.execute(f"ANALYZE {table}")
    return True


def _others_hold(tx: Tx, tenant: str, *, list_id: str | None = None, campaign: str | None = None) -> bool:
    """Whether the list (or the campaign) has any contact yet: when it has none (a new list), no number can be a
    duplicate of it and that statement is skipped."""
    if list_id:
        return bool(tx.query("SELECT 1 FROM list_members WHERE tenant = %s AND list_id = %s LIMIT 1",
                             (tenant, list_id)))
    return bool(tx.query("SELECT 1 FROM contacts WHERE tenant = %s AND campaign = %s LIMIT 1", (tenant, campaign)))


# KEYS: import status, counters, duplicates list. ARGV: error report cap, total duplicates, counts (JSON object),
#       duplicates by reason (JSON object), then the first report entries (JSON, at most the cap).
# After the record's commit, once (the `published` mark): the summary's counters and the duplicates' report
# entries, within what is left of the report's cap (the rest counted by reason as unlisted).
_RECORD_OUTCOME = """
if redis.call('HGET', KEYS[1], 'published') then return 0 end
local cap, total = tonumber(ARGV[1]), tonumber(ARGV[2])
local listed = tonumber(redis.call('HGET', KEYS[2], 'errors_listed') or '0')
local room = math.max(0, cap - listed)
for name, value in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[2], name, value) end
redis.call('DEL', KEYS[3])
local kept_by = {}
for i = 5, math.min(#ARGV, 4 + room) do
  redis.call('RPUSH', KEYS[3], ARGV[i])
  local reason = cjson.decode(ARGV[i]).reason
  kept_by[reason] = (kept_by[reason] or 0) + 1
end
for reason, n in pairs(cjson.decode(ARGV[4])) do
  local unlisted = n - (kept_by[reason] or 0)
  if unlisted > 0 then redis.call('HSET', KEYS[2], 'unlisted_dup:' .. reason, unlisted) end
end
redis.call('HSET', KEYS[2], 'errors_listed', listed + total)
redis.call('HSET', KEYS[1], 'published', '1')
return 1
"""


def record_outcome(client: redis.Redis, keys: Keys, outcome: Outcome) -> bool:
    """After the record's commit: the summary's counters and the duplicates' report entries, with the
    `published` mark, in one atomic step, once (a second call finds the mark and writes nothing)."""
    counts: dict[str, int] = {"contacts": outcome.contacts, "duplicate_rows": outcome.duplicate_rows,
                              "duplicate_phones": outcome.duplicate_phones}
    counts.update({f"dup:{k}": v for k, v in outcome.by_reason.items()})
    entries = [json.dumps(d) for d in outcome.duplicates[:ERRORS_KEPT]]
    return bool(client.eval(_RECORD_OUTCOME, 3, keys.status, keys.counters, keys.duplicates, ERRORS_KEPT,
                            outcome.duplicate_phones, json.dumps(counts), json.dumps(dict(outcome.by_reason)),
                            *entries))
