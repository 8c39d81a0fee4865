"""Contact queues of a campaign in Redis: ready (by priority), waiting (scheduled retries), in flight (claimed
with an owner and a lease), final (left the queue, with the reason).

Every move is one Lua script, so several dialer processes can share a queue: a contact is claimed by one of
them only (ZPOPMIN inside the script), and only the claim's holder, identified by the call id it was given,
can settle it (a process that lost its claim to a takeover cannot settle it a second time).

Keys (tenant-owned), prefix `t:{T}:campaign:{C}:q:`:
  ready      zset  contact id -> (9 - priority) * 1e10 + due time (lowest first: priority, then oldest due)
  wait       zset  contact id -> due time (UNIX seconds of the campaign clock): retries and gate `next_allowed_at`
  inflight   zset  contact id -> lease expiry (UNIX seconds, Redis's clock)
  claims     hash  contact id -> JSON {owner, call_id, server, claimed_at, lease}
  state      hash  contact id -> ready | wait | inflight | final   (every contact the queue ever held)
  data       hash  contact id -> JSON {phone, country, postal_code, state, zones, priority}: what the gate needs
  attempts   hash  contact id -> calls placed so far by this campaign
  final      hash  contact id -> JSON {reason, detail, at, attempts, disposition}: why the contact left
  phones     hash  E.164 -> contact id (one contact per number per campaign: a number is never queued twice)
  last       hash  contact id -> JSON of the last step (retry/denial reason and when): "why not called yet"

Times: due times are the campaign clock (injected: tests and demos run at a fixed instant); leases are UNIX
seconds on Redis's clock (the engine's `_lease_clock`: they measure whether a process is still alive, not the law,
and are compared by processes on machines whose clocks may drift).
Synchronous client (like dialer/facts.py); the engine calls it through asyncio.to_thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PRIORITY_SPAN = 1e10  # larger than any UNIX time in seconds until 2286: priority dominates, then the due time
MAX_PRIORITY = 9
PROMOTE_BATCH = 1000  # due retries moved to ready per claim call (bounds the script's run time)

STATES = ("ready", "wait", "inflight", "final")


def queue_prefix(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:q:"


def ready_score(priority: int, due: float) -> float:
    return (MAX_PRIORITY - priority) * PRIORITY_SPAN + due


@dataclass(frozen=True)
class QueuedContact:
    """What the engine needs to decide and dial one contact."""

    contact_id: str
    phone: str
    country: str | None = None
    postal_code: str | None = None
    state: str | None = None
    zones: tuple[str, ...] = ()
    priority: int = 0

    def data_json(self) -> str:
        return json.dumps({"phone": self.phone, "country": self.country, "postal_code": self.postal_code,
                           "state": self.state, "zones": list(self.zones), "priority": self.priority},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, contact_id: str, text: str | bytes) -> QueuedContact:
        d = json.loads(text)
        return cls(contact_id, d["phone"], d.get("country"), d.get("postal_code"), d.get("state"),
                   tuple(d.get("zones") or ()), int(d.get("priority") or 0))


@dataclass(frozen=True)
class Claim:
    """A contact claimed by a process: it alone may reserve, dial and settle it (with this call id)."""

    contact: QueuedContact
    call_id: str
    server: str
    owner: str
    claimed_at: float  # campaign clock
    attempts: int  # calls already placed before this one


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# Load contacts; a contact already known (in any state) is left alone; a second contact with a number already in
# the campaign is finalized as a duplicate. KEYS: ready state data phones final. ARGV: at, then per contact
# id, e164, data json, ready score. Returns {added, known, duplicates}.
_LOAD = r"""
local added, known, dup = 0, 0, 0
for i = 2, #ARGV, 4 do
  local id, e, data, score = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HSETNX', KEYS[2], id, 'ready') == 0 then
    known = known + 1
  else
    local other = redis.call('HGET', KEYS[4], e)
    if other and other ~= id then
      redis.call('HSET', KEYS[2], id, 'final')
      redis.call('HSET', KEYS[5], id, cjson.encode({reason = 'duplicate_number', detail = other, at = tonumber(ARGV[1]),
                                                  attempts = 0}))
      dup = dup + 1
    else
      redis.call('HSET', KEYS[4], e, id)
      redis.call('HSET', KEYS[3], id, data)
      redis.call('ZADD', KEYS[1], score, id)
      added = added + 1
    end
  end
end
return {added, known, dup}
"""

# Erase a number from the queue (data subject erasure, dialer/privacy.py). KEYS: ready wait state data phones
# last final attempts. ARGV: e164, at (campaign clock seconds). A contact waiting to be called leaves the queue as
# final (reason "erased") and its data goes; a final one loses its data. A contact in flight keeps its data (the
# call under way settles with it; the gate denies any new reservation): returns 2 so the eraser says to run again.
# Returns 0 (number not in this queue), 1 (erased) or 2 (in flight).
_ERASE = r"""
local id = redis.call('HGET', KEYS[5], ARGV[1])
if not id then return 0 end
local st = redis.call('HGET', KEYS[3], id)
if st == 'inflight' then return 2 end
redis.call('ZREM', KEYS[1], id)
redis.call('ZREM', KEYS[2], id)
if st ~= 'final' then
  redis.call('HSET', KEYS[3], id, 'final')
  redis.call('HSET', KEYS[7], id, cjson.encode({reason = 'erased', detail = '', at = tonumber(ARGV[2]),
                                              attempts = tonumber(redis.call('HGET', KEYS[8], id)) or 0}))
end
redis.call('HDEL', KEYS[4], id)
redis.call('HDEL', KEYS[6], id)
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
"""


def queue_erase(client: Any, pipe: Any, tenant: str, campaign: str, e164: str, at: float) -> None:
    """Queue the erasure of a number from one campaign's queue on the caller's transaction `pipe` (its reply:
    0 not queued here, 1 erased, 2 in flight: run the erasure again once the call ended)."""
    keys = [queue_prefix(tenant, campaign) + n for n in ("ready", "wait", "state", "data", "phones", "last", "final",
                                                        "attempts")]
    client.register_script(_ERASE)(keys=keys, args=[e164, at], client=pipe)


# Claim up to n contacts: first promote due retries to ready, then pop the best n. KEYS: ready wait inflight claims
# state data attempts. ARGV: now (campaign clock), lease expiry (wall), owner, n, then n pairs call id, server.
# Returns per claimed contact: id, data json, attempts so far, call id, server.
_CLAIM = r"""
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, """ + str(PROMOTE_BATCH) + r""")
for i = 1, #due, 2 do
  local id, at = due[i], tonumber(due[i + 1])
  local pr = 0
  local data = redis.call('HGET', KEYS[6], id)
  if data then pr = tonumber(cjson.decode(data)['priority']) or 0 end
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], (""" + str(MAX_PRIORITY) + r""" - pr) * """ + repr(PRIORITY_SPAN) + r""" + at, id)
  redis.call('HSET', KEYS[5], id, 'ready')
end
local n = tonumber(ARGV[4])
local out = {}
if n <= 0 then return out end
local popped = redis.call('ZPOPMIN', KEYS[1], n)
local j = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  local call, server = ARGV[5 + j * 2], ARGV[6 + j * 2]
  j = j + 1
  redis.call('ZADD', KEYS[3], ARGV[2], id)
  redis.call('HSET', KEYS[4], id, cjson.encode({owner = ARGV[3], call_id = call, server = server,
                                                claimed_at = now, lease = tonumber(ARGV[2])}))
  redis.call('HSET', KEYS[5], id, 'inflight')
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[6], id) or ''
  out[#out + 1] = redis.call('HGET', KEYS[7], id) or '0'
  out[#out + 1] = call
  out[#out + 1] = server
end
return out
"""

# Settle a claim, only if it is still held with this call id. KEYS: ready wait inflight claims state attempts final
# last. ARGV: id, call id, action (retry|requeue|final), count attempt (0|1), due (retry/requeue), ready score
# (requeue), final json (final), last json. Returns 1 settled, 0 not held (already settled or taken over).
_SETTLE = r"""
local id = ARGV[1]
local raw = redis.call('HGET', KEYS[4], id)
if not raw then return 0 end
if cjson.decode(raw)['call_id'] ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
local attempts = tonumber(redis.call('HGET', KEYS[6], id) or '0')
if ARGV[4] == '1' then attempts = redis.call('HINCRBY', KEYS[6], id, 1) end
local action = ARGV[3]
if action == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[5], id)
  redis.call('HSET', KEYS[5], id, 'wait')
elseif action == 'requeue' then
  redis.call('ZADD', KEYS[1], ARGV[6], id)
  redis.call('HSET', KEYS[5], id, 'ready')
else
  local final = cjson.decode(ARGV[7])
  final['attempts'] = attempts
  redis.call('HSET', KEYS[7], id, cjson.encode(final))
  redis.call('HSET', KEYS[5], id, 'final')
end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[8], id, ARGV[8]) end
return 1
"""

# Extend the leases of claims this owner still holds. KEYS: inflight claims. ARGV: owner, expiry, ids...
_RENEW = r"""
local n = 0
for i = 3, #ARGV do
  local raw = redis.call('HGET', KEYS[2], ARGV[i])
  if raw then
    local claim = cjson.decode(raw)
    if claim['owner'] == ARGV[1] then
      claim['lease'] = tonumber(ARGV[2])
      redis.call('HSET', KEYS[2], ARGV[i], cjson.encode(claim))
      redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
      n = n + 1
    end
  end
end
return n
"""

# Take over claims whose lease expired (their process died or stalled). KEYS: inflight claims data attempts.
# ARGV: now (wall), new owner, new expiry, limit. Returns per claim: id, old claim json, data json, attempts.
_TAKEOVER = r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local claim = cjson.decode(raw)
    claim['previous_owner'] = claim['owner']
    claim['owner'] = ARGV[2]
    claim['lease'] = tonumber(ARGV[3])
    redis.call('HSET', KEYS[2], id, cjson.encode(claim))
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    out[#out + 1] = id
    out[#out + 1] = raw
    out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
    out[#out + 1] = redis.call('HGET', KEYS[4], id) or '0'
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""


@dataclass(frozen=True)
class TakenOver:
    claim: Claim
    previous_owner: str


class ContactQueue:
    """One campaign's contact queue (see the module docstring for the layout)."""

    def __init__(self, client: Any, tenant: str, campaign: str) -> None:
        if not tenant or ":" in tenant or not campaign or ":" in campaign:
            raise ValueError("tenant and campaign must be non-empty ids without ':'")
        self.redis = client
        self.tenant = tenant
        self.campaign = campaign
        p = queue_prefix(tenant, campaign)
        self.keys = {name: p + name for name in
                     ("ready", "wait", "inflight", "claims", "state", "data", "attempts", "final", "phones", "last")}
        self._load = client.register_script(_LOAD)
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)
        self._renew = client.register_script(_RENEW)
        self._takeover = client.register_script(_TAKEOVER)

    def _k(self, *names: str) -> list[str]:
        return [self.keys[n] for n in names]

    # --- filling ---------------------------------------------------------------------------------

    def add(self, contacts: Iterable[QueuedContact], *, at: float, batch: int = 500, order_from: int = 0,
            ) -> dict[str, int]:
        """Queue contacts (ready now, by priority, in the order given; `order_from`: how many were given before in
        the same load). Idempotent: known contacts are left where they are."""
        totals = {"added": 0, "known": 0, "duplicates": 0}
        chunk: list[str] = []

        def flush() -> None:
            if not chunk:
                return
            added, known, dup = self._load(keys=self._k("ready", "state", "data", "phones", "final"),
                                           args=[at, *chunk])
            totals["added"] += int(added)
            totals["known"] += int(known)
            totals["duplicates"] += int(dup)
            chunk.clear()

        for n, c in enumerate(contacts, start=order_from):
            priority = max(0, min(MAX_PRIORITY, c.priority))
            # 1 ms apart (scores are exact to ~1e-5 s): one priority is dialed in the order given, not by id
            chunk += [c.contact_id, c.phone, c.data_json(), repr(ready_score(priority, at + n * 1e-3))]
            if len(chunk) >= batch * 4:
                flush()
        flush()
        return totals

    def finalize_unqueued(self, contact_id: str, reason: str, detail: str, at: float) -> bool:
        """Record a contact that cannot even be queued (no valid number) as final, with its reason."""
        if not self.redis.hsetnx(self.keys["state"], contact_id, "final"):
            return False
        self.redis.hset(self.keys["final"], contact_id, json.dumps(
            {"reason": reason, "detail": detail, "at": at, "attempts": 0}, separators=(",", ":")))
        return True

    # --- claiming and settling -------------------------------------------------------------------

    def claim(self, n: int, *, owner: str, now: float, lease_until: float, call_ids: Sequence[str],
              servers: Sequence[str]) -> list[Claim]:
        """Claim up to n ready contacts (due retries first become ready). `call_ids`/`servers`: one per slot."""
        return self.parse_claims(self.claim_on(None, n, owner=owner, now=now, lease_until=lease_until,
                                               call_ids=call_ids, servers=servers), owner=owner, now=now)

    def claim_on(self, pipe: Any, n: int, *, owner: str, now: float, lease_until: float, call_ids: Sequence[str],
                 servers: Sequence[str]) -> Any:
        """The claim script, run now (pipe None: its raw reply) or queued on a pipeline (e.g. in the same MULTI as
        the data-state check, dialer/runtime/datastate.py); parse_claims() reads the reply."""
        if n > len(call_ids) or n > len(servers):
            raise ValueError("one call id and one server per claimed contact")
        args: list[Any] = [now, lease_until, owner, n]
        for i in range(n):
            args += [call_ids[i], servers[i]]
        return self._claim(keys=self._k("ready", "wait", "inflight", "claims", "state", "data", "attempts"),
                           args=args, client=pipe)

    @staticmethod
    def parse_claims(raw: Any, *, owner: str, now: float) -> list[Claim]:
        out = []
        for i in range(0, len(raw), 5):
            cid = _s(raw[i])
            out.append(Claim(QueuedContact.from_json(cid, raw[i + 1]), _s(raw[i + 3]), _s(raw[i + 4]), owner, now,
                             int(raw[i + 2])))
        return out

    def promote_due(self, now: float) -> None:
        """Move due retries to ready without claiming (for accurate depth figures)."""
        self.claim(0, owner="", now=now, lease_until=0, call_ids=(), servers=())

    def _settle_call(self, contact_id: str, call_id: str, action: str, *, count_attempt: bool, due: float = 0.0,
                     priority: int = 0, final: dict[str, Any] | None = None,
                     last: dict[str, Any] | None = None) -> bool:
        args = [contact_id, call_id, action, "1" if count_attempt else "0", repr(due),
                repr(ready_score(priority, due)),
                json.dumps(final or {}, separators=(",", ":")),
                json.dumps(last, separators=(",", ":")) if last else ""]
        return bool(self._settle(keys=self._k("ready", "wait", "inflight", "claims", "state", "attempts", "final",
                                              "last"), args=args))

    def retry(self, claim: Claim, due: float, *, reason: str, count_attempt: bool, at: float) -> bool:
        """Back to the waiting set until `due` (a retry rule, or the gate's next_allowed_at)."""
        return self._settle_call(claim.contact.contact_id, claim.call_id, "retry", count_attempt=count_attempt,
                                 due=due, last={"step": "retry", "reason": reason, "at": at, "due": due})

    def requeue(self, claim: Claim, *, reason: str, at: float) -> bool:
        """Back to ready at once, no attempt counted (the call was never placed)."""
        return self._settle_call(claim.contact.contact_id, claim.call_id, "requeue", count_attempt=False, due=at,
                                 priority=claim.contact.priority, last={"step": "requeue", "reason": reason, "at": at})

    def finish(self, claim: Claim, *, reason: str, at: float, count_attempt: bool, detail: str = "",
               disposition: str | None = None) -> bool:
        """The contact leaves the queue for good, with its reason."""
        final = {"reason": reason, "detail": detail, "at": at, "disposition": disposition}
        return self._settle_call(claim.contact.contact_id, claim.call_id, "final", count_attempt=count_attempt,
                                 final=final, last={"step": "final", "reason": reason, "at": at})

    def renew(self, owner: str, contact_ids: Sequence[str], lease_until: float) -> int:
        """Extend this owner's leases; returns how many it still holds."""
        if not contact_ids:
            return 0
        return int(self._renew(keys=self._k("inflight", "claims"), args=[owner, lease_until, *contact_ids]))

    def take_over_expired(self, *, owner: str, now_wall: float, lease_until: float, limit: int = 100,
                          ) -> list[TakenOver]:
        """Claims whose lease expired become this owner's (with their call id and server, to be resolved)."""
        raw = self._takeover(keys=self._k("inflight", "claims", "data", "attempts"),
                             args=[now_wall, owner, lease_until, limit])
        out = []
        for i in range(0, len(raw), 4):
            cid = _s(raw[i])
            old = json.loads(raw[i + 1])
            if not raw[i + 2]:
                continue
            claim = Claim(QueuedContact.from_json(cid, raw[i + 2]), old["call_id"], old.get("server") or "", owner,
                          float(old.get("claimed_at") or 0), int(raw[i + 3]))
            out.append(TakenOver(claim, old.get("owner") or ""))
        return out

    # --- reading ---------------------------------------------------------------------------------

    def counts(self, now: float | None = None) -> dict[str, int]:
        """ready, waiting (due_now among them), in flight, final."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.keys["ready"])
        pipe.zcard(self.keys["wait"])
        pipe.zcount(self.keys["wait"], "-inf", now if now is not None else "-inf")
        pipe.zcard(self.keys["inflight"])
        pipe.hlen(self.keys["final"])
        ready, wait, due, inflight, final = pipe.execute()
        return {"ready": int(ready), "waiting": int(wait), "due": int(due) if now is not None else 0,
                "inflight": int(inflight), "final": int(final)}

    def state_of(self, contact_id: str) -> str | None:
        raw = self.redis.hget(self.keys["state"], contact_id)
        return None if raw is None else _s(raw)

    def final_state(self, contact_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(self.keys["final"], contact_id)
        return None if raw is None else json.loads(raw)

    def final_states(self) -> dict[str, dict[str, Any]]:
        return {_s(k): json.loads(v) for k, v in self.redis.hscan_iter(self.keys["final"], count=1000)}

    def last_step(self, contact_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(self.keys["last"], contact_id)
        return None if raw is None else json.loads(raw)

    def attempts(self, contact_id: str) -> int:
        return int(self.redis.hget(self.keys["attempts"], contact_id) or 0)

    def claims(self) -> dict[str, dict[str, Any]]:
        return {_s(k): json.loads(v) for k, v in self.redis.hgetall(self.keys["claims"]).items()}

    def next_due(self) -> float | None:
        first = self.redis.zrange(self.keys["wait"], 0, 0, withscores=True)
        return float(first[0][1]) if first else None
