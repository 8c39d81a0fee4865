"""The import's publish step (issue 18): staged contacts go into the record, in one transaction.

After the import's commit point (dialer.contacts.jobs.Importer.commit) the staged rows are read back from Redis's
staging lists (one item per contact: id, row, line, numbers and the contact as JSON), deduplicated and written
into the record's contact store (dialer.record.contacts: `contacts`,
`list_members`, `contact_phones`) in **one record transaction**: a crash or a record outage before it commits
leaves nothing visible, and once it committed the whole list is there. The outcome for Redis (the counters of the
summary, the duplicates' error report entries, the `published` mark) is written after the record's commit, in one
MULTI, and only once.

A retry (the watchdog, `dialer worker` at start, a status poller) runs the same step again: the rows it inserts
are skipped when stored already, and the dedupe leaves out the import's own rows, so it finds the same
duplicates as the first run (nothing twice, nothing counted twice).

Dedupe, as before the record: a number kept by an earlier row of the file (`seen`: the lowest row per number)
is `duplicate_in_file`; one a contact of the list already holds, `duplicate_in_list`; one a contact imported into
the campaign already holds, `duplicate_in_campaign`. A row left without a number is a duplicate row; a row that
keeps some numbers keeps only those.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from dialer.contacts.limits import ERRORS_KEPT
from dialer.contacts.store import Keys, _s
from dialer.record.contacts import insert_contacts, numbers_taken, others_hold
from dialer.record.store import Record

PAGE = 2000  # staged rows per page (one Redis round trip, one batch of record statements)


@dataclass
class Outcome:
    contacts: int = 0
    duplicate_rows: int = 0
    duplicate_phones: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # the report entries, in publish order


def _narrow(contact: dict[str, Any], dropped: set[str]) -> bool:
    """Keep only the numbers not dropped (the first kept becomes the main one); False when none is left."""
    phones = [p for p in json.loads(contact.get("phones") or "[]") if p["e"] not in dropped]
    if not phones:
        return False
    main = phones[0]
    contact.update(phones=json.dumps(phones, separators=(",", ":")), phone=main["e"], line_type=main["t"],
                   timezones=main["z"], phone_country=main["c"], phone_subdivision=main["s"])
    return True


def publish(client: redis.Redis, record: Record, keys: Keys, chunks: list[tuple[int, str]], list_id: str,
            campaign: str, beat: Callable[[], None] = lambda: None) -> Outcome:
    """Write the staged contacts of `chunks` ((index, attempt) in order) into the record in one transaction;
    returns what happened (nothing is written to Redis here)."""
    outcome = Outcome()
    with record.transaction() as tx:
        if tx.dialect == "postgresql":
            # the tables' statistics predate this transaction's own rows (a new list: empty): without this the
            # planner scans the growing tables for every page's lookup (quadratic in the list's size)
            tx.execute("SET LOCAL enable_seqscan = off")
        check_list = others_hold(tx, keys.tenant, list_id=list_id, besides_import=keys.import_id)
        check_campaign = bool(campaign) and others_hold(tx, keys.tenant, campaign=campaign,
                                                         besides_import=keys.import_id)
        for index, attempt in chunks:
            rows_key = keys.rows(index, attempt)
            start = 0
            while True:
                items = [_s(i) for i in client.lrange(rows_key, start, start + PAGE - 1)]
                if not items:
                    break
                start += len(items)
                parsed = []
                for item in items:
                    _, row, line, numbers, data = item.split("\t", 4)
                    parsed.append((int(row), int(line), [n for n in numbers.split(",") if n], json.loads(data)))
                every = sorted({n for _, _, numbers, _ in parsed for n in numbers})
                first_row = dict(zip(every, client.hmget(keys.seen, every), strict=True)) if every else {}
                in_list = numbers_taken(tx, keys.tenant, every, list_id=list_id,
                                        besides_import=keys.import_id) if check_list else set()
                in_campaign = numbers_taken(tx, keys.tenant, every, campaign=campaign,
                                            besides_import=keys.import_id) if check_campaign else set()
                batch = []
                for row, line, numbers, contact in parsed:
                    dropped: dict[str, tuple[str, int]] = {}
                    for e in numbers:
                        first = int(first_row.get(e) or row)
                        reason = ("duplicate_in_file" if first != row else "duplicate_in_list" if e in in_list
                                  else "duplicate_in_campaign" if e in in_campaign else "")
                        if reason:
                            dropped[e] = (reason, first)
                    if dropped:
                        for p in json.loads(contact.get("phones") or "[]"):
                            if p["e"] in dropped:
                                reason, first = dropped[p["e"]]
                                outcome.duplicates.append({
                                    "row": row, "line": line, "column": p.get("k"), "value": p["e"],
                                    "reason": reason, "first_row": first, "severity": "duplicate"})
                                outcome.by_reason[reason] += 1
                                outcome.duplicate_phones += 1
                        if not _narrow(contact, set(dropped)):
                            outcome.duplicate_rows += 1
                            continue
                    batch.append(contact)
                insert_contacts(tx, keys.tenant, list_id, batch)
                outcome.contacts += len(batch)
                beat()
    return outcome


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
                            len(outcome.duplicates), json.dumps(counts), json.dumps(dict(outcome.by_reason)),
                            *entries))
