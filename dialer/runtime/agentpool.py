"""The agents of a queue, shared by every campaign and every dialer process that sends calls to it.

Each campaign used to count the queue's free agents as its own: two progressive campaigns on 6 agents placed 12
calls. Like the trunk ceilings (trunk.py), the calls in flight towards a queue are counted in Redis for every
campaign and process together: a call holds a place in its queue's pool from its reservation until an agent takes
it (AgentConnect) or it ends; the holder's heartbeat renews it, and a process that dies stops renewing, so its
places free themselves after one lease. Each campaign decides its share of the pool with
dialer.pacing.sharing.apportion (priority, weights, demand), from the demands the others publish here.

Keys, per set of Asterisk servers (`pbx_group`: the agents a process sees) and queue:
  dialer:agents:{pbx}:{queue}:calls    sorted set, call id -> expiry (ms, Redis's clock)
  dialer:agents:{pbx}:{queue}:owner    hash, call id -> "{tenant}/{campaign}|{placed ms}"
  dialer:agents:{pbx}:{queue}:demand   hash, "{tenant}/{campaign}" ->
                                       "{new calls}|{weight}|{priority}|{reserves}|{expiry ms}"
                                       (reserves: 0, 1 progressive, 2 held by a legal rule; ShareClaim)

Queues that share members (an agent in several queues) form one pool: a reservation is checked against the calls
in flight towards every queue of the group, and their free agents are counted once (`pool_free`).

The free agents come from the caller (the AMI agent board, dialer/runtime/agents.py): this module only counts
calls, so how an agent counts as free (wrap-up, pauses) stays in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis

from dialer.pacing.sharing import ShareClaim

__all__ = ["AgentPool", "PoolCall", "PoolSnapshot", "link_queues", "pool_free", "pool_keys"]

DEMAND_TTL_MS = 3000  # a campaign that stopped publishing its demand for this long no longer claims a share
KEY_TTL_MS = 3600 * 1000

# Purge what expired in one queue's pool and return it. KEYS: calls, owner, demand. Returns {now ms, owner hash
# flattened, demand hash flattened}.
_PURGE = """
local function purge(calls, owner, demand, now)
  local gone = redis.call('ZRANGEBYSCORE', calls, '-inf', now)
  for i = 1, #gone, 500 do
    redis.call('HDEL', owner, unpack(gone, i, math.min(i + 499, #gone)))
  end
  redis.call('ZREMRANGEBYSCORE', calls, '-inf', now)
  local d = redis.call('HGETALL', demand)
  for i = 1, #d, 2 do
    local exp = tonumber(string.match(d[i + 1], '([^|]+)$'))
    if exp == nil or exp <= now then redis.call('HDEL', demand, d[i]) end
  end
end
"""

_SNAPSHOT = _PURGE + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
purge(KEYS[1], KEYS[2], KEYS[3], now)
return {now, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""

# KEYS: the queue's calls, owner, demand, then the calls sets of the other queues of its group. ARGV: campaign key,
# demand record (without expiry), max total in flight, max for this campaign, lease ms, call ids... Grants the first
# call ids as long as the group's calls in flight stay <= max total and the campaign's <= its max.
# Returns {total in flight, campaign's in flight, granted ids...}.
_RESERVE = _PURGE + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local campaign, max_total, max_mine, lease = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
purge(KEYS[1], KEYS[2], KEYS[3], now)
local total = redis.call('ZCARD', KEYS[1])
for i = 4, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  total = total + redis.call('ZCARD', KEYS[i])
end
local mine = 0
local prefix = campaign .. '|'
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  if string.sub(v, 1, #prefix) == prefix then mine = mine + 1 end
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[3], campaign, ARGV[2] .. '|' .. (now + tonumber(ARGV[7])))
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[6]))
end
local room = math.min(#ARGV - 7, max_total - total, max_mine - mine)
local out = {0, 0}
for i = 1, room do
  local id = ARGV[7 + i]
  redis.call('ZADD', KEYS[1], now + lease, id)
  redis.call('HSET', KEYS[2], id, campaign .. '|' .. now)
  out[#out + 1] = id
end
if room > 0 then
  total, mine = total + room, mine + room
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]))
end
out[1], out[2] = total, mine
return out
"""

# KEYS: calls, owner. ARGV: lease ms, key ttl ms, call ids. Only calls still counted are renewed (XX).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local args = {'XX'}
for i = 3, #ARGV do
  args[#args + 1] = now + tonumber(ARGV[1])
  args[#args + 1] = ARGV[i]
end
if #ARGV >= 3 then
  redis.call('ZADD', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
end
return 1
"""


def pool_keys(pbx: str, queue: str) -> tuple[str, str, str]:
    """The calls, owner and demand keys of one queue as seen through one set of servers."""
    base = f"dialer:agents:{{{pbx}}}:{queue}"  # {pbx}: a server set's queues share a cluster slot (linked queues)
    return f"{base}:calls", f"{base}:owner", f"{base}:demand"


def link_queues(members: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Queue -> the sorted queues it shares agents with, itself included (connected components of "has a member
    in common"). `members`: queue -> identities of its logged-in members."""
    parent = {q: q for q in members}

    def root(q: str) -> str:
        while parent[q] != q:
            parent[q] = parent[parent[q]]
            q = parent[q]
        return q

    seen: dict[str, str] = {}
    for queue in sorted(members):
        for agent in members[queue]:
            other = seen.setdefault(agent, queue)
            if other != queue:
                parent[root(queue)] = root(other)
    groups: dict[str, list[str]] = {}
    for q in members:
        groups.setdefault(root(q), []).append(q)
    return {q: tuple(sorted(groups[root(q)])) for q in members}


def pool_free(free: Mapping[str, int], free_members: Mapping[str, Iterable[str]], queues: Sequence[str]) -> int:
    """Free agents of a group of queues, each agent counted once: the queues' free figures added, less each free
    agent's extra memberships. `free`: queue -> free agents (the board's figure, which may hold back agents in
    wrap-up); `free_members`: queue -> identities of its members free by their events. Holding an agent back in
    one queue and not another only ever makes the figure smaller (never counts an agent twice)."""
    total = sum(max(0, free.get(q, 0)) for q in queues)
    seen: dict[str, int] = {}
    for q in queues:
        for agent in free_members.get(q, ()):
            seen[agent] = seen.get(agent, 0) + 1
    return max(0, total - sum(n - 1 for n in seen.values()))


@dataclass(frozen=True)
class PoolCall:
    campaign: str  # "{tenant}/{campaign}"
    placed_ms: int  # Redis time of its reservation


@dataclass(frozen=True)
class PoolSnapshot:
    """Every call in flight towards a group of queues and the demands of the campaigns sending them."""

    now_ms: int = 0
    calls: tuple[PoolCall, ...] = ()
    demands: dict[str, ShareClaim] = field(default_factory=dict)  # campaign -> its published claim (new calls)

    def in_flight(self, campaign: str | None = None) -> int:
        return sum(1 for c in self.calls if campaign is None or c.campaign == campaign)

    def ages(self, campaign: str | None = None) -> tuple[float, ...]:
        """Seconds since each call was placed (every campaign's, or one's): what the predictive model calls ringing."""
        return tuple(max(0.0, (self.now_ms - c.placed_ms) / 1000) for c in self.calls
                     if campaign is None or c.campaign == campaign)

    def claims(self) -> list[ShareClaim]:
        """Each campaign's claim in lines: its calls in flight plus the new calls it last said it wants."""
        keys = {c.campaign for c in self.calls} | set(self.demands)
        out = []
        for key in sorted(keys):
            demand = self.demands.get(key, ShareClaim(key, 0))
            mine = self.in_flight(key)
            out.append(ShareClaim(key, mine + demand.demand, demand.weight, demand.priority, mine, demand.reserves,
                                  demand.held))
        return out


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _pairs(flat: Sequence[object]) -> list[tuple[str, str]]:
    return [(_text(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]


class AgentPool:
    """One process's view of the shared pools of the queues it dials (through the servers of `pbx`)."""

    def __init__(self, client: redis.Redis, pbx: str, *, lease_seconds: float) -> None:
        self.redis = client
        self.pbx = pbx
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self._snapshot = client.register_script(_SNAPSHOT)
        self._reserve = client.register_script(_RESERVE)
        self._renew = client.register_script(_RENEW)
        self.held: dict[str, str] = {}  # call id -> queue, for the calls this process holds a place for

    def snapshot(self, queues: Sequence[str]) -> PoolSnapshot:
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            self._snapshot(keys=pool_keys(self.pbx, queue), client=pipe)
        calls: list[PoolCall] = []
        demands: dict[str, ShareClaim] = {}
        now = 0
        for raw in pipe.execute():
            now = max(now, int(raw[0]))
            for _, value in _pairs(raw[1]):
                campaign, _, placed = value.rpartition("|")
                calls.append(PoolCall(campaign, int(placed)))
            for campaign, value in _pairs(raw[2]):
                try:
                    fields = value.split("|")  # new|weight|priority[|reserves]|expiry
                    if len(fields) not in (4, 5):
                        continue
                    new, weight, priority = fields[:3]
                    mark = fields[3] if len(fields) == 5 else "0"  # 1: reserves (progressive), 2: held by a rule
                    claim = ShareClaim(campaign, max(0, int(new)), float(weight), int(priority),
                                       reserves=mark in ("1", "2"), held=mark == "2")
                except ValueError:
                    continue  # a malformed record claims nothing
                previous = demands.get(campaign)
                if previous is None or claim.demand > previous.demand:
                    demands[campaign] = claim
        return PoolSnapshot(now, tuple(calls), demands)

    def reserve(self, queues: Sequence[str], campaign: str, call_ids: Sequence[str], *, max_total: int,
                max_mine: int, claim: ShareClaim | None = None) -> tuple[list[str], int, int]:
        """Places in the pool of queues[0] (checked against the calls towards every queue of the group) for as many
        of `call_ids` as both ceilings allow; `claim` (its new calls, weight, priority) is published for the
        others' split. Returns (granted ids, group's calls in flight, the campaign's)."""
        keys = [*pool_keys(self.pbx, queues[0]), *(pool_keys(self.pbx, q)[0] for q in queues[1:])]
        mark = 0 if claim is None else 2 if claim.held else int(claim.reserves)
        record = "" if claim is None else f"{claim.demand}|{claim.weight!r}|{claim.priority}|{mark}"
        raw = self._reserve(keys=keys, args=[campaign, record, int(max_total), int(max_mine), self.lease_ms,
                                             KEY_TTL_MS, DEMAND_TTL_MS, *call_ids])
        granted = [_text(i) for i in raw[2:]]
        for call_id in granted:
            self.held[call_id] = queues[0]
        return granted, int(raw[0]), int(raw[1])

    def release(self, call_ids: Iterable[str]) -> None:
        """These calls no longer need a place: an agent took them, they ended, or were never placed."""
        by_queue: dict[str, list[str]] = {}
        for call_id in call_ids:
            queue = self.held.pop(call_id, None)
            if queue is not None:
                by_queue.setdefault(queue, []).append(call_id)
        if not by_queue:
            return
        pipe = self.redis.pipeline(transaction=False)
        for queue, ids in by_queue.items():
            calls, owner, _ = pool_keys(self.pbx, queue)
            pipe.zrem(calls, *ids)
            pipe.hdel(owner, *ids)
        pipe.execute()

    def renew(self) -> None:
        """The heartbeat: push the expiry of every place this process holds."""
        by_queue: dict[str, list[str]] = {}
        for call_id, queue in self.held.copy().items():  # (a C-level copy: the loop thread may change it)
            by_queue.setdefault(queue, []).append(call_id)
        if not by_queue:
            return
        pipe = self.redis.pipeline(transaction=False)
        for queue, ids in by_queue.items():
            calls, owner, _ = pool_keys(self.pbx, queue)
            for start in range(0, len(ids), 1000):
                self._renew(keys=[calls, owner], args=[self.lease_ms, KEY_TTL_MS, *ids[start:start + 1000]],
                            client=pipe)
        pipe.execute()
