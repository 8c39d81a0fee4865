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
from dialer.record.relink import breaks, hint, shift_of
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
    found = breaks(record, tenant)
    confirmed: list[str] = []

    def broken(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, redis_result.head_seq, seq, f"archived part: {problem}")

    if bases and audit._key and not hmac.compare_digest(str(bases[0][2] or ""),
                                                        audit._sign(tenant, expected - 1, prev)):
        return broken(expected, "the archive's start is not signed with our key (start cut off)")
    for b in found:
        if not b.signed(audit._key):
            return broken(b.seq, "a break of the chain is not signed with our key (not a confirmed data loss)")
    # the segment the walk starts in: breaks before the start were walked before retention removed them
    shift = 0
    pending = [b for b in found if b.seq >= expected]
    for b in found:
        if b.seq < expected:
            shift = b.shift

    def cross(seq: int) -> str | None:
        """At a break (the record seq `seq` starts its segment): check it joins what was walked; move on."""
        nonlocal prev, shift
        while pending and pending[0].seq == seq:
            b = pending.pop(0)
            if checked and (b.last_seq != seq - 1 or b.last_hash != prev):
                return "a break names another last archived entry than the one stored before it (entries removed)"
            if not checked and prev not in (b.last_hash, b.first_prev):
                return "the archive's start does not join the break after it"
            if pending and pending[0].seq == seq:  # superseded: lost again before an entry of it was archived
                confirmed.append(b.describe() + " (that trail was lost again before any of it was archived)")
                continue
            prev, shift = b.first_prev, b.shift
            confirmed.append(b.describe())
        return None

    archived: dict[int, str] = {}  # record seq -> hash, only where Redis may refer to it (its base, anchors)
    refs = _redis_refs(audit, tenant)
    wanted = {r + shift_of(found, r) for r in refs}
    segment_first: dict[int, str] = {b.seq: b.first_hash for b in found}
    while True:
        rows = record.query("SELECT seq, at, kind, actor, payload, written, body, prev, hash FROM audit_archive "
                            "WHERE tenant = %s AND seq >= %s ORDER BY seq LIMIT %s", (tenant, expected, PAGE))
        for seq, at, kind, actor, payload, written, body, entry_prev, entry_hash in rows:
            seq = int(seq)
            if seq != expected:
                return broken(expected, f"entry {expected} is missing (next archived entry is {seq})")
            if pending and pending[0].seq == seq:
                problem = cross(seq)
                if problem:
                    return broken(seq, problem)
                if segment_first[seq] != entry_hash:
                    return broken(seq, "the first entry after a confirmed break is not the one it names")
            if entry_prev != prev:
                return broken(seq, "link to the previous entry does not match (entry removed, replaced or reordered)")
            if body_hash(at, kind, actor, payload) != body:
                return broken(seq, "content altered (time, kind, actor or payload differs from what was recorded)")
            if link_hash(prev, seq - shift, str(written), body) != entry_hash:
                return broken(seq, "entry hash does not match its content (entry altered)")
            if seq in wanted:
                archived[seq] = entry_hash
            prev = entry_hash
            expected += 1
            checked += 1
        if len(rows) < PAGE:
            break
    last_archived = expected - 1
    if pending and pending[0].seq == expected:  # confirmed, nothing of the new segment archived yet
        problem = cross(expected)
        if problem:
            return broken(expected, problem)
    if pending:
        return broken(pending[0].seq, f"a break at seq {pending[0].seq} lies past the archive's end ({last_archived})")
    progress = record.query("SELECT seq FROM archive_progress WHERE tenant = %s", (tenant,))
    if progress and int(progress[0][0]) > last_archived:
        return broken(last_archived + 1, f"entries {last_archived + 1}..{int(progress[0][0])} were archived and are "
                                         "gone (archive truncated)")
    if not redis_result.ok:
        return VerifyResult(False, checked + redis_result.checked, redis_result.head_seq, redis_result.bad_seq,
                            f"Redis part: {redis_result.problem}")
    # From here on in Redis's numbering: the last archived entry is Redis's `last` (its fork, before the segment's
    # first entry is archived) and `prev` is the hash Redis's next entry must link to.
    at_break = bool(found) and last_archived < found[-1].seq
    last = (found[-1].first_seq - 1) if at_break else last_archived - shift
    base_seq, base_hash = audit.redis.hmget(base_key(tenant), "seq", "hash")
    redis_base = int(base_seq or 0)
    if redis_base > last:
        return broken(last_archived + 1, f"entries {last_archived + 1}.. (Redis {last + 1}..{redis_base}) are "
                                         "neither archived nor in Redis")
    following = audit.redis.xrange(stream_key(tenant), f"{last + 1}-0", f"{last + 1}-0")
    if following:
        fields = {_s(k): _s(v) for k, v in following[0][1].items()}
        if fields.get("prev") != prev:
            return broken(last_archived + 1, "Redis's next entry does not link to the last archived one (chain forked"
                                             f" after a data loss? {hint(tenant)})")
        if at_break and fields.get("hash") != found[-1].first_hash:
            return broken(last_archived + 1, "Redis's next entry is not the first entry the confirmed break names")
    elif redis_result.head_seq > last:
        return broken(last_archived + 1, f"Redis's entry {last + 1} is missing")
    if redis_result.head_seq < last:
        return broken(last_archived, f"Redis's trail ends at seq {redis_result.head_seq}, before the archived "
                                     f"Redis seq {last} (data loss? {hint(tenant)})")
    base_record = redis_base + shift_of(found, redis_base)
    if redis_base and checked and base_record in archived and archived[base_record] != _s(base_hash):
        return broken(base_record, "Redis's part does not continue the archived chain (different entry at the join)")
    if last and redis_result.head_seq >= last > redis_base:
        found_last = audit.redis.xrange(stream_key(tenant), f"{last}-0", f"{last}-0")
        if found_last and _s(found_last[0][1].get(b"hash", found_last[0][1].get("hash", b""))) != prev:
            return broken(last_archived, "the archived entry differs from the one Redis holds (entry replaced)")
    for seq, value in _anchors(audit, tenant).items():
        mapped = seq + shift_of(found, seq)
        if seq <= redis_base and mapped in archived and archived[mapped] != value:
            return broken(mapped, "entry differs from the anchored hash (chain rewritten)")
    head = redis_result.head_seq
    overlap = max(0, last - redis_base)
    return VerifyResult(True, checked + redis_result.checked - overlap, head, breaks=tuple(confirmed))


def _anchors(audit: AuditLog, tenant: str) -> dict[int, str]:
    raw = audit.redis.hgetall(anchors_key(tenant))
    return {int(_s(k)): _s(v).partition(":")[0] for k, v in raw.items()}


def _redis_refs(audit: AuditLog, tenant: str) -> set[int]:
    """Redis seqs Redis refers to (its base, its anchors)."""
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
