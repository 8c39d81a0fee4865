"""Verify a tenant's audit chain across the boundary: the part archived in the record, then the Redis tail, as
one chain (docs/record.md).

The archived rows are checked exactly as AuditLog.verify checks Redis entries (seq without gaps, each prev the
previous hash, body and link hashes recomputed), starting from the genesis or the record's signed base. Then the
two parts must join: Redis's base (where its retained chain starts) must be an archived entry with the same hash,
and any entry both hold must be the same entry. Then AuditLog.verify checks the Redis part and the anchors that
fall in it; anchors that fall in the archived part are checked against the archive.
"""

from __future__ import annotations

import hmac
from typing import Any

from dialer.audit import GENESIS, AuditLog, VerifyResult, anchors_key, base_key, body_hash, link_hash, stream_key
from dialer.record.store import Record, RecordNotMigrated, RecordUnavailable

PAGE = 5000


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def verify_chain(audit: AuditLog, record: Record, tenant: str) -> VerifyResult:
    redis_result = audit.verify(tenant)
    bases = record.query("SELECT seq, hash, mac FROM audit_bases WHERE tenant = %s ORDER BY seq DESC LIMIT 1",
                         (tenant,))
    expected = int(bases[0][0]) + 1 if bases else 1
    prev = str(bases[0][1]) if bases else GENESIS
    checked = 0

    def broken(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, redis_result.head_seq, seq, f"archived part: {problem}")

    if bases and audit._key and not hmac.compare_digest(str(bases[0][2] or ""),
                                                        audit._sign(tenant, expected - 1, prev)):
        return broken(expected, "the archive's start is not signed with our key (start cut off)")
    archived: dict[int, str] = {}  # seq -> hash, only where Redis may refer to it (its base, anchors)
    wanted = _redis_refs(audit, tenant)
    while True:
        rows = record.query("SELECT seq, at, kind, actor, payload, written, body, prev, hash FROM audit_archive "
                            "WHERE tenant = %s AND seq >= %s ORDER BY seq LIMIT %s", (tenant, expected, PAGE))
        for seq, at, kind, actor, payload, written, body, entry_prev, entry_hash in rows:
            seq = int(seq)
            if seq != expected:
                return broken(expected, f"entry {expected} is missing (next archived entry is {seq})")
            if entry_prev != prev:
                return broken(seq, "link to the previous entry does not match (entry removed, replaced or reordered)")
            if body_hash(at, kind, actor, payload) != body:
                return broken(seq, "content altered (time, kind, actor or payload differs from what was recorded)")
            if link_hash(prev, seq, str(written), body) != entry_hash:
                return broken(seq, "entry hash does not match its content (entry altered)")
            if seq in wanted:
                archived[seq] = entry_hash
            prev = entry_hash
            expected += 1
            checked += 1
        if len(rows) < PAGE:
            break
    last_archived = expected - 1
    progress = record.query("SELECT seq FROM archive_progress WHERE tenant = %s", (tenant,))
    if progress and int(progress[0][0]) > last_archived:
        return broken(last_archived + 1, f"entries {last_archived + 1}..{int(progress[0][0])} were archived and are "
                                         "gone (archive truncated)")
    if not redis_result.ok:
        return VerifyResult(False, checked + redis_result.checked, redis_result.head_seq, redis_result.bad_seq,
                            f"Redis part: {redis_result.problem}")
    base_seq, base_hash = audit.redis.hmget(base_key(tenant), "seq", "hash")
    redis_base = int(base_seq or 0)
    if redis_base > last_archived:
        return broken(last_archived + 1, f"entries {last_archived + 1}..{redis_base} are neither archived nor in "
                                         "Redis")
    following = audit.redis.xrange(stream_key(tenant), f"{last_archived + 1}-0", f"{last_archived + 1}-0")
    if following and _s(following[0][1].get(b"prev", following[0][1].get("prev", b""))) != prev:
        return broken(last_archived + 1, "Redis's next entry does not link to the last archived one (chain forked)")
    if redis_base and checked and redis_base in archived and archived[redis_base] != _s(base_hash):
        return broken(redis_base, "Redis's part does not continue the archived chain (different entry at the join)")
    if last_archived and redis_result.head_seq >= last_archived > redis_base:
        found = audit.redis.xrange(stream_key(tenant), f"{last_archived}-0", f"{last_archived}-0")
        if found and _s(found[0][1].get(b"hash", found[0][1].get("hash", b""))) != prev:
            return broken(last_archived, "the archived entry differs from the one Redis holds (entry replaced)")
    for seq, value in _anchors(audit, tenant).items():
        if seq <= redis_base and seq in archived and archived[seq] != value:
            return broken(seq, "entry differs from the anchored hash (chain rewritten)")
    head = redis_result.head_seq
    overlap = max(0, last_archived - redis_base)
    return VerifyResult(True, checked + redis_result.checked - overlap, head)


def _anchors(audit: AuditLog, tenant: str) -> dict[int, str]:
    raw = audit.redis.hgetall(anchors_key(tenant))
    return {int(_s(k)): _s(v).partition(":")[0] for k, v in raw.items()}


def _redis_refs(audit: AuditLog, tenant: str) -> set[int]:
    base = audit.redis.hget(base_key(tenant), "seq")
    return {int(base or 0), *_anchors(audit, tenant)}


def verify_tenant(audit: AuditLog, record: Record | None, tenant: str) -> VerifyResult:
    """What `dialer audit verify` runs: the whole chain when the record holds part of it, else Redis's part.
    A record that cannot be read fails the check (the archived part is unverified), except one never set up."""
    if record is None:
        return audit.verify(tenant)
    try:
        if not record.query("SELECT 1 FROM archive_progress WHERE tenant = %s", (tenant,)):
            return audit.verify(tenant)
        return verify_chain(audit, record, tenant)
    except RecordNotMigrated:
        return audit.verify(tenant)
    except RecordUnavailable as exc:
        redis_part = audit.verify(tenant)
        return VerifyResult(False, redis_part.checked, redis_part.head_seq, None,
                            f"the archived part cannot be read ({exc}); Redis's part: {redis_part}")
