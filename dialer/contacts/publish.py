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
from dialer.record.contacts import insert_contacts, numbers_taken
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
                in_list = numbers_taken(tx, keys.tenant, every, list_id=list_id, besides_import=keys.import_id)
                in_campaign = numbers_taken(tx, keys.tenant, every, campaign=campaign,
                                            besides_import=keys.import_id) if campaign else set()
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


def record_outcome(client: redis.Redis, keys: Keys, outcome: Outcome) -> bool:
    """After the record's commit: the summary's counters and the duplicates' report entries, with the
    `published` mark, in one MULTI, once (a second call finds the mark and writes nothing). True if written."""
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(keys.status)
            if pipe.hget(keys.status, "published"):
                return False
            listed = int(pipe.hget(keys.counters, "errors_listed") or 0)
            room = max(0, ERRORS_KEPT - listed)
            kept, unlisted = outcome.duplicates[:room], Counter(d["reason"] for d in outcome.duplicates[room:])
            fields: dict[str, int] = {"contacts": outcome.contacts, "duplicate_rows": outcome.duplicate_rows,
                                      "duplicate_phones": outcome.duplicate_phones,
                                      "errors_listed": listed + len(outcome.duplicates)}
            fields.update({f"dup:{k}": v for k, v in outcome.by_reason.items()})
            fields.update({f"unlisted_dup:{k}": v for k, v in unlisted.items()})
            pipe.multi()
            pipe.hset(keys.counters, mapping=fields)
            pipe.delete(keys.duplicates)
            for start in range(0, len(kept), 1000):
                pipe.rpush(keys.duplicates, *[json.dumps(d) for d in kept[start:start + 1000]])
            pipe.hset(keys.status, "published", "1")
            pipe.execute()
            return True
        except redis.WatchError:  # another process published meanwhile
            return False
