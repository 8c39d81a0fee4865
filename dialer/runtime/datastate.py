"""Whether Redis still holds the data the dialer wrote: a generation marker, checked before every dial.

A Redis restarted from an old snapshot, or empty, or replaced by another server, answers every command as if
nothing happened: the claims, gate reservations and opt-outs of the lost seconds are simply gone, and a dialer
that goes on would call people a second time or call people who said stop. Redis cannot tell us what it lost;
a marker written with our data can tell us *that* it lost something:

  dialer:datastate  hash  id       random id of this data set (new only when an operator confirms a loss)
                          seq      counter bumped by every check (heartbeats and every claim batch): a process
                                   remembers the highest value it saw, so data restored from before that moment
                                   shows a lower value
                          run_id   the redis-server run the marker last checked (INFO server run_id): another
                                   run means a restart (or a failover), which loses what its persistence lost
                          halted   set when any process saw a loss: every process stops dialing until an
                                   operator runs `dialer runtime resume --after-data-loss`
                          born_at, resumed_at, resumed_by, reason

The check is one Lua script (it reads run_id inside Redis, so nothing can happen between the test and the
claim): the engine runs it at each heartbeat and in the same MULTI as each claim of contacts. A restart is
acceptable only when the server's persistence loses no acknowledged write (AOF with `appendfsync always`):
anything else, a missing marker, another data set id, a counter gone backwards, stops dialing at once with one
CRITICAL line saying what was detected. See docs/runtime.md "Redis persistence".
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dialer.redisconn import is_cluster

log = logging.getLogger(__name__)

MARKER = "dialer:datastate"
HISTORY = "dialer:datastate:history"  # list of JSON: what was detected, who resumed (never trimmed: rare)

# On a Redis Cluster each shard fails over, and can lose its last writes, on its own, and a claim's MULTI can only
# touch one hash slot: so each tenant's slot carries its own marker, checked with that tenant's claims, and a loss
# stops dialing for the tenants whose shard lost writes (docs/redis.md). One Redis keeps the one marker above.


def tenant_marker(tenant: str) -> str:
    return f"t:{{{tenant}}}:datastate"


def tenant_history(tenant: str) -> str:
    return f"t:{{{tenant}}}:datastate:history"

# KEYS: marker. ARGV: expected id ('' at start), highest seq seen. Returns {verdict, id, seq, run_id, detail}.
# verdicts: ok (seq bumped), missing, halted, replaced, rewound, restarted. Writes only when ok.
_CHECK = r"""
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
local m = redis.call('HMGET', KEYS[1], 'id', 'seq', 'run_id', 'halted')
if not m[1] then return {'missing', '', '0', run, ''} end
if m[4] then return {'halted', m[1], m[2] or '0', run, m[4]} end
if ARGV[1] ~= '' and m[1] ~= ARGV[1] then return {'replaced', m[1], m[2] or '0', run, ''} end
if tonumber(m[2] or '0') < tonumber(ARGV[2]) then return {'rewound', m[1], m[2] or '0', run, ''} end
if m[3] ~= run then return {'restarted', m[1], m[2] or '0', run, m[3] or ''} end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
return {'ok', m[1], tostring(seq), run, ''}
"""

# Create the marker when there is none. KEYS: marker. ARGV: id, born_at, halted reason ('' none). Returns 1 made.
_BIRTH = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'seq', '1', 'run_id', run, 'born_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'halted', ARGV[3]) end
return 1
"""

# Record a restart the server's persistence makes safe. KEYS: marker. ARGV: id, old run id. Returns 1 if adopted.
_ADOPT_RUN = r"""
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
local m = redis.call('HMGET', KEYS[1], 'id', 'run_id', 'halted')
if m[1] ~= ARGV[1] or m[3] then return 0 end
if m[2] ~= ARGV[2] and m[2] ~= run then return 0 end
redis.call('HSET', KEYS[1], 'run_id', run)
return 1
"""

# Stop every process: KEYS: marker. ARGV: reason, id of a new marker if none exists, born_at.
_HALT = r"""
if redis.call('EXISTS', KEYS[1]) == 0 then
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
  redis.call('HSET', KEYS[1], 'id', ARGV[2], 'seq', '1', 'run_id', run, 'born_at', ARGV[3])
end
if not redis.call('HGET', KEYS[1], 'halted') then redis.call('HSET', KEYS[1], 'halted', ARGV[1]) end
return redis.call('HGET', KEYS[1], 'halted')
"""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Check:
    verdict: str
    id: str
    seq: int
    run_id: str
    detail: str = ""

    @classmethod
    def from_reply(cls, raw: Any) -> Check:
        verdict, ident, seq, run, detail = (_s(v) for v in raw)
        return cls(verdict, ident, int(seq or 0), run, detail)


@dataclass(frozen=True)
class Persistence:
    """What a server keeps across a restart (INFO persistence, CONFIG GET appendfsync)."""

    aof: bool
    appendfsync: str  # always | everysec | no | '' (unknown: CONFIG disabled)
    rdb_saves: bool  # `save` points configured

    @property
    def loses_nothing(self) -> bool:
        """A restart loses no acknowledged write only with AOF fsync'ed on every write."""
        return self.aof and self.appendfsync == "always"

    def describe(self) -> str:
        if self.aof:
            return f"AOF appendfsync {self.appendfsync or 'unknown'}"
        return "RDB snapshots only" if self.rdb_saves else "no persistence"


def persistence_of(client: Any) -> Persistence:
    info = client.info("persistence")
    fsync, saves = "", False
    try:
        fsync = _s(client.config_get("appendfsync").get("appendfsync", ""))
        saves = bool(_s(client.config_get("save").get("save", "")).strip())
    except Exception:  # CONFIG renamed away in production: unknown, which is not "always"
        pass
    return Persistence(bool(int(info.get("aof_enabled", 0))), fsync, saves)


class DataLoss(Exception):
    """Redis no longer holds what the dialer wrote: dialing stops until an operator resumes it."""


class DataState:
    """One process's view of the marker. Thread-safe (the heartbeat and the claims run in worker threads)."""

    def __init__(self, client: Any, *, who: str = "engine", clock: Callable[[], float] = time.time,
                 marker: str = MARKER, history: str = HISTORY) -> None:
        self.redis = client
        self.marker, self.history = marker, history
        self.who = who
        self.clock = clock
        self.id = ""  # the data set we work on ('' before the first check)
        self.seq = 0  # the highest counter value we saw
        self.run_id = ""
        self.halted: str | None = None  # why dialing is stopped (None: dialing allowed)
        self._lock = threading.Lock()
        self._check = client.register_script(_CHECK)
        self._birth = client.register_script(_BIRTH)
        self._adopt = client.register_script(_ADOPT_RUN)
        self._halt = client.register_script(_HALT)

    # --- the checks ---------------------------------------------------------------------------------

    def beat(self) -> bool:
        """Check at a heartbeat; True while dialing is allowed."""
        return self.judge(Check.from_reply(self._check(keys=[self.marker], args=[self.id, self.seq])))

    def queue_check(self, pipe: Any) -> None:
        """Queue the check on a MULTI pipeline, before the writes it guards (its reply goes to judge())."""
        self._check(keys=[self.marker], args=[self.id, self.seq], client=pipe)

    def judge(self, check: Check) -> bool:
        with self._lock:
            if self.halted is not None:
                return self._maybe_resumed(check)
            if check.verdict == "ok":
                self.id, self.seq, self.run_id = check.id, max(self.seq, check.seq), check.run_id
                return True
            if check.verdict == "missing" and not self.id:
                return self._born()
            if check.verdict == "restarted":
                return self._restarted(check)
            if check.verdict == "replaced" and self._resumed_marker(check.id):
                log.warning("Redis data set %s was confirmed by an operator after a data loss: adopted", check.id)
                self.id, self.seq, self.run_id = check.id, check.seq, check.run_id
                return True
            if check.verdict == "halted":
                self.id = self.id or check.id
            self._stop(self._reason(check))
            return False

    def _reason(self, check: Check) -> str:
        run = (f"; Redis restarted, run id {self.run_id or '?'} -> {check.run_id}" if check.run_id != self.run_id
               else "; same Redis run")
        if check.verdict == "missing":
            return (f"Redis data vanished: the data-state marker of data set {self.id} is gone (restarted empty or "
                    f"flushed{run})")
        if check.verdict == "rewound":
            return (f"Redis data went back in time: data-state counter {check.seq}, this process saw {self.seq} "
                    f"(restored from an older snapshot{run})")
        if check.verdict == "replaced":
            return f"Redis holds another data set: marker {check.id}, this process worked on {self.id}"
        if check.verdict == "halted":
            return f"dialing halted by another process: {check.detail}"
        return f"Redis data state unknown ({check.verdict})"

    def _born(self) -> bool:
        ident = uuid.uuid4().hex
        if self._birth(keys=[self.marker], args=[ident, f"{self.clock():.3f}", ""]):
            self._history({"event": "born", "id": ident})
            log.info("Redis data set %s: data-state marker created (first run against this Redis)", ident)
        return self._adopt_current()

    def _adopt_current(self) -> bool:
        check = Check.from_reply(self._check(keys=[self.marker], args=["", 0]))
        if check.verdict == "halted":
            self.id, self.seq, self.run_id = check.id, check.seq, check.run_id
            self._stop(self._reason(check))
            return False
        if check.verdict == "restarted" and not self.id:
            # our first look at this Redis: its last restart happened while no dialer watched; judge it now
            self.id, self.seq, self.run_id = check.id, check.seq, check.detail
            return self._restarted(check)
        if check.verdict != "ok":
            self._stop(self._reason(check))
            return False
        self.id, self.seq, self.run_id = check.id, check.seq, check.run_id
        return True

    def _restarted(self, check: Check) -> bool:
        self.id = self.id or check.id
        if is_cluster(self.redis):
            # Another run of the node serving this slot: a replica promoted by a failover (replication is
            # asynchronous: the old master's last acknowledged writes may never have reached it), or a restart.
            # Redis cannot tell us which writes, so nothing is dialed until an operator has looked.
            self._stop(f"Redis Cluster: the node serving this data changed (run id {check.detail or '?'} -> "
                       f"{check.run_id}), a failover or a restart: the writes of its last moments may be lost "
                       f"(opt-outs, claims, reservations)")
            return False
        persistence = persistence_of(self.redis)
        if persistence.loses_nothing and check.seq >= self.seq:
            if self._adopt(keys=[self.marker], args=[check.id, check.detail]):
                log.warning("Redis restarted (run id %s -> %s); %s loses no acknowledged write: dialing goes on",
                            check.detail or "?", check.run_id, persistence.describe())
                self.run_id, self.seq = check.run_id, max(self.seq, check.seq)
                return True
            return False  # another process changed the marker meanwhile: the next check decides
        self._stop(f"Redis restarted (run id {check.detail or '?'} -> {check.run_id}) with {persistence.describe()}: "
                   f"the writes of its last moments may be lost (opt-outs, claims, reservations)")
        return False

    def _stop(self, reason: str) -> None:
        self.halted = reason
        log.critical("DIALING STOPPED: %s. Nobody is dialed until an operator checks the data and runs "
                     "`dialer runtime resume --after-data-loss`", reason)
        try:  # every other process stops at its next check, and a process started later too
            self._halt(keys=[self.marker], args=[reason, uuid.uuid4().hex, f"{self.clock():.3f}"])
            if not reason.startswith("dialing halted by another process"):
                self._history({"event": "halted", "reason": reason, "by": self.who})
        except Exception as exc:  # Redis gone again: still stopped here
            log.error("data-state halt not recorded in Redis (%s)", exc)

    # --- resuming -----------------------------------------------------------------------------------

    def _resumed_marker(self, ident: str) -> bool:
        values = self.redis.hmget(self.marker, "id", "resumed_at", "halted")
        return values[0] is not None and _s(values[0]) == ident and values[1] is not None and values[2] is None

    def _maybe_resumed(self, check: Check) -> bool:
        if check.verdict in ("halted", "missing") or check.id == self.id:  # (ok: the id we halted on is back)
            return False
        if not self._resumed_marker(check.id):
            return False
        log.warning("dialing resumes: an operator confirmed the Redis data after the loss (data set %s)", check.id)
        self.halted = None
        self.id, self.seq, self.run_id = check.id, 0, ""
        return self._adopt_current()

    def _history(self, entry: dict[str, Any]) -> None:
        import json

        self.redis.rpush(self.history, json.dumps({**entry, "at": self.clock()}, sort_keys=True))


def resume_after_data_loss(client: Any, *, by: str, reason: str, at: float, tenant: str | None = None
                           ) -> dict[str, str]:
    """The operator's confirmation: a new data set id (every process adopts it), the halt cleared. Returns what
    the marker said before (for the audit trail). `tenant`: that tenant's marker (Redis Cluster)."""
    import json

    key, history = (tenant_marker(tenant), tenant_history(tenant)) if tenant else (MARKER, HISTORY)
    before = {_s(k): _s(v) for k, v in client.hgetall(key).items()}
    ident = uuid.uuid4().hex
    if tenant:  # the run of the node now serving the tenant's slot
        run = _s(client.info("server", target_nodes=client.get_node_from_key(key)).get("run_id", ""))
    else:
        run = _s(client.info("server").get("run_id", ""))
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping={"id": ident, "seq": "1", "run_id": run, "born_at": before.get("born_at", f"{at:.3f}"),
                               "resumed_at": f"{at:.3f}", "resumed_by": by, "reason": reason})
    pipe.rpush(history, json.dumps({"event": "resumed", "by": by, "reason": reason, "at": at, "id": ident,
                                    "previous": before}, sort_keys=True))
    pipe.execute()
    return {"previous_id": before.get("id", ""), "halted": before.get("halted", ""), "id": ident}


def marker(client: Any, tenant: str | None = None) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in client.hgetall(tenant_marker(tenant) if tenant else MARKER).items()}


class DataStates:
    """The engine's data-state checks: the one marker of a single Redis, or one per tenant on a Redis Cluster."""

    def __init__(self, client: Any, *, who: str = "engine", clock: Callable[[], float] = time.time,
                 per_tenant: bool = False) -> None:
        self.redis, self.who, self.clock, self.per_tenant = client, who, clock, per_tenant
        self._single = None if per_tenant else DataState(client, who=who, clock=clock)
        self._tenants: dict[str, DataState] = {}

    def for_tenant(self, tenant: str) -> DataState:
        if self._single is not None:
            return self._single
        if tenant not in self._tenants:
            self._tenants[tenant] = DataState(self.redis, who=self.who, clock=self.clock,
                                              marker=tenant_marker(tenant), history=tenant_history(tenant))
        return self._tenants[tenant]

    def states(self) -> list[DataState]:
        return [self._single] if self._single is not None else list(self._tenants.values())

    def beat(self) -> bool:
        return all([state.beat() for state in self.states()])

    @property
    def halted(self) -> str | None:
        """Why dialing is stopped: on a cluster, the first tenant whose shard lost writes stops this process too
        (fail closed: a process whose view of one shard is in doubt places no call until an operator looks)."""
        for state in self.states():
            if state.halted is not None:
                return state.halted
        return None


def guarded_claim(state: DataState, queue: Any, n: int, **claim: Any) -> list[Any]:
    """Claim contacts in the same MULTI as the data-state check: nothing runs between the two, even a restart. If
    the check fails, the contacts just claimed go straight back to ready (no attempt counted) and none is
    returned: dialing has stopped."""
    from dialer.runtime.queues import ContactQueue

    pipe = state.redis.pipeline(transaction=True)
    state.queue_check(pipe)
    queue.claim_on(pipe, n, **claim)
    check_reply, raw = pipe.execute()
    claims = ContactQueue.parse_claims(raw, owner=claim["owner"], now=claim["now"])
    if state.judge(Check.from_reply(check_reply)):
        return claims
    for c in claims:
        queue.requeue(c, reason="data_state_halt", at=claim["now"])
    return []
