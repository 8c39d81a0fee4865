"""A tenant's audit trail as one sequence: the part the archiver moved to the record and the Redis tail (issue 18).

Readers (`GET /v1/audit`, `dialer audit show`, the gate-check "why") used to read Redis only, so an entry the
archiver had trimmed from Redis was no longer shown anywhere but in `dialer audit verify`. Here both parts are read
as the chain `verify` walks (dialer/record/verify.py), numbered as the record numbers them (record seq = Redis seq
+ the shift of the latest confirmed break, dialer/record/relink.py; the same as Redis's seq until a data loss):

  - the Redis tail: entries after the last one archived (archived ones still in Redis are read from the record, so
    none is shown twice);
  - the record: `audit_archive` rows of the tenant, by seq.

Tenant isolation is the key and the WHERE clause: every read names the tenant. Reads go page by page (`chunk`
entries), so a reader stopping after `limit` matches reads little more than that. The record down while the
archived part is needed: RecordUnavailable, not a shorter trail presented as whole. A fork Redis lost and no
operator confirmed yet (ChainGap, docs/record.md) is not resolved here: Redis's entries at or below the archived
position are taken as archived, so such entries are shown only once the break is confirmed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from dialer.audit import AuditEntry, _entry, stream_key
from dialer.record.relink import position
from dialer.record.store import RecordNotMigrated

CHUNK = 500


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in raw.items()}


def _renumbered(entry: AuditEntry, seq: int) -> AuditEntry:
    return entry if entry.seq == seq else dataclasses.replace(entry, seq=seq)


def _archive_row(row: tuple[Any, ...]) -> AuditEntry:
    seq, at, kind, actor, payload, written, hash_ = row
    return _entry({"seq": str(seq), "at": str(at), "kind": str(kind), "actor": str(actor), "payload": str(payload),
                   "written": str(written), "hash": str(hash_)})


_COLUMNS = "seq, at, kind, actor, payload, written, hash"


def _archived(record: Any, tenant: str) -> tuple[int, int, int]:
    """The last archived record seq, its Redis seq, and the shift of Redis's seqs now (zeros: nothing archived,
    including no record made yet: the embedded default before any archiver ran)."""
    if record is None:
        return 0, 0, 0
    try:
        at = position(record, tenant)
    except RecordNotMigrated:
        return 0, 0, 0
    return at.seq, at.redis_seq, at.shift


def newest_first(client: Any, record: Any, tenant: str, *, before: int | None = None,
                 chunk: int = CHUNK) -> Iterator[AuditEntry]:
    """Entries with a seq below `before` (all when None), newest first; `record` None: the Redis trail alone."""
    archived, redis_archived, shift = _archived(record, tenant)
    end = "+" if before is None else f"({before - shift}-0"
    if before is None or before - shift > redis_archived + 1:
        while True:
            part = client.xrevrange(stream_key(tenant), end, f"{redis_archived + 1}-0", count=chunk)
            for _, raw in part:
                entry = _entry(_fields(raw))
                yield _renumbered(entry, entry.seq + shift)
            if len(part) < chunk:
                break
            end = f"({_entry(_fields(part[-1][1])).seq}-0"
    top = archived if before is None else min(archived, before - 1)
    while record is not None and top >= 1:
        rows = record.query(f"SELECT {_COLUMNS} FROM audit_archive WHERE tenant = %s AND seq <= %s "
                            "ORDER BY seq DESC LIMIT %s", (tenant, top, chunk))
        for row in rows:
            yield _archive_row(row)
        if len(rows) < chunk:
            break
        top = int(rows[-1][0]) - 1


def oldest_first(client: Any, record: Any, tenant: str, *, first: int = 1, chunk: int = CHUNK
                 ) -> Iterator[AuditEntry]:
    """Entries from seq `first` on, oldest first: the record's, then the Redis tail's."""
    archived, redis_archived, shift = _archived(record, tenant)
    low = max(1, first)
    while record is not None and low <= archived:
        rows = record.query(f"SELECT {_COLUMNS} FROM audit_archive WHERE tenant = %s AND seq >= %s AND seq <= %s "
                            "ORDER BY seq LIMIT %s", (tenant, low, archived, chunk))
        for row in rows:
            yield _archive_row(row)
        if len(rows) < chunk:
            break
        low = int(rows[-1][0]) + 1
    start = f"{max(redis_archived + 1, first - shift, 1)}-0"
    while True:
        part = client.xrange(stream_key(tenant), start, "+", count=chunk)
        for _, raw in part:
            entry = _entry(_fields(raw))
            yield _renumbered(entry, entry.seq + shift)
        if len(part) < chunk:
            return
        start = f"({_entry(_fields(part[-1][1])).seq}-0"
