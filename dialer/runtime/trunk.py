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
one window. A server is identified by its AMI address (host:port, as `pbx_group` does): processes that dial
through one Asterisk must reach it by the same address.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from dialer.pacing import cps_window

__all__ = ["Trunk", "TrunkBudget", "TrunkUsage", "cps_window", "server_address", "trunk_keys"]

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, cps, window, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local in_use = redis.call('ZCARD', KEYS[1])
local recent = redis.call('ZCARD', KEYS[2])
local room = #ARGV - 4
if limit > 0 then room = math.min(room, limit - in_use) end
if cps > 0 then room = math.min(room, cps - recent) end
local out = {0, 0}
for i = 1, room do
  local id = ARGV[4 + i]
  if limit > 0 then redis.call('ZADD', KEYS[1], now + lease, id) end
  if cps > 0 then redis.call('ZADD', KEYS[2], now, id) end
  out[#out + 1] = id
end
if limit > 0 and room > 0 then
  in_use = in_use + room
  redis.call('PEXPIRE', KEYS[1], lease * 2)
end
if cps > 0 and room > 0 then
  recent = recent + room
  redis.call('PEXPIRE', KEYS[2], window * 2)
end
out[1], out[2] = in_use, recent
return out
"""

# ARGV[1] lease ms, ARGV[2] '1': add calls not yet counted (a call taken over from a dead process, still up),
# '0': only push the expiry of calls still counted (an outcome released one since the heartbeat's snapshot: not
# brought back to life).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local args = {}
if ARGV[2] == '0' then args[1] = 'XX' end
for i = 3, #ARGV do
  args[#args + 1] = now + lease
  args[#args + 1] = ARGV[i]
end
if #ARGV >= 3 then
  redis.call('ZADD', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], lease * 2)
end
return 1
"""

_USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
return {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'), redis.call('ZCOUNT', KEYS[2], '(' .. (now - window), '+inf')}
"""

_CHUNK = 1000  # call ids per script call (Lua's unpack has a stack limit)


def server_address(host: str, port: int) -> str:
    """What identifies one Asterisk across processes and machines."""
    return f"{host.lower()}:{port}"


def trunk_keys(address: str) -> tuple[str, str]:
    """The channels set and the recent-originates set of one server (not per tenant: the trunk is shared)."""
    return f"dialer:trunk:{address}:channels", f"dialer:trunk:{address}:originates"


@dataclass(frozen=True)
class Trunk:
    """One server's ceilings (0: no limit), and its address."""

    address: str
    channels: int = 0
    calls_per_second: float = 0.0

    @property
    def limited(self) -> bool:
        return self.channels > 0 or self.calls_per_second > 0


@dataclass(frozen=True)
class TrunkUsage:
    """What every process together uses of one server's trunk, as Redis counted it."""

    channels_in_use: int = 0
    originates_in_window: int = 0


class TrunkBudget:
    """The shared per-server ceilings. Servers without limits never touch Redis."""

    def __init__(self, client: redis.Redis, trunks: dict[str, Trunk], *, lease_seconds: float) -> None:
        self.redis = client
        self.trunks = trunks  # by server name
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self._reserve = client.register_script(_RESERVE)
        self._renew = client.register_script(_RENEW)
        self._usage = client.register_script(_USAGE)

    def limited(self, server: str) -> bool:
        trunk = self.trunks.get(server)
        return trunk is not None and trunk.limited

    def _keys(self, server: str) -> tuple[str, str]:
        return trunk_keys(self.trunks[server].address)

    def _args(self, server: str) -> tuple[int, int, int]:
        trunk = self.trunks[server]
        calls, window = cps_window(trunk.calls_per_second)
        return trunk.channels, calls, window

    def reserve(self, wanted: dict[str, Sequence[str]]) -> tuple[dict[str, list[str]], dict[str, TrunkUsage]]:
        """For each server, reserve a channel and a calls-per-second slot for as many of its call ids as both
        ceilings allow (the first ones). Returns the granted ids and each limited server's usage after it."""
        granted: dict[str, list[str]] = {}
        usage: dict[str, TrunkUsage] = {}
        asked = [(server, list(ids)) for server, ids in wanted.items() if ids]
        limited = [(server, ids) for server, ids in asked if self.limited(server)]
        for server, ids in asked:
            if not self.limited(server):
                granted[server] = ids
        if limited:
            pipe = self.redis.pipeline(transaction=False)
            for server, ids in limited:
                channels, calls, window = self._args(server)
                self._reserve(keys=self._keys(server), args=[channels, calls, window, self.lease_ms, *ids],
                              client=pipe)
            for (server, _), raw in zip(limited, pipe.execute(), strict=True):
                granted[server] = [i.decode() if isinstance(i, bytes) else str(i) for i in raw[2:]]
                usage[server] = TrunkUsage(int(raw[0]), int(raw[1]))
        return granted, usage

    def usage(self, servers: Iterable[str]) -> dict[str, TrunkUsage]:
        """Each limited server's channels in use and originates in its window, all processes together."""
        names = [s for s in servers if self.limited(s)]
        if not names:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for server in names:
            self._usage(keys=self._keys(server), args=[self._args(server)[2]], client=pipe)
        return {s: TrunkUsage(int(raw[0]), int(raw[1])) for s, raw in zip(names, pipe.execute(), strict=True)}

    def release(self, calls: Iterable[tuple[str, str]], *, originated: bool) -> None:
        """(server, call id) pairs: their channels are free (the call ended, or never existed). `originated=False`
        also gives back the calls-per-second slot: no Originate went out."""
        pairs = [(server, call_id) for server, call_id in calls if self.limited(server)]
        if not pairs:
            return
        pipe = self.redis.pipeline(transaction=False)
        for server, call_id in pairs:
            channels, originates = self._keys(server)
            pipe.zrem(channels, call_id)
            if not originated:
                pipe.zrem(originates, call_id)
        pipe.execute()

    def renew(self, calls: dict[str, Sequence[str]], *, adopt: bool = False) -> None:
        """Push the expiry of calls still up (the heartbeat). `adopt`: count them even if they are not counted now
        (calls of a dead process found still up on the PBX: they hold a channel, whatever the limit says)."""
        pipe = self.redis.pipeline(transaction=False)
        used = False
        for server, ids in calls.items():
            if not ids or server not in self.trunks or self.trunks[server].channels <= 0:
                continue
            ids = list(ids)
            for start in range(0, len(ids), _CHUNK):
                self._renew(keys=[self._keys(server)[0]],
                            args=[self.lease_ms, "1" if adopt else "0", *ids[start:start + _CHUNK]], client=pipe)
                used = True
        if used:
            pipe.execute()
