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
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dialer.record import schema
from dialer.record.store import Record, RecordNotMigrated, Tx

log = logging.getLogger(__name__)

TABLES = ("audit_archive", "gate_decisions", "gate_denials", "call_records")
# The column each removable table is cut on (the archive by when Redis wrote the entry, like its partitions).
CUT_ON = {"audit_archive": "written_at", "gate_decisions": "at", "gate_denials": "at", "call_records": "at"}
# Nothing younger than this is ever removed here, whatever a caller asks (the audit trail is kept for years).
FLOOR = timedelta(days=365)


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
        tenants = [str(t) for (t,) in tx.query("SELECT DISTINCT tenant FROM audit_archive WHERE written_at < %s",
                                               (record.ts(cutoff),))]
        bases = _new_bases(record, tx, dict.fromkeys(tenants, cutoff), key, now)
        dropped = _drop(record, tx, cutoff)
    return RetentionResult(cutoff, tuple(dropped), bases)


def month_floor(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return month_start(value.year, value.month)


def record_tenants(record: Record) -> list[str]:
    """Every tenant with rows retention may remove."""
    with record.transaction() as tx:
        return _tenants(tx)


def _tenants(tx: Tx) -> list[str]:
    return sorted(str(t) for (t,) in tx.query(" UNION ".join(f"SELECT DISTINCT tenant FROM {t}" for t in TABLES)))


@dataclass
class ScheduledResult:
    at: datetime
    cutoffs: dict[str, datetime]
    shared_cut: datetime | None  # months before it were dropped whole (PostgreSQL)
    dropped_partitions: tuple[str, ...] = ()
    removed: dict[str, dict[str, int]] = field(default_factory=dict)  # tenant -> table -> rows
    new_bases: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "cutoffs": {t: c.isoformat() for t, c in self.cutoffs.items()},
                "shared_cut": self.shared_cut.isoformat() if self.shared_cut else None,
                "dropped_partitions": list(self.dropped_partitions), "removed": self.removed,
                "new_bases": self.new_bases}


def apply_policies(record: Record, cutoffs: Mapping[str, datetime], secret_key: str | bytes,
                   now: datetime) -> ScheduledResult:
    """Remove, for each tenant, what was written (archive) or happened (decisions, calls) before its cut, in one
    retention session: the months before every cut as whole partitions (PostgreSQL), the rest row by row.
    `cutoffs` must name every tenant record_tenants() finds (a tenant left out is never touched, and no month
    it has rows in is dropped)."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    if not key:
        raise ValueError("setting security.secret_key is required: the archive's new start must be signed")
    cutoffs = {t: c.astimezone(UTC) for t, c in cutoffs.items()}
    late = sorted(t for t, c in cutoffs.items() if c > now - FLOOR)
    if late:
        raise ValueError(f"tenant {late[0]}: refusing to remove the last {FLOOR.days} days of the record")
    result = ScheduledResult(now, {}, None)
    with record.retention_session() as tx:
        present = _tenants(tx)  # in the session: what the drops below would touch
        result.cutoffs = {t: cutoffs[t] for t in present if t in cutoffs}
        if not result.cutoffs:
            return result
        # Whole months only where every tenant with rows is past them (a tenant without a cut keeps them all).
        shared = month_floor(min(result.cutoffs.values())) if all(t in cutoffs for t in present) else None
        result.new_bases = _new_bases(record, tx, result.cutoffs, key, now)
        if shared is not None and record.dialect == "postgresql":
            for table in TABLES:  # what the dropped months held, for each tenant's own account
                for tenant, n in tx.query(f"SELECT tenant, count(*) FROM {table} WHERE {CUT_ON[table]} < %s "
                                          "GROUP BY tenant", (record.ts(shared),)):
                    result.removed.setdefault(str(tenant), {})[table] = int(n)
            result.dropped_partitions = tuple(_drop(record, tx, shared))
        for tenant, cut in result.cutoffs.items():
            removed = result.removed.pop(tenant, {})
            for table in TABLES:
                n = tx.execute(f"DELETE FROM {table} WHERE tenant = %s AND {CUT_ON[table]} < %s",
                               (tenant, record.ts(cut)))
                if n:
                    removed[table] = removed.get(table, 0) + n
            if removed:
                result.removed[tenant] = removed
    result.shared_cut = shared
    return result


def _new_bases(record: Record, tx: Tx, cutoffs: Mapping[str, datetime], key: bytes,
               now: datetime) -> dict[str, int]:
    out = {}
    for tenant, cutoff in cutoffs.items():
        at = record.ts(cutoff)
        if not tx.query("SELECT 1 FROM audit_archive WHERE tenant = %s AND written_at < %s LIMIT 1", (tenant, at)):
            continue
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
    """Everything before `cutoff` (the first instant of a month), for every tenant."""
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


# --- the scheduled job -----------------------------------------------------------------------------------

def policy_cutoffs(client: Any, tenants: Iterable[str], at: datetime) -> dict[str, datetime]:
    """Each tenant's cut for the record at `at`: its audit period (dialer.retention policy; the defaults for a
    tenant Redis no longer knows), never under the legal minimum. The record holds the audit trail and what is
    derived from it (decisions, call records), so the audit period applies to all of it."""
    from dialer import retention

    floor = retention.minimum("audit")
    return {t: at.astimezone(UTC) - timedelta(days=max(retention.get_policy(client, t)["audit"], floor))
            for t in tenants}


def run_scheduled(client: Any, record: Record, at: datetime, secret_key: str | bytes,
                  actor: str = "job:retention") -> ScheduledResult:
    """Apply every tenant's policy to the record at `at`, and say so in each affected tenant's audit trail."""
    from dialer import retention
    from dialer.audit import AuditLog

    tenants = sorted(set(record_tenants(record)) | set(retention.tenants(client)))
    result = apply_policies(record, policy_cutoffs(client, tenants, at), secret_key, at)
    audit = AuditLog(client, secret_key)
    for tenant, removed in result.removed.items():
        audit.append(tenant, "retention", actor, {"action": "record", "before": result.cutoffs[tenant].isoformat(),
                                                  "removed": removed}, at)
    log.info("record retention at %s: removed %s, dropped %d partition(s)", at.isoformat(), result.removed,
             len(result.dropped_partitions))
    return result


def record_retention_job(at_iso: str) -> dict[str, Any]:
    """RQ entry point (queue "retention"; one per round of `dialer retention schedule`): the record's retention at
    the instant the scheduler chose. A record never set up (no schema yet) has nothing to remove."""
    from rq import get_current_job

    from dialer.config import load_config
    from dialer.jobs import job_data_connection

    job = get_current_job()
    assert job is not None
    config = load_config()
    from dialer.private_files import data_dir
    from dialer.record.url import parse_record_url

    url = parse_record_url(config["record.url"], data_dir(config))
    if url.dialect == "sqlite" and not Path(url.path).exists():  # opening it would create the directory
        return {"at": at_iso, "skipped": f"record {url.shown()}: no record there yet"}
    with Record.from_config(config) as record:
        try:
            result = run_scheduled(job_data_connection(job), record, datetime.fromisoformat(at_iso),
                                   config["security.secret_key"])
        except RecordNotMigrated as exc:
            return {"at": at_iso, "skipped": str(exc)}
    return result.as_dict()
