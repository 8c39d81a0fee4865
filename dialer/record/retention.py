"""Retention of the record: remove whole months of the audit archive, gate decisions and call records, and keep the
chain verifiable from a signed new start (docs/record.md).

The consent ledger and the opt-out/suppression log are never removed here: they are kept as long as the evidence
must be (consents) or the client exists (opt-outs), and are far smaller.

For each tenant whose archive reaches past the cut, the first entry kept is found and its link (prev) is written to
audit_bases as the new start, signed with security.secret_key as AuditLog.trim_before signs Redis's, in the same
transaction as the removal. PostgreSQL drops the month partitions whole (no row-by-row delete; the append-only
trigger is not involved); SQLite deletes the rows inside a retention session.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from dialer.record import schema
from dialer.record.store import Record, Tx

TABLES = ("audit_archive", "gate_decisions", "gate_denials", "call_records")


@dataclass(frozen=True)
class RetentionResult:
    cutoff: datetime
    dropped_partitions: tuple[str, ...]
    new_bases: dict[str, int]  # tenant -> seq of the new start


def sign(key: bytes, tenant: str, seq: int, value: str) -> str:
    """The signature AuditLog._sign makes (same key, same message)."""
    return hmac.new(key, f"{tenant}\n{seq}\n{value}".encode(), hashlib.sha256).hexdigest()


def month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def drop_before(record: Record, cutoff: datetime, secret_key: str | bytes, now: datetime) -> RetentionResult:
    """Remove what was written (archive) or happened (decisions, calls) before `cutoff`, which must be the first
    instant of a month (partitions are whole months)."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    if not key:
        raise ValueError("setting security.secret_key is required: the archive's new start must be signed")
    cutoff = cutoff.astimezone(UTC)
    if (cutoff.day, cutoff.hour, cutoff.minute, cutoff.second, cutoff.microsecond) != (1, 0, 0, 0, 0):
        raise ValueError("the cut must be the first instant of a month (whole monthly partitions are dropped)")
    with record.retention_session() as tx:
        bases = _new_bases(record, tx, cutoff, key, now)
        dropped = _drop(record, tx, cutoff)
    return RetentionResult(cutoff, tuple(dropped), bases)


def _new_bases(record: Record, tx: Tx, cutoff: datetime, key: bytes, now: datetime) -> dict[str, int]:
    at = record.ts(cutoff)
    tenants = tx.query("SELECT DISTINCT tenant FROM audit_archive WHERE written_at < %s", (at,))
    out = {}
    for (tenant,) in tenants:
        kept = tx.query("SELECT seq, prev FROM audit_archive WHERE tenant = %s AND written_at >= %s "
                        "ORDER BY seq LIMIT 1", (tenant, at))
        if kept:
            seq, prev = int(kept[0][0]), str(kept[0][1])
        else:  # every archived entry goes: the start is after the last one (Redis holds the rest)
            last = tx.query("SELECT seq, hash FROM audit_archive WHERE tenant = %s ORDER BY seq DESC LIMIT 1",
                            (tenant,))
            seq, prev = int(last[0][0]) + 1, str(last[0][1])
        tx.execute("INSERT INTO audit_bases (tenant, seq, hash, mac, set_at) VALUES (%s, %s, %s, %s, %s) "
                   "ON CONFLICT (tenant, seq) DO NOTHING",
                   (tenant, seq - 1, prev, sign(key, tenant, seq - 1, prev), record.ts(now)))
        out[tenant] = seq
    return out


def _drop(record: Record, tx: Tx, cutoff: datetime) -> list[str]:
    dropped = []
    if record.dialect == "postgresql":
        for table in schema.PARTITIONED:
            rows = tx.query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s", (table,))
            for (name,) in rows:
                year, month = int(name[-6:-2]), int(name[-2:])
                if month_start(year, month) < cutoff:
                    tx.execute(f"DROP TABLE {name}")
                    dropped.append(name)
        tx.execute("DELETE FROM gate_denials WHERE at < %s", (record.ts(cutoff),))
        record.forget_partitions()
        return sorted(dropped)
    at = record.ts(cutoff)
    tx.execute("DELETE FROM audit_archive WHERE written_at < %s", (at,))
    for table in ("gate_decisions", "gate_denials", "call_records"):
        tx.execute(f"DELETE FROM {table} WHERE at < %s", (at,))
    return dropped
