"""The archiver: copy each tenant's audit stream (the outbox, see dialer.record.rows) into the record, then trim
from Redis what the record safely holds.

One pass per tenant:
  1. read the record's cursor (archive_progress: last seq stored and its hash);
  2. read the next entries from Redis (XRANGE from cursor + 1), check they continue the chain (first prev equals
     the cursor's hash; no gap), turn them into rows;
  3. in ONE record transaction: INSERT ... ON CONFLICT DO NOTHING every row and move the cursor. Killed before
     the commit: nothing stored, the next pass copies the same entries. Killed after it: the cursor says so, and
     an entry copied twice (two archivers at once) inserts nothing the second time (every key holds the seq);
  4. only after the commit, trim Redis below the last stored entry that is older than the Redis tail
     (record.redis_tail_hours) with AuditLog.trim_before: a signed base, so `dialer audit verify` still walks
     the Redis part, and dialer.record.verify walks both as one chain.
A record that is down (RecordUnavailable) stops the pass with nothing trimmed; Redis keeps everything until the
record is back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from dialer.audit import GENESIS, Appended, AuditLog, base_key, head_key, stream_key
from dialer.record import schema
from dialer.record.relink import Position, hint, position
from dialer.record.rows import MalformedEntry, Rows, add_entry
from dialer.record.store import Record, RecordUnavailable, Tx

log = logging.getLogger(__name__)

BATCH = 2000  # entries per record transaction
# How often the service looks for tenants with a trail (a SCAN of the whole keyspace). Every pass was too often:
# at a 0.2 s interval over a 20,000-contact keyspace the SCANs cost redis-server 11 us per gate decision, four
# times the XRANGE reads themselves (BENCHMARKS.md, "Gate decisions with the archiver running"). A new tenant's
# first entries wait at most this long in Redis, where they are safe.
TENANT_RESCAN_S = 30.0


class ChainGap(Exception):
    """Redis no longer holds the entries that follow what the record stored: refuse to archive past a hole. After a
    data loss an operator's confirmation (dialer/record/relink.py) lets the archive go on with Redis's new trail.
    `archived` is the record's last seq for the tenant: one gap is one event however Redis's new trail grows."""

    def __init__(self, message: str, archived: int | None = None) -> None:
        super().__init__(message)
        self.archived = archived


@dataclass(frozen=True)
class PassResult:
    tenant: str
    copied: int  # entries read from Redis and written (or found already written)
    archived_seq: int  # the record's cursor after the pass
    trimmed: int  # entries removed from Redis


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def tenants_with_trails(client: redis.Redis) -> list[str]:
    found = set()
    for key in client.scan_iter(match="t:{*}:audit:head", count=1000):  # t:{T}:: the tenant is the hash tag
        text = _s(key)
        found.add(text[3:-len("}:audit:head")])
    return sorted(found)


def _insert_sql(table: str) -> str:
    cols = schema.COLUMNS[table]
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
            f"ON CONFLICT ({', '.join(schema.KEYS[table])}) DO NOTHING")


class Archiver:
    def __init__(self, client: redis.Redis, record: Record, *, secret_key: str | bytes = b"",
                 tail: timedelta = timedelta(hours=24), batch: int = BATCH,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.redis = client
        self.record = record
        self.audit = AuditLog(client, secret_key)
        self.tail = tail
        self.batch = batch
        self.clock = clock or (lambda: datetime.now(UTC))

    # --- the cursor ----------------------------------------------------------------------------------

    def progress(self, tenant: str) -> tuple[int, str | None]:
        """The last archived record seq and its hash."""
        at = position(self.record, tenant)
        return at.seq, at.hash

    # --- one pass -------------------------------------------------------------------------------------

    def run_once(self, tenants: Sequence[str] | None = None) -> list[PassResult]:
        return [self.archive_tenant(t) for t in (tenants if tenants is not None else tenants_with_trails(self.redis))]

    def archive_tenant(self, tenant: str, max_batches: int | None = None) -> PassResult:
        copied, batches = 0, 0
        at = position(self.record, tenant)
        redis_seq, expected_prev, expected_first = at.redis_seq, at.expected_prev, at.expected_first
        record_seq = at.seq
        while max_batches is None or batches < max_batches:
            if batches == 0:  # the head comes with the first read, in the same round trip (a caught-up pass's cost)
                pipe = self.redis.pipeline(transaction=False)
                pipe.xrange(stream_key(tenant), f"{redis_seq + 1}-0", "+", count=self.batch)
                pipe.hmget(head_key(tenant), "seq", "hash")
                chunk, head = pipe.execute()
            else:
                chunk = self.redis.xrange(stream_key(tenant), f"{redis_seq + 1}-0", "+", count=self.batch)
            if not chunk:
                if batches == 0:
                    self._check_head(tenant, at, head)
                break
            redis_seq, expected_prev = self._store(tenant, at, redis_seq, expected_prev, expected_first, chunk)
            record_seq = redis_seq + at.shift
            expected_first = None
            copied += len(chunk)
            batches += 1
            if len(chunk) < self.batch:
                break
        trimmed = self._trim(tenant, redis_seq) if redis_seq else 0
        return PassResult(tenant, copied, record_seq, trimmed)

    def _check_head(self, tenant: str, at: Position, raw_head: Sequence[Any]) -> None:
        """Nothing new in Redis: still, a head below (or another entry at) what the record holds is a data loss
        (a failover lost the last entries, a flush), seen now rather than when the next entry comes."""
        if at.seq == 0 and at.latest is None:
            return
        head = Appended(int(raw_head[0] or 0), _s(raw_head[1]) if raw_head[1] else GENESIS)
        last = at.redis_seq
        if head.seq < last:
            raise ChainGap(f"tenant {tenant}: Redis's audit trail ends at seq {head.seq} but the record holds it up "
                           f"to seq {last}: Redis lost entries (restart, flush or failover); archiving stops for this "
                           f"tenant: {hint(tenant)}", last)
        if head.seq == last and last and head.hash != at.expected_prev:
            raise ChainGap(f"tenant {tenant}: Redis's entry {last} is not the archived one: Redis's trail forked "
                           f"(data loss); archiving stops for this tenant: {hint(tenant)}", last)

    def _store(self, tenant: str, at: Position, seq: int, last_hash: str | None, first_hash: str | None,
               chunk: Sequence[tuple[Any, dict[Any, Any]]]) -> tuple[int, str]:
        """Check the chunk continues the archive (Redis seq `seq`, hash `last_hash`) and store it in one
        transaction; returns the new Redis seq and hash."""
        rows = Rows()
        first = True
        base: tuple[int, str, str] | None = None
        for entry_id, raw in chunk:
            fields = {k.decode(): v.decode() for k, v in raw.items()} if raw and isinstance(next(iter(raw)), bytes) \
                else {str(k): str(v) for k, v in raw.items()}
            try:
                entry_seq, prev, hash_ = add_entry(rows, tenant, fields, self.record.ts, at.shift)
            except MalformedEntry as exc:
                raise ChainGap(f"tenant {tenant}: {exc} (stream id {_s(entry_id)}); run `dialer audit verify`") \
                    from None
            if first and last_hash is None and entry_seq > 1 and at.latest is None:
                base = self._redis_base(tenant, entry_seq, prev)  # the archive starts after a Redis trim
            elif entry_seq != seq + 1:
                raise ChainGap(f"tenant {tenant}: the record holds up to Redis seq {seq} but Redis's next entry is "
                               f"{entry_seq}: entries {seq + 1}..{entry_seq - 1} are in neither; archiving stops "
                               f"for this tenant: {hint(tenant)}", seq)
            elif last_hash is not None and prev != last_hash:
                raise ChainGap(f"tenant {tenant}: Redis's entry {entry_seq} does not link to the archived entry {seq}: "
                               f"Redis's trail restarted or lost its last entries (data loss); archiving stops for "
                               f"this tenant: {hint(tenant)}", seq)
            elif first and first_hash is not None and hash_ != first_hash:
                raise ChainGap(f"tenant {tenant}: Redis's entry {entry_seq} is not the first entry of the confirmed "
                               f"break (another loss since?); archiving stops for this tenant: {hint(tenant)}", seq)
            first = False
            seq, last_hash = entry_seq, hash_
        self._fill_calls(tenant, rows)
        try:
            with self.record.transaction() as tx:
                self._write(tx, tenant, rows, base, seq + at.shift, last_hash)
        except BaseException:
            self.record.forget_partitions()
            raise
        return seq, last_hash

    def _redis_base(self, tenant: str, first_seq: int, prev: str) -> tuple[int, str, str]:
        """The chain's start when Redis was trimmed before the archive began: its signed base."""
        seq, value, mac = self.redis.hmget(base_key(tenant), "seq", "hash", "mac")
        if seq is None or int(seq) != first_seq - 1 or _s(value) != prev:
            raise ChainGap(f"tenant {tenant}: Redis starts at seq {first_seq} without a matching retention base")
        return first_seq - 1, prev, _s(mac or b"")

    def _write(self, tx: Tx, tenant: str, rows: Rows, base: tuple[int, str, str] | None, seq: int,
               last_hash: str) -> None:
        for table, instants in rows.instants.items():
            if table in schema.PARTITIONED:
                self.record.ensure_partitions(tx, table, instants)
        if base is not None:
            tx.execute(_insert_sql("audit_bases"), (tenant, base[0], base[1], base[2], self.record.ts(self.clock())))
        for table in ("audit_archive", "gate_decisions", "gate_denials", "call_records", "consents", "optouts",
                      "usage_records"):
            tx.insert_new(table, schema.COLUMNS[table], schema.KEYS[table], rows.tables.get(table, []))
        now = self.record.ts(self.clock())
        # The cursor only moves forward: a slower archiver finishing late cannot move it back.
        tx.execute("INSERT INTO archive_progress (tenant, seq, hash, updated_at) VALUES (%s, %s, %s, %s) "
                   "ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                   "updated_at = excluded.updated_at WHERE archive_progress.seq < excluded.seq",
                   (tenant, seq, last_hash, now))

    def _fill_calls(self, tenant: str, rows: Rows) -> None:
        """A call record carries its gate decision (seq, reasons) and, when the outcome did not say, its campaign
        and contact: from the reserve decision with the same call id (this batch's, else the record's)."""
        calls = rows.tables.get("call_records")
        if not calls:
            return
        cols = schema.COLUMNS["gate_decisions"]
        decided: dict[str, tuple[int, str | None, str | None, str]] = {}
        for d in rows.tables.get("gate_decisions", []):
            row = dict(zip(cols, d, strict=True))
            if row["call_id"] and row["allowed"]:
                decided[row["call_id"]] = (row["seq"], row["campaign"], row["contact_id"], row["reasons"])
        missing = sorted({c[3] for c in calls if c[3] and c[3] not in decided})
        for i in range(0, len(missing), 500):
            part = missing[i:i + 500]
            found = self.record.query(
                f"SELECT call_id, seq, campaign, contact_id, reasons FROM gate_decisions WHERE tenant = %s AND "
                f"allowed = %s AND call_id IN ({', '.join(['%s'] * len(part))})", (tenant, True, *part))
            for call_id, seq, campaign, contact_id, reasons in found:
                decided.setdefault(call_id, (int(seq), campaign, contact_id, reasons))
        ccols = schema.COLUMNS["call_records"]
        for i, c in enumerate(calls):
            row = dict(zip(ccols, c, strict=True))
            d = decided.get(row["call_id"] or "")
            if d is None:
                continue
            row["gate_seq"], row["gate_reasons"] = d[0], d[3]
            row["campaign"] = row["campaign"] or d[1]
            row["contact_id"] = row["contact_id"] or d[2]
            calls[i] = tuple(row[k] for k in ccols)

    # --- trimming Redis -------------------------------------------------------------------------------

    def _trim(self, tenant: str, archived: int) -> int:
        """Trim Redis below the oldest archived entry written at or after the cutoff (now - tail), or below the last
        archived entry when all are older: never past what the record holds, and Redis keeps a start to link to."""
        first = self.redis.xrange(stream_key(tenant), "-", "+", count=1)
        if not first:
            return 0
        start = int(_s(first[0][0]).split("-")[0])
        if start >= archived:
            return 0
        cutoff_ms = int((self.clock() - self.tail).timestamp() * 1000)
        # written times grow with seq (Redis's clock, one script at a time): binary search, O(log n) lookups
        lo, hi = start, archived  # the answer is in [lo, hi]; hi (the last archived entry) is always allowed
        while lo < hi:
            mid = (lo + hi) // 2
            written = self._written(tenant, mid)
            if written is None or written < cutoff_ms:
                lo = mid + 1
            else:
                hi = mid
        keep_from = lo
        if keep_from <= start:
            return 0
        try:
            return self.audit.trim_before(tenant, keep_from)
        except (ValueError, RuntimeError) as exc:  # changed under us (retention ran): next pass
            log.warning("archiver: tenant %s not trimmed this pass: %s", tenant, exc)
            return 0

    def _written(self, tenant: str, seq: int) -> int | None:
        found = self.redis.xrange(stream_key(tenant), f"{seq}-0", f"{seq}-0")
        if not found:
            return None
        fields = found[0][1]
        return int(_s(fields.get(b"written", fields.get("written", b"0"))) or 0)

    # --- the service --------------------------------------------------------------------------------------

    def serve(self, interval: float = 1.0, should_stop: Callable[[], bool] = lambda: False,
              tenants: Sequence[str] | None = None, rescan: float = TENANT_RESCAN_S,
              monotonic: Callable[[], float] = time.monotonic) -> None:
        """Archive every tenant, again and again, until should_stop(). A record or Redis outage is logged once
        and retried; nothing is trimmed meanwhile. Without `tenants`, the tenants with a trail are looked up
        every `rescan` seconds (not every pass: see TENANT_RESCAN_S)."""
        down = False
        gaps: dict[str, object] = {}  # tenant -> the gap last reported (said once, retried every pass)
        known: list[str] = []
        scanned_at: float | None = None
        while not should_stop():
            started = monotonic()
            busy = False
            try:
                if tenants is None and (scanned_at is None or started - scanned_at >= rescan):
                    known, scanned_at = tenants_with_trails(self.redis), started
                for tenant in tenants if tenants is not None else known:
                    if should_stop():
                        break
                    try:
                        busy |= self.archive_tenant(tenant).copied >= self.batch
                        gaps.pop(tenant, None)
                    except ChainGap as exc:  # this tenant waits for an operator; the others go on
                        gap = str(exc) if exc.archived is None else exc.archived
                        if gaps.get(tenant) != gap:
                            log.error("archiver: %s", exc)
                        gaps[tenant] = gap
                    except (RecordUnavailable, redis.RedisError):
                        raise
                    except Exception as exc:
                        # Anything else (a driver error we do not map, a bug) must not end the service: the thread
                        # would die silently and no tenant be archived again until a restart. Said once per error
                        # (with its traceback), retried every pass like a gap.
                        failure = f"{type(exc).__name__}: {exc}"
                        if gaps.get(tenant) != failure:
                            log.exception("archiver: tenant %s not archived this pass (%s); retried", tenant,
                                          failure)
                        gaps[tenant] = failure
                if down:
                    log.warning("archiver: record and Redis reachable again")
                down = False
            except (RecordUnavailable, redis.RedisError) as exc:
                if not down:
                    log.error("archiver: paused, nothing trimmed: %s", exc)
                down = True
            if not busy:
                time.sleep(max(0.0, interval - (monotonic() - started)))

    def lag(self, tenant: str) -> dict[str, Any]:
        """How far the record is behind Redis: entries and seconds (by Redis's write time)."""
        seq = position(self.record, tenant).redis_seq
        head = self.audit.head(tenant).seq
        oldest = self.redis.xrange(stream_key(tenant), f"{seq + 1}-0", "+", count=1)
        seconds = 0.0
        if oldest:
            written = int(_s(oldest[0][1].get(b"written", oldest[0][1].get("written", b"0"))))
            seconds = max(0.0, self.clock().timestamp() - written / 1000)
        return {"tenant": tenant, "archived_seq": seq, "head_seq": head, "entries": max(0, head - seq),
                "seconds": round(seconds, 3)}


def summary(results: Sequence[PassResult]) -> str:
    return json.dumps([r.__dict__ for r in results])
