"""Trunk ceilings shared by every dialer process: channels in use and calls per second, per Asterisk server.

A trunk's limits belong to the PBX, not to a dialer process: two processes pacing different campaigns through one
Asterisk must together stay within its channels and its calls per second. So before a process claims contacts it
reserves, atomically in Redis, one channel and one slot of the server's calls-per-second window per call:

* channels: a sorted set per server, call id -> expiry. A call holds its channel until its outcome (released),
  and the holder's heartbeat pushes the expiry forward; a process that dies stops renewing, so its channels free
  themselves after one lease (the takeover re-adopts any of its calls still up on the PBX).
* calls per second: a sorted set per server, call id -> when it was reserved; a sliding window (never two bursts
  back to back at a second boundary). A reservation that never became an Originate (gate denial, no contact to
  claim, server gone) gives its slot back.

Every time is Redis's own clock (TIME inside the scripts), so processes on machines whose clocks drift still share
one window. A trunk's `address` starts as the configured host:port and becomes the identity Asterisk gives after
login (dialer/runtime/identity.py), so processes reaching one Asterisk by different addresses share its trunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from dialer.pacing import cps_window

__all__ = ["Trunk", "TrunkBudget", "TrunkUsage", "cps_window", "server_address", "trunk_keys"]

# KEYS: channels, originates, AI sessions. ARGV: channel limit (0: none), calls per window (0: none), window ms,
# lease ms, AI-session limit (-1: these calls use no AI session), call ids... Returns {channels in use,
# originates in the window, AI sessions in use, granted ids...}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, cps, window, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ai, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local in_use = redis.call('ZCARD', KEYS[1])
local recent = redis.call('ZCARD', KEYS[2])
local sessions = redis.call('ZCARD', KEYS[3])
local room = #ARGV - 6
if limit > 0 then room = math.min(room, limit - in_use) end
if cps > 0 then room = math.min(room, cps - recent) end
if ai >= 0 then room = math.min(room, ai - sessions) end
local out = {0, 0, 0}
for i = 1, room do
  local id = ARGV[6 + i]
  if limit > 0 then redis.call('ZADD', KEYS[1], now + lease, id) end
  if cps > 0 then redis.call('ZADD', KEYS[2], now, id) end
  if ai >= 0 then redis.call('ZADD', KEYS[3], now + lease, id) end
  out[#out + 1] = id
end
if room > 0 then
  if limit > 0 then in_use = in_use + room; redis.call('PEXPIRE', KEYS[1], ttl) end
  if cps > 0 then recent = recent + room; redis.call('PEXPIRE', KEYS[2], ttl) end
  if ai >= 0 then sessions = sessions + room; redis.call('PEXPIRE', KEYS[3], ttl) end
end
out[1], out[2], out[3] = in_use, recent, sessions
return out
"""

# KEYS: one set (channels or AI sessions). ARGV: lease ms, '0' or '1', key ttl ms, call ids. '0': only push the
# expiry of calls still counted (ZADD XX: an outcome that released one since the heartbeat's snapshot is not undone);
# '1': count them even if they are not counted now (calls of a dead process found still up on the PBX).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local args = {}
if ARGV[2] == '0' then args[1] = 'XX' end
for i = 4, #ARGV do
  args[#args + 1] = now + lease
  args[#args + 1] = ARGV[i]
end
if #ARGV >= 4 then
  redis.call('ZADD', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
"""

_USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
return {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'), redis.call('ZCOUNT', KEYS[2], '(' .. (now - window), '+inf'),
        redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')}
"""

_CHUNK = 1000  # call ids per script call (Lua's unpack has a stack limit)
# The sets' own time to live, pushed back by every write: only a collector of sets nobody uses any more (each
# entry carries its own expiry). One fixed value, so processes with different leases never cut each other's.
KEY_TTL_MS = 3600 * 1000


def server_address(host: str, port: int) -> str:
    """What identifies one Asterisk across processes and machines."""
    return f"{host.lower()}:{port}"


def trunk_keys(address: str) -> tuple[str, str, str]:
    """One server's sets: channels in use, recent originates, AI sessions in use (not per tenant: the PBX's trunk
    and its AI sessions are shared by every tenant and every dialer process)."""
    base = f"dialer:trunk:{{{address}}}"  # {address}: one server's sets share a cluster slot
    return f"{base}:channels", f"{base}:originates", f"{base}:ai"


@dataclass(frozen=True)
class Trunk:
    """One server's ceilings (0: no limit), its AI-agent sessions, and its address."""

    address: str
    channels: int = 0
    calls_per_second: float = 0.0
    ai_sessions: int = 0  # sessions agentless calls may hold at once (each call holds one until its outcome)

    @property
    def limited(self) -> bool:
        return self.channels > 0 or self.calls_per_second > 0


@dataclass(frozen=True)
class TrunkUsage:
    """What every process together uses of one server's trunk, as Redis counted it."""

    channels_in_use: int = 0
    originates_in_window: int = 0
    ai_sessions_in_use: int = 0


class TrunkBudget:
    """The shared per-server ceilings. Servers without limits never touch Redis."""

    def __init__(self, client: redis.Redis, trunks: dict[str, Trunk], *, lease_seconds: float) -> None:
        self.redis = client
        self.trunks = trunks  # by server name
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self._reserve = client.register_script(_RESERVE)
        self._renew = client.register_script(_RENEW)
        self._usage = client.register_script(_USAGE)

    def limited(self, server: str, ai: bool = False) -> bool:
        """Whether calls through this server are counted in Redis (AI calls always are: sessions are scarce)."""
        trunk = self.trunks.get(server)
        return trunk is not None and (ai or trunk.limited)

    def _keys(self, server: str) -> tuple[str, str, str]:
        return trunk_keys(self.trunks[server].address)

    def _args(self, server: str) -> tuple[int, int, int]:
        trunk = self.trunks[server]
        calls, window = cps_window(trunk.calls_per_second)
        return trunk.channels, calls, window

    def reserve(self, wanted: dict[str, Sequence[str]], *, ai: bool = False,
                ) -> tuple[dict[str, list[str]], dict[str, TrunkUsage]]:
        """For each server, reserve a channel and a calls-per-second slot (and, `ai`: an AI session) for as many of
        its call ids as every ceiling allows (the first ones). Returns the granted ids and each counted server's
        usage after it."""
        granted: dict[str, list[str]] = {}
        usage: dict[str, TrunkUsage] = {}
        asked = [(server, list(ids)) for server, ids in wanted.items() if ids]
        counted = [(server, ids) for server, ids in asked if self.limited(server, ai)]
        for server, ids in asked:
            if not self.limited(server, ai):
                granted[server] = ids
        if counted:
            pipe = self.redis.pipeline(transaction=False)
            for server, ids in counted:
                channels, calls, window = self._args(server)
                sessions = self.trunks[server].ai_sessions if ai else -1
                self._reserve(keys=self._keys(server),
                              args=[channels, calls, window, self.lease_ms, sessions, KEY_TTL_MS, *ids], client=pipe)
            for (server, _), raw in zip(counted, pipe.execute(), strict=True):
                granted[server] = [i.decode() if isinstance(i, bytes) else str(i) for i in raw[3:]]
                usage[server] = TrunkUsage(int(raw[0]), int(raw[1]), int(raw[2]))
        return granted, usage

    def usage(self, servers: Iterable[str], *, ai: bool = False) -> dict[str, TrunkUsage]:
        """Each counted server's channels in use, originates in its window and AI sessions in use, all processes
        together."""
        names = [s for s in servers if self.limited(s, ai)]
        if not names:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for server in names:
            self._usage(keys=self._keys(server), args=[self._args(server)[2]], client=pipe)
        return {s: TrunkUsage(int(raw[0]), int(raw[1]), int(raw[2]))
                for s, raw in zip(names, pipe.execute(), strict=True)}

    def release(self, calls: Iterable[tuple[str, str]], *, originated: bool, ai: bool = False) -> None:
        """(server, call id) pairs: their channels (and AI sessions) are free: the call ended, or never existed.
        `originated=False` also gives back the calls-per-second slot: no Originate went out."""
        pairs = [(server, call_id) for server, call_id in calls if self.limited(server, ai)]
        if not pairs:
            return
        pipe = self.redis.pipeline(transaction=False)
        for server, call_id in pairs:
            channels, originates, sessions = self._keys(server)
            pipe.zrem(channels, call_id)
            if not originated:
                pipe.zrem(originates, call_id)
            if ai:
                pipe.zrem(sessions, call_id)
        pipe.execute()

    def renew(self, calls: dict[str, Sequence[str]], *, adopt: bool = False, ai: bool = False) -> None:
        """Push the expiry of calls still up (the heartbeat; `ai`: their AI sessions too). `adopt`: count them even
        if they are not counted now (calls of a dead process found still up on the PBX: they hold a channel, and a
        session, whatever the limit says)."""
        pipe = self.redis.pipeline(transaction=False)
        used = False
        for server, ids in calls.items():
            trunk = self.trunks.get(server)
            if not ids or trunk is None:
                continue
            keys = self._keys(server)
            sets = ([keys[0]] if trunk.channels > 0 else []) + ([keys[2]] if ai else [])
            ids = list(ids)
            for key in sets:
                for start in range(0, len(ids), _CHUNK):
                    self._renew(keys=[key], args=[self.lease_ms, "1" if adopt else "0", KEY_TTL_MS,
                                                  *ids[start:start + _CHUNK]], client=pipe)
                    used = True
        if used:
            pipe.execute()
