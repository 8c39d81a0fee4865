"""The tenant's audit trail: an append-only, hash-chained log in Redis.

Every entry carries the hash of the one before it, so an entry that is altered, removed, reordered,
or cut off the end breaks the chain and `verify` names the first sequence number where it breaks.

Keys (per tenant):
  t:{T}:audit          stream; entry id "{seq}-0"; fields seq, at, kind, actor, payload, written, body, prev, hash
  t:{T}:audit:head     hash {seq, hash}: the chain head, written in the same script as the entry
  t:{T}:audit:base     hash {seq, hash}: where the retained chain starts after a retention trim (absent: genesis)
  t:{T}:audit:anchors  hash seq -> "hash:hmac": heads signed with security.secret_key (see anchor())

Hashes (why two, see docs/audit.md):
  body = sha256(netstrings at, kind, actor, payload)      computed here, in Python
  hash = sha1(prev "\\n" seq "\\n" written "\\n" body)      computed in the Lua append script
Appends run in one Lua script: reading the head, numbering, linking and writing the entry and the new
head happen atomically in Redis, so appends from any number of processes form one ordered chain, and
the gate can append in the same script that reserves an attempt (a reservation is never unaudited).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
import redis

from rules.model import utc

KINDS = (
    "gate_decision", "gate_release", "call_outcome", "optout", "consent", "import", "registry_load",
    "campaign_control", "token_use", "export", "access", "rectification", "erasure", "retention", "api",
    "runtime_resume", "usage_plan", "hold", "subject_request", "campaign_dialing", "usage",
)
GENESIS = "0" * 40  # prev of the first entry
_FIELDS_PER_ENTRY = 5  # at, kind, actor, payload, body


def stream_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:audit"


def head_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:audit:head"


def base_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:audit:base"


def anchors_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:audit:anchors"


# Lua shared by the plain append script and the gate's scripts. audit_open reads the chain head (nil when
# the head is lost while the stream exists: the caller must refuse before writing anything), audit_add
# links and writes one entry, audit_close stores the new head. All within one script, hence atomic.
# Lua formats numbers with %.14g: seq stays far below 1e14, so tostring(seq) is the plain integer.
AUDIT_LUA = r"""
local function audit_open(stream, head)
  local h = redis.call('HMGET', head, 'seq', 'hash')
  local seq = tonumber(h[1])
  local prev = h[2]
  if not seq then
    if redis.call('EXISTS', stream) == 1 then return nil end
    seq = 0
    prev = '0000000000000000000000000000000000000000'
  end
  local t = redis.call('TIME')
  local written = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
  return {stream = stream, head = head, seq = seq, prev = prev, written = written, n = 0}
end

local function audit_add(a, at, kind, actor, payload, body)
  a.seq = a.seq + 1
  a.n = a.n + 1
  local s = tostring(a.seq)
  local hash = redis.sha1hex(a.prev .. '\n' .. s .. '\n' .. a.written .. '\n' .. body)
  redis.call('XADD', a.stream, s .. '-0', 'seq', s, 'at', at, 'kind', kind, 'actor', actor,
    'payload', payload, 'written', a.written, 'body', body, 'prev', a.prev, 'hash', hash)
  a.prev = hash
  return s, hash
end

local function audit_close(a)
  if a.n > 0 then redis.call('HSET', a.head, 'seq', tostring(a.seq), 'hash', a.prev) end
end

local AUDIT_LOST = 'AUDIT head missing for an existing trail: refusing to fork the chain'
"""

_APPEND = AUDIT_LUA + r"""
local a = audit_open(KEYS[1], KEYS[2])
if not a then return redis.error_reply(AUDIT_LOST) end
local out = {}
for i = 0, tonumber(ARGV[1]) - 1 do
  local b = 2 + i * 5
  local s, hash = audit_add(a, ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4])
  out[#out + 1] = s
  out[#out + 1] = hash
end
audit_close(a)
return out
"""

# Retention: drop entries below seq ARGV[1] and record where the retained chain starts: the link (prev) of
# the first entry kept, signed by the caller (ARGV[3]). ARGV[2] is the prev the caller signed: if the entry
# changed meanwhile nothing is trimmed.
_TRIM = r"""
local first = redis.call('XRANGE', KEYS[1], ARGV[1] .. '-0', ARGV[1] .. '-0')
if #first == 0 then return -1 end
local fields = first[1][2]
local prev
for i = 1, #fields, 2 do
  if fields[i] == 'prev' then prev = fields[i + 1] end
end
if prev ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[2], 'seq', tostring(tonumber(ARGV[1]) - 1), 'hash', prev, 'mac', ARGV[3])
return redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1] .. '-0')
"""


@lru_cache(maxsize=4096)
def iso(value: datetime) -> str:
    return utc(value).isoformat().replace("+00:00", "Z")


_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def canonical(payload: Mapping[str, Any]) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8; instants as UTC ISO strings ending in Z."""
    try:
        return orjson.dumps(payload, option=_JSON_OPTIONS, default=_json_default).decode()
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"audit payload: {exc}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def body_hash(at: str, kind: str, actor: str, payload: str) -> str:
    """sha256 over the four fields as netstrings (`<byte length>:<UTF-8 bytes>,` each): unambiguous and easy
    to recompute in any language."""
    a, k, c, p = at.encode(), kind.encode(), actor.encode(), payload.encode()
    return hashlib.sha256(b"%d:%s,%d:%s,%d:%s,%d:%s," % (len(a), a, len(k), k, len(c), c, len(p), p)).hexdigest()


def link_hash(prev: str, seq: int | str, written: str, body: str) -> str:
    return hashlib.sha1(f"{prev}\n{seq}\n{written}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class AuditEvent:
    """Something to record. `at` is when it happened (the caller's clock, passed in)."""

    kind: str
    actor: str
    payload: Mapping[str, Any]
    at: datetime

    def argv(self) -> list[str]:
        """The five script arguments of this event: at, kind, actor, payload, body."""
        if self.kind not in KINDS:
            raise ValueError(f"audit kind {self.kind!r} is not one of {', '.join(KINDS)}")
        at, payload = iso(self.at), canonical(self.payload)
        return [at, self.kind, self.actor, payload, body_hash(at, self.kind, self.actor, payload)]


@dataclass(frozen=True)
class Appended:
    seq: int
    hash: str


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    kind: str
    actor: str
    payload: dict[str, Any]
    written: datetime  # Redis server time of the append
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # entries examined
    head_seq: int  # the chain head's seq (0 when empty)
    bad_seq: int | None = None  # first seq where the chain is broken
    problem: str = ""  # what is wrong there, for people
    # confirmed discontinuities after a Redis data loss, for people (the record's audit_breaks: dialer/record/relink.py)
    breaks: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.ok and self.breaks:
            n = len(self.breaks)
            return (f"audit trail intact: {self.checked} entries, head seq {self.head_seq}, with {n} confirmed "
                    f"break{'s' if n > 1 else ''} after a data loss: " + "; ".join(self.breaks))
        if self.ok:
            return f"audit trail intact: {self.checked} entries, head seq {self.head_seq}"
        return f"audit trail BROKEN at seq {self.bad_seq}: {self.problem}"


def _entry(fields: dict[str, str]) -> AuditEntry:
    def number(name: str) -> int:
        try:
            return int(fields.get(name, "0"))
        except ValueError:
            return 0

    try:
        payload = json.loads(fields.get("payload", "{}"))
        if not isinstance(payload, dict):
            raise ValueError
    except ValueError:
        payload = {"_raw": fields.get("payload", "")}
    try:
        at = datetime.fromisoformat(fields.get("at", "").replace("Z", "+00:00"))
    except ValueError:
        at = datetime.fromtimestamp(0, UTC)
    return AuditEntry(seq=number("seq"), at=at, kind=fields.get("kind", ""), actor=fields.get("actor", ""),
                      payload=payload, written=datetime.fromtimestamp(number("written") / 1000, UTC),
                      hash=fields.get("hash", ""))


def parse_appended(flat: Sequence[Any]) -> list[Appended]:
    return [Appended(int(flat[i]), _s(flat[i + 1])) for i in range(0, len(flat), 2)]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AuditLog:
    """Append to and verify tenants' audit trails. `secret_key` (setting security.secret_key) keys the
    person references (HMAC of the phone number) and the head anchors; appending works without it."""

    def __init__(self, client: redis.Redis, secret_key: str | bytes = b"") -> None:
        self.redis = client
        self._key = secret_key.encode() if isinstance(secret_key, str) else secret_key
        self._append = client.register_script(_APPEND)
        self._refs = lru_cache(maxsize=200_000)(self._person_ref)
        self._trim = client.register_script(_TRIM)

    # --- personal data --------------------------------------------------------------------------

    def person_ref(self, e164: str) -> str:
        """A keyed hash of the number: stable for lookups (access requests, suppression), useless to a
        reader without the key, and it survives the person's erasure."""
        return self._refs(e164)

    def _person_ref(self, e164: str) -> str:
        if not self._key:
            raise ValueError("setting security.secret_key is required to reference people in the audit trail")
        return hmac.new(self._key, e164.encode(), hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def mask(e164: str) -> str:
        """+33145678901 -> +33*******01: enough for a person to recognise, too little to dial."""
        if len(e164) < 6:
            return "*" * len(e164)
        return e164[:3] + "*" * (len(e164) - 5) + e164[-2:]

    # --- appending ------------------------------------------------------------------------------

    def append(self, tenant: str, kind: str, actor: str, payload: Mapping[str, Any], at: datetime) -> Appended:
        return self.append_many(tenant, [AuditEvent(kind, actor, payload, at)])[0]

    def append_many(self, tenant: str, events: Sequence[AuditEvent]) -> list[Appended]:
        """Append events in order, atomically (all or none, consecutive seqs)."""
        if not events:
            return []
        return parse_appended(self._append(keys=self.keys(tenant), args=self.argv(events), client=self.redis))

    def queue(self, pipe: Any, tenant: str, events: Sequence[AuditEvent]) -> None:
        """Queue an append on a caller's pipeline (its result is the flat seq/hash list: parse_appended)."""
        self._append(keys=self.keys(tenant), args=self.argv(events), client=pipe)

    @staticmethod
    def keys(tenant: str) -> list[str]:
        return [stream_key(tenant), head_key(tenant)]

    @staticmethod
    def argv(events: Sequence[AuditEvent]) -> list[str]:
        args: list[str] = [str(len(events))]
        for event in events:
            args.extend(event.argv())
        return args

    # --- reading --------------------------------------------------------------------------------

    def head(self, tenant: str) -> Appended:
        seq, value = self.redis.hmget(head_key(tenant), "seq", "hash")
        return Appended(int(seq or 0), _s(value) if value else GENESIS)

    def entries(self, tenant: str, first: int = 1, last: int | None = None, batch: int = 1000) -> Iterator[AuditEntry]:
        """Entries in seq order, as stored. A damaged entry is still returned (unparseable parts become
        empty values and the raw payload is kept under "_raw"): run verify to know whether to trust them."""
        for _, fields in self._raw(tenant, first, last, batch):
            yield _entry(fields)

    def _raw(self, tenant: str, first: int = 1, last: int | None = None,
             batch: int = 1000) -> Iterator[tuple[str, dict[str, str]]]:
        start = f"{max(first, 0)}-0"
        end = "+" if last is None else f"{last}-0"
        key = stream_key(tenant)
        while True:
            chunk = self.redis.xrange(key, start, end, count=batch)
            for entry_id, fields in chunk:
                yield _s(entry_id), {_s(k): _s(v) for k, v in fields.items()}
            if len(chunk) < batch:
                return
            start = "(" + _s(chunk[-1][0])

    # --- verifying ------------------------------------------------------------------------------

    def verify(self, tenant: str) -> VerifyResult:
        """Walk the chain from its base to its head; the first inconsistency is reported with its seq."""
        base_seq, base_hash, base_mac = self.redis.hmget(base_key(tenant), "seq", "hash", "mac")
        expected = int(base_seq or 0) + 1
        prev = _s(base_hash) if base_hash else GENESIS
        head = self.head(tenant)
        checked = 0

        def broken(seq: int, problem: str) -> VerifyResult:
            return VerifyResult(False, checked, head.seq, seq, problem)

        if base_seq is not None and self._key and not hmac.compare_digest(
                _s(base_mac or b""), self._sign(tenant, expected - 1, prev)):
            return broken(expected, "the retention start of the trail is not signed with our key (start cut off)")

        for entry_id, f in self._raw(tenant):
            try:
                seq = int(f["seq"])
                fields = (f["at"], f["kind"], f["actor"], f["payload"], f["written"], f["body"], f["prev"], f["hash"])
            except (KeyError, ValueError):
                return broken(expected, f"entry {entry_id} is malformed (missing or bad fields)")
            at, kind, actor, payload, written, body, entry_prev, entry_hash = fields
            if seq > expected:
                return broken(expected, f"entry {expected} is missing (next entry found is {seq})")
            if seq < expected or entry_id != f"{seq}-0":
                return broken(expected, f"entry {entry_id} (seq {seq}) is out of order where {expected} belongs")
            if entry_prev != prev:
                return broken(seq, "link to the previous entry does not match (entry removed, replaced or reordered)")
            if body_hash(at, kind, actor, payload) != body:
                return broken(seq, "content altered (time, kind, actor or payload differs from what was recorded)")
            if link_hash(prev, seq, written, body) != entry_hash:
                return broken(seq, "entry hash does not match its content (entry altered)")
            prev = entry_hash
            expected += 1
            checked += 1
        last = expected - 1
        if head.seq > last:
            return broken(last + 1, f"entries {last + 1}..{head.seq} are missing (trail truncated)")
        if head.seq < last:
            return broken(head.seq + 1, f"entries after the recorded head {head.seq} were added outside the chain")
        if head.seq and head.hash != prev:
            return broken(head.seq, "the recorded head hash does not match the last entry (entry altered)")
        anchored = self._check_anchors(tenant, last)
        if anchored is not None:
            return broken(*anchored)
        return VerifyResult(True, checked, head.seq)

    # --- anchoring ------------------------------------------------------------------------------

    def _sign(self, tenant: str, seq: int, value: str) -> str:
        return hmac.new(self._key, f"{tenant}\n{seq}\n{value}".encode(), hashlib.sha256).hexdigest()

    def anchor(self, tenant: str) -> Appended:
        """Sign the current head with the secret key and keep it. Someone able to write to Redis but
        without the key can rewrite the whole chain consistently, but not the anchors: verify then sees
        the anchored hashes disagree. Copy anchors elsewhere (an export, a ticket) to protect against
        deletion as well."""
        if not self._key:
            raise ValueError("setting security.secret_key is required to anchor the audit trail")
        head = self.head(tenant)
        if head.seq:
            signed = f"{head.hash}:{self._sign(tenant, head.seq, head.hash)}"
            self.redis.hset(anchors_key(tenant), str(head.seq), signed)
        return head

    def _check_anchors(self, tenant: str, last: int) -> tuple[int, str] | None:
        anchors = {int(_s(k)): _s(v) for k, v in self.redis.hgetall(anchors_key(tenant)).items()}
        if not anchors:
            return None
        base = int(self.redis.hget(base_key(tenant), "seq") or 0)
        for seq in sorted(anchors):
            value, _, mac = anchors[seq].partition(":")
            if self._key and not hmac.compare_digest(mac, self._sign(tenant, seq, value)):
                return seq, "anchor signature invalid (anchor forged or altered)"
            if seq <= base:
                continue  # trimmed by retention
            if seq > last:
                return last + 1, f"entries up to anchored seq {seq} are missing (trail truncated)"
            found = self.redis.xrange(stream_key(tenant), f"{seq}-0", f"{seq}-0")
            fields = {_s(k): _s(v) for k, v in found[0][1].items()} if found else {}
            if fields.get("hash") != value:
                return seq, "entry differs from the anchored hash (chain rewritten)"
        return None

    # --- retention ------------------------------------------------------------------------------

    def trim_before(self, tenant: str, seq: int) -> int:
        """Drop entries with seq < `seq` (retention), recording where the retained chain starts so that
        verify still checks every link that remains. The start is signed with the secret key (when set), so
        nobody can cut the beginning of the trail and pass it off as retention. Entry `seq` must exist.
        Returns the number of entries removed."""
        found = self.redis.xrange(stream_key(tenant), f"{seq}-0", f"{seq}-0")
        if not found:
            raise ValueError(f"audit trail of {tenant}: no entry {seq} to keep as the new start")
        prev = _s({_s(k): v for k, v in found[0][1].items()}.get("prev", b""))
        mac = self._sign(tenant, seq - 1, prev) if self._key else ""
        removed = int(self._trim(keys=[stream_key(tenant), base_key(tenant)], args=[str(seq), prev, mac],
                                 client=self.redis))
        if removed < 0:
            raise RuntimeError(f"audit trail of {tenant}: entry {seq} changed while trimming; nothing trimmed")
        return removed


# --- asyncio callers (the gateway) ---------------------------------------------------------------

APPEND_SHA = hashlib.sha1(_APPEND.encode()).hexdigest()

# The gateway's trail actions ("token.use", "campaign.pause", "optout.add" ...) by their first part.
ACTION_KINDS = {
    "token": "token_use", "campaign": "campaign_control", "optout": "optout", "consent": "consent",
    "import": "import", "export": "export", "registry": "registry_load", "subject": "access",
    "access": "access", "rectification": "rectification", "erasure": "erasure", "retention": "retention",
    # Console sign-in: who could reach the API with which credential, like token use.
    "login": "token_use", "session": "token_use", "mfa": "token_use", "password": "token_use",
}


async def append_async(client: Any, tenant: str, events: Sequence[AuditEvent]) -> list[Appended]:
    """AuditLog.append_many for a redis.asyncio client (same script, same chain)."""
    if not events:
        return []
    keys, args = AuditLog.keys(tenant), AuditLog.argv(events)
    try:
        flat = await client.evalsha(APPEND_SHA, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        flat = await client.eval(_APPEND, len(keys), *keys, *args)
    return parse_appended(flat)


def event_from_trail(event: Mapping[str, Any]) -> AuditEvent:
    """An event of gateway.trail.record ({action, actor, token, at, details}) as an audit event."""
    action = str(event.get("action", ""))
    kind = ACTION_KINDS.get(action.split(".", 1)[0], "api")
    at = datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00"))
    payload = {"action": action, "token": event.get("token", ""), **dict(event.get("details") or {})}
    return AuditEvent(kind, str(event.get("actor", "")), payload, at)


async def trail_sink(client: Any, tenant: str, event: Mapping[str, Any]) -> None:
    """A gateway.trail sink writing straight into the tenant's chain: `trail.set_sink(trail_sink)`."""
    await append_async(client, tenant, [event_from_trail(event)])
