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
from datetime import UTC, datetime
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


@dataclasses.dataclass(frozen=True)
class ArchiveFilter:
    """What a reader filters on that the archive's SQL can narrow (GET /v1/audit): kind and actor exactly, the event
    time `at` (since inclusive, until exclusive) as a superset. The reader still applies its own test to every entry
    it gets, so its answer is the one a scan gives: here only rows that cannot match are left out.

    `at` is the text Redis held (dialer.audit.iso: UTC, `Z`, no fraction or 6 digits). A row in that shape whose
    value is a real instant compares by its first 19 characters (to the second, both bounds widened to the whole
    second); any other row (another shape, a damaged value, which the scan reads as 1970) is always returned."""

    kind: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def sql(self, dialect: str) -> tuple[str, list[Any]]:
        """Conditions (each prefixed with AND) over audit_archive's columns, and their parameters."""
        where, params = "", []
        if self.kind is not None:
            where, params = where + " AND kind = %s", [*params, self.kind]
        if self.actor is not None:
            where, params = where + " AND actor = %s", [*params, self.actor]
        bounds, values = [], []
        if self.since is not None:
            bounds.append("substr(at, 1, 19) >= %s")
            values.append(_second(self.since))
        if self.until is not None:
            bounds.append("substr(at, 1, 19) <= %s")
            values.append(_second(self.until))
        if bounds:
            where += f" AND (CASE WHEN {_canonical(dialect)} THEN {' AND '.join(bounds)} ELSE TRUE END)"
            params += values
        return where, params


def _second(value: datetime) -> str:
    """The instant's UTC second as iso() writes it (a bound widened to its whole second)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _canonical(dialect: str) -> str:
    """SQL: `at` is in iso()'s shape and names a real instant (the month's days, leap years), so Python reads it as
    written. CASE keeps PostgreSQL from casting text that is not digits."""
    if dialect == "postgresql":
        shape = "at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{6})?Z$'"
    else:
        digits = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]"
        shape = f"(at GLOB '{digits}Z' OR at GLOB '{digits}.[0-9][0-9][0-9][0-9][0-9][0-9]Z')"
    y = "CAST(substr(at, 1, 4) AS INTEGER)"
    m, d = "CAST(substr(at, 6, 2) AS INTEGER)", "CAST(substr(at, 9, 2) AS INTEGER)"

    def divides(n: int) -> str:  # (no % operator: the placeholders' character)
        return f"{y} = ({y} / {n}) * {n}"

    days = (f"CASE WHEN {m} IN (4, 6, 9, 11) THEN 30 WHEN {m} = 2 THEN CASE WHEN ({divides(4)} AND NOT "
            f"{divides(100)}) OR {divides(400)} THEN 29 ELSE 28 END ELSE 31 END")
    value = (f"{y} >= 1 AND {m} BETWEEN 1 AND 12 AND {d} >= 1 AND {d} <= {days} AND "
             "CAST(substr(at, 12, 2) AS INTEGER) <= 23 AND CAST(substr(at, 15, 2) AS INTEGER) <= 59 AND "
             "CAST(substr(at, 18, 2) AS INTEGER) <= 59")
    return f"(CASE WHEN {shape} THEN ({value}) ELSE FALSE END)"


def newest_first(client: Any, record: Any, tenant: str, *, before: int | None = None,
                 chunk: int = CHUNK, match: ArchiveFilter | None = None) -> Iterator[AuditEntry]:
    """Entries with a seq below `before` (all when None), newest first; `record` None: the Redis trail alone.
    `match`: the archived part is narrowed in SQL (ArchiveFilter: the caller still tests every entry; the Redis
    tail is returned whole)."""
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
    where, params = match.sql(record.dialect) if match is not None and record is not None else ("", [])
    while record is not None and top >= 1:
        rows = record.query(f"SELECT {_COLUMNS} FROM audit_archive WHERE tenant = %s AND seq <= %s{where} "
                            "ORDER BY seq DESC LIMIT %s", (tenant, top, *params, chunk))
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
