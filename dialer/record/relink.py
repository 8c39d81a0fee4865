"""Relinking the record to Redis's audit trail after a data loss: the confirmed break (docs/record.md, "After a
Redis data loss").

A Redis restarted empty, flushed, or failed over to a replica that missed the last writes keeps appending to the
tenant's trail, but the trail no longer continues what the record archived: it restarts at seq 1 from the genesis,
or it forks after the last entry the replica had. The archiver refuses to copy past such a fork (ChainGap): it
cannot tell a data loss from tampering. Once an operator has confirmed the loss (`dialer record relink`, or
`dialer runtime resume --after-data-loss`, which relinks every forked tenant), the record holds a signed break
(audit_breaks, one row) and accepts Redis's new trail as a new segment:

  - nothing archived changes: the segment's entries go on from the archive's last record seq (record seq =
    Redis seq + shift), so an entry whose Redis seq an archived one already has is still stored once, under its own
    record seq, and every derived row (decisions, calls, consents, opt-outs, usage) is keyed by that record seq;
  - verify walks across the break: the last archived entry before it must be the one the break names, the
    segment's first entry must be the one it names (its prev, its hash), and the row must be signed with our key;
    the result reports it as a confirmed break, with who confirmed it and when.

Pure parts (Segment, Fork, the signature) take values; the I/O is in diagnose() and confirm().
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialer.audit import GENESIS, AuditLog, stream_key
from dialer.record.store import Record, ts_text


class RelinkError(ValueError):
    """Nothing relinked: one line saying why."""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _when(value: Any) -> str:
    """confirmed_at as signed: SQLite stores ts_text already; PostgreSQL gives a datetime back."""
    return ts_text(value) if isinstance(value, datetime) else str(value)


def hint(tenant: str) -> str:
    return (f"check what was lost, then run `dialer record relink --tenant {tenant}` (or `dialer runtime resume "
            "--after-data-loss`)")


@dataclass(frozen=True)
class Break:
    """One confirmed discontinuity (a row of audit_breaks)."""

    tenant: str
    seq: int  # the record seq of the new segment's first entry
    shift: int  # record seq - Redis seq, within the segment
    last_seq: int  # the last archived entry before the break (record seq) and its hash
    last_hash: str
    fork_seq: int  # the last Redis seq the new trail shares with the archive (0: the trail restarted)
    first_seq: int  # the segment's first Redis entry: seq, prev, hash
    first_prev: str
    first_hash: str
    detected: str
    reason: str
    confirmed_by: str
    confirmed_at: str  # ts_text
    mac: str = ""

    COLUMNS = ("tenant", "seq", "shift", "last_seq", "last_hash", "fork_seq", "first_seq", "first_prev", "first_hash",
               "detected", "reason", "confirmed_by", "confirmed_at", "mac")

    def message(self) -> bytes:
        return "\n".join(str(v) for v in (
            self.tenant, self.seq, self.shift, self.last_seq, self.last_hash, self.fork_seq, self.first_seq,
            self.first_prev, self.first_hash, self.detected, self.reason, self.confirmed_by,
            self.confirmed_at)).encode()

    def signed(self, key: bytes) -> bool:
        return bool(key) and hmac.compare_digest(self.mac, sign(key, self))

    def describe(self) -> str:
        return (f"after archived seq {self.last_seq} (hash {self.last_hash[:12]}) Redis's trail went on from its seq "
                f"{self.first_seq} (hash {self.first_hash[:12]}), stored from record seq {self.seq}; confirmed by "
                f"{self.confirmed_by} at {self.confirmed_at}" + (f" ({self.reason})" if self.reason else ""))


def sign(key: bytes, b: Break) -> str:
    return hmac.new(key, b.message(), hashlib.sha256).hexdigest()


def _break(row: Sequence[Any]) -> Break:
    values = dict(zip(Break.COLUMNS, row, strict=True))
    for name in ("seq", "shift", "last_seq", "fork_seq", "first_seq"):
        values[name] = int(values[name])
    values["confirmed_at"] = _when(values["confirmed_at"])
    values = {k: ("" if v is None else v) for k, v in values.items()}
    return Break(**values)


def breaks(record: Any, tenant: str) -> list[Break]:
    """The tenant's breaks in chain order (at one record seq, a later confirmation supersedes an earlier one whose
    segment never got an entry archived)."""
    rows = record.query(f"SELECT {', '.join(Break.COLUMNS)} FROM audit_breaks WHERE tenant = %s "
                        "ORDER BY seq, confirmed_at", (tenant,))
    return [_break(r) for r in rows]


def shift_of(found: Sequence[Break], redis_seq: int) -> int:
    """Where Redis's entry `redis_seq` (as Redis holds it now) is stored in the record: each break's segment starts
    at its first Redis seq and runs to the next break's fork, so the latest break at or below the seq decides."""
    shift = 0
    for b in found:
        if b.first_seq <= redis_seq:
            shift = b.shift
    return shift


def current_history(found: Sequence[Break]) -> list[tuple[int, int | None]]:
    """The record seq ranges (first, last; None: open) of the entries Redis's current trail is made of: the latest
    segment, and back through each break's fork the part of the earlier segment the trail still shares."""
    if not found:
        return [(1, None)]
    out: list[tuple[int, int | None]] = [(found[-1].seq, None)]
    b, earlier = found[-1], list(found[:-1])
    while b.fork_seq:
        holder = next((p for p in reversed(earlier) if p.first_seq <= b.fork_seq), None)
        out.append((holder.seq if holder else 1, b.fork_seq + (holder.shift if holder else 0)))
        if holder is None:
            break
        b, earlier = holder, earlier[:earlier.index(holder)]
    return out


@dataclass(frozen=True)
class Position:
    """Where the archive stands for a tenant, in both numberings."""

    seq: int  # the last archived record seq (0: nothing)
    hash: str | None
    latest: Break | None

    @property
    def shift(self) -> int:
        return self.latest.shift if self.latest else 0

    @property
    def redis_seq(self) -> int:
        """Redis's seq of the last archived entry (or, before the segment's first entry is archived, its fork)."""
        if self.latest is not None and self.seq < self.latest.seq:
            return self.latest.first_seq - 1
        return self.seq - self.shift

    @property
    def expected_prev(self) -> str | None:
        """The prev Redis's next entry must carry."""
        if self.latest is not None and self.seq < self.latest.seq:
            return self.latest.first_prev
        return self.hash

    @property
    def expected_first(self) -> str | None:
        """The hash Redis's next entry must have: the confirmed segment's first, until it is archived."""
        if self.latest is not None and self.seq < self.latest.seq:
            return self.latest.first_hash
        return None


def position(record: Record, tenant: str) -> Position:
    with record.transaction() as tx:
        progress = tx.query("SELECT seq, hash FROM archive_progress WHERE tenant = %s", (tenant,))
        latest = tx.query(f"SELECT {', '.join(Break.COLUMNS)} FROM audit_breaks WHERE tenant = %s "
                          "ORDER BY seq DESC, confirmed_at DESC LIMIT 1", (tenant,))
    seq, value = (int(progress[0][0]), str(progress[0][1])) if progress else (0, None)
    return Position(seq, value, _break(latest[0]) if latest else None)


@dataclass(frozen=True)
class Fork:
    """Redis's trail does not continue the archive (what diagnose() found)."""

    tenant: str
    at: Position
    head_seq: int
    fork_seq: int  # the last Redis seq whose entry is still the archived one (0: none)
    first: tuple[int, str, str] | None  # Redis's first entry after the fork: seq, prev, hash (None: none yet)

    def describe(self) -> str:
        lost = self.at.redis_seq - self.fork_seq
        then = "goes on differently" if self.first else "ends"
        what = (f"Redis's trail restarted (head seq {self.head_seq})" if self.fork_seq == 0 else
                f"Redis's trail is the archived one up to its seq {self.fork_seq}, then {then} (head seq "
                f"{self.head_seq})")
        return (f"the record holds tenant {self.tenant}'s chain up to record seq {self.at.seq} (Redis seq "
                f"{self.at.redis_seq}); {what}: {lost} archived entr{'y' if lost == 1 else 'ies'} are no longer in "
                "Redis's trail")


def _entry(audit: AuditLog, tenant: str, seq: int) -> dict[str, str] | None:
    found = audit.redis.xrange(stream_key(tenant), f"{seq}-0", f"{seq}-0")
    return {_s(k): _s(v) for k, v in found[0][1].items()} if found else None


def _after(audit: AuditLog, tenant: str, seq: int) -> tuple[int, str, str] | None:
    found = audit.redis.xrange(stream_key(tenant), f"({seq}-0", "+", count=1)
    if not found:
        return None
    f = {_s(k): _s(v) for k, v in found[0][1].items()}
    return int(f.get("seq", "0")), f.get("prev", ""), f.get("hash", "")


def diagnose(audit: AuditLog, record: Record, tenant: str) -> Fork | None:
    """None while Redis's trail continues the archive (or nothing is archived); else where it forked."""
    at = position(record, tenant)
    if at.seq == 0 and at.latest is None:
        return None
    head = audit.head(tenant)
    last = at.redis_seq
    if head.seq > last:
        following = _entry(audit, tenant, last + 1)
        if following is not None and following.get("prev") == at.expected_prev and \
                at.expected_first in (None, following.get("hash")):
            return None
    elif head.seq == last and head.seq and head.hash == at.expected_prev and at.expected_first is None:
        return None
    found = breaks(record, tenant)

    def agrees(seq: int) -> bool:
        entry = _entry(audit, tenant, seq)
        if entry is None:
            return False
        rows = record.query("SELECT hash FROM audit_archive WHERE tenant = %s AND seq = %s",
                            (tenant, seq + shift_of(found, seq)))
        return bool(rows) and str(rows[0][0]) == entry.get("hash")

    start = audit.redis.xrange(stream_key(tenant), "-", "+", count=1)
    lo = int(_s(start[0][0]).split("-")[0]) if start else 1
    hi = min(head.seq, last)
    fork = lo - 1
    if hi >= lo and agrees(lo):  # agreement holds up to the fork and never after it (each hash covers the past)
        a, b = lo, hi
        while a < b:
            mid = (a + b + 1) // 2
            if agrees(mid):
                a = mid
            else:
                b = mid - 1
        fork = a
    return Fork(tenant, at, head.seq, max(fork, 0), _after(audit, tenant, max(fork, 0)))


def confirm(audit: AuditLog, record: Record, tenant: str, *, by: str, reason: str, at: datetime) -> Break:
    """The operator's confirmation: audit it in Redis's trail (the new segment's first entry when the trail is still
    empty), then store the signed break. Refused when the trail continues the record, when Redis's own trail does
    not verify (that is not a data loss), or without the secret key (the break must be signed)."""
    if not audit._key:
        raise RelinkError("setting security.secret_key is required: a confirmed break is signed")
    fork = diagnose(audit, record, tenant)
    if fork is None:
        raise RelinkError(f"tenant {tenant}: Redis's audit trail continues the record; nothing to relink")
    redis_part = audit.verify(tenant)
    if not redis_part.ok:
        raise RelinkError(f"tenant {tenant}: Redis's own trail does not verify ({redis_part}); not relinked: that is "
                          "not a data loss the record can accept")
    detected = fork.describe()
    audit.append(tenant, "runtime_resume", by, {
        "after": "data_loss", "action": "record_relink", "reason": reason, "detected": detected,
        "record_seq": fork.at.seq, "record_hash": fork.at.hash or GENESIS, "fork_seq": fork.fork_seq}, at)
    first = _after(audit, tenant, fork.fork_seq)
    if first is None:  # cannot happen: the entry just appended is after the fork
        raise RelinkError(f"tenant {tenant}: Redis's trail has no entry after seq {fork.fork_seq}; not relinked")
    seq = fork.at.seq + 1
    b = Break(tenant, seq, seq - first[0], fork.at.seq, fork.at.hash or GENESIS, fork.fork_seq, first[0], first[1],
              first[2], detected, reason, by, ts_text(at))
    b = Break(**{**b.__dict__, "mac": sign(audit._key, b)})
    with record.transaction() as tx:
        now = tx.query("SELECT seq FROM archive_progress WHERE tenant = %s", (tenant,))
        if (int(now[0][0]) if now else 0) != fork.at.seq:
            raise RelinkError(f"tenant {tenant}: the archive moved while relinking; run the command again")
        tx.execute(f"INSERT INTO audit_breaks ({', '.join(Break.COLUMNS)}) VALUES "
                   f"({', '.join(['%s'] * len(Break.COLUMNS))})",
                   [*(getattr(b, c) for c in Break.COLUMNS[:-2]), record.ts(at), b.mac])
    return b


def forked_tenants(audit: AuditLog, record: Record) -> list[Fork]:
    """Every tenant with an archive whose Redis trail no longer continues it."""
    tenants = [str(r[0]) for r in record.query("SELECT tenant FROM archive_progress ORDER BY tenant")]
    return [f for t in tenants if (f := diagnose(audit, record, t)) is not None]
