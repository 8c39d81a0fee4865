"""Writes that must survive a Redis Cluster failover before the dialer acts on them (issue 18).

Redis replication is asynchronous: a master acknowledges a write before its replica has it, and a failover promotes
the replica without the master's last writes. Two of the runtime's writes are followed by an act that cannot be
undone and that a lost write would repeat:
  - the claim and the gate's reservation, followed by the Originate: lost, the contact is `ready` again on the
    promoted replica and would be called a second time;
  - the call's outcome, followed by the deletion of the PBX's own copy (AstDB, dialer/runtime/pbx_outcomes.py):
    lost, the recovery finds the call `reserved` with no evidence left, settles it `unknown` and calls again after
    the cool-off.
So the runtime confirms these writes on the replicas (WAIT) first: no Originate, and no AstDB deletion, until every
replica of the tenant's shard has them.

WAIT counts the writes of the connection it is sent on, and replication is one ordered stream per master: so one
pipeline on the serving master's own connection reads the evidence (the reservations' call index, the outcome in the
attempt record, the node's run id), writes one small key (the probe: the connection's replication offset is then
past every write the master took before it, whoever sent them) and WAITs for the replicas. Evidence present on the
node now serving the slot, and replicated, is what survives a failover; a node that changed (run id), a MOVED
reply or too few acknowledgements mean "not confirmed", and the caller fails closed.

How many replicas: every replica of the serving master in CLUSTER NODES (cached a few seconds), including one
whose link is down or that the cluster flags `fail`: such a replica clears the flag when it is back and may then be
promoted with the data it had (up to node-timeout x cluster-replica-validity-factor old), so the tenants of that
shard are not dialed until it has caught up or an operator removed it (CLUSTER FORGET, `redis-cli --cluster
del-node`). A master without replicas cannot fail over: nothing to wait for. A single Redis
(no cluster) is not covered here: its restart is caught by the data-state marker (dialer/runtime/datastate.py) and
its persistence decides what a restart loses (docs/redis.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dialer.facts import attempt_from_json, company_dnc_key, person_key
from dialer.gate import call_index_key
from dialer.redisconn import is_cluster

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 1.0  # seconds a WAIT may take: replicas on a LAN acknowledge in milliseconds
TOPOLOGY_TTL = 5.0  # seconds a master's replica count is reused
BEHIND_RETRY = 5.0  # seconds between two probes of a master whose replicas did not acknowledge (see `behind`)

# KEYS: the probe key. ARGV: the run id the caller's writes went to ('' any). Returns {written 1|0, run id}: the run
# id read inside Redis, so no failover falls between the comparison and the write that WAIT then counts.
_PROBE = r"""
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
if ARGV[1] ~= '' and ARGV[1] ~= run then return {0, run} end
redis.call('SET', KEYS[1], run, 'PX', 60000)
return {1, run}
"""


def probe_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:replsync"


@dataclass(frozen=True)
class Confirmation:
    """Whether the evidence is on the serving master and on all its replicas."""

    ok: bool
    why: str = ""  # when not ok: one line for the log
    missing: tuple[int, ...] = ()  # indexes of the evidence keys not found on the serving master
    behind: bool = False  # the evidence is on the serving master, its replicas did not acknowledge it in time


class ReplicaSync:
    """Confirms a tenant's writes reached the replicas of the master serving its slot (Redis Cluster only)."""

    def __init__(self, client: Any, *, timeout: float = DEFAULT_TIMEOUT, retry_behind: float = BEHIND_RETRY) -> None:
        self.redis = client
        self.enabled = is_cluster(client)
        self.timeout = timeout
        self.retry_behind = retry_behind
        self._replicas: dict[str, tuple[int, float]] = {}  # node name -> (replicas, monotonic time read)
        self._behind: dict[str, tuple[float, str]] = {}  # node name -> (monotonic time, why) of its last failed WAIT
        self.waited = 0  # WAITs sent (figures for tests and benchmarks)

    def behind(self, tenant: str) -> str:
        """Why the tenant's master is known not to replicate now, '' when calls may be tried. After a WAIT its
        replicas did not acknowledge, the engine claims nothing for the tenants of that master until a probe (one
        per master every `retry_behind` seconds, whichever campaign asks) is acknowledged: otherwise every tick of
        every campaign there would claim, reserve, wait `timeout` seconds in the tick (every other tenant's
        campaigns behind it) and give the batch back, two audit entries per contact each time."""
        if not self._behind:
            return ""
        import redis

        try:
            name = self.redis.get_node_from_key(probe_key(tenant)).name
        except redis.RedisError:
            return ""  # the claim's own path decides
        seen = self._behind.get(name)
        if seen is None:
            return ""
        if time.monotonic() - seen[0] < self.retry_behind:
            return seen[1]
        confirmed = self.written(tenant)  # acknowledged: forgotten; not: marked again (_confirm)
        return "" if confirmed.ok else confirmed.why

    def reservations(self, tenant: str, call_ids: Sequence[str], *, run_id: str = "") -> Confirmation:
        """The gate's reservations of these calls (their call index entries) are on the serving master, which is the
        run `run_id` (the one the claims' data-state check saw, '' any), and on its replicas."""
        reads = [("EXISTS", call_index_key(tenant, c)) for c in call_ids]
        return self._confirm(tenant, reads, run_id, present=lambda v: bool(int(v or 0)))

    def outcome(self, tenant: str, e164: str, call_id: str) -> Confirmation:
        """The call's recorded outcome (not `reserved`) is on the serving master and on its replicas."""
        def recorded(raw: Any) -> bool:
            return raw is not None and attempt_from_json(raw).outcome != "reserved"

        return self._confirm(tenant, [("HGET", person_key(tenant, e164, "att"), call_id)], "", present=recorded)

    def optout(self, tenant: str, e164: str) -> Confirmation:
        """The number's company-wide opt-out is on the serving master and on its replicas (before the dialplan's
        AstDB copy is deleted)."""
        return self._confirm(tenant, [("HEXISTS", company_dnc_key(tenant), e164)], "",
                             present=lambda v: bool(int(v or 0)))

    def written(self, tenant: str) -> Confirmation:
        """Every write the master serving the tenant's slot took so far is on its replicas (no evidence read: for a
        state the caller has just read, e.g. StoredOutcomeSweep's before it deletes a PBX copy)."""
        return self._confirm(tenant, [], "", present=bool)

    def _confirm(self, tenant: str, reads: list[tuple[str, ...]], run_id: str, present: Any) -> Confirmation:
        if not self.enabled:
            return Confirmation(True)
        import redis

        key = probe_key(tenant)
        try:
            node = self.redis.get_node_from_key(key)
            conn = self.redis.get_redis_connection(node)
            replicas = self._replica_count(node.name, conn)
            pipe = conn.pipeline(transaction=False)
            for command in reads:
                pipe.execute_command(*command)
            pipe.eval(_PROBE, 1, key, run_id)
            if replicas:
                pipe.execute_command("WAIT", replicas, int(self.timeout * 1000))
            replies = pipe.execute()
        except redis.RedisError as exc:  # MOVED (the slot moved), connection lost, ...: not confirmed
            self._replicas.clear()
            return Confirmation(False, f"replication not confirmed ({type(exc).__name__}: {_reply_text(exc)})")
        found = replies[:len(reads)]
        missing = tuple(i for i, value in enumerate(found) if not present(value))
        written, run = replies[len(reads)]
        run = run.decode() if isinstance(run, bytes) else str(run)
        if not int(written):
            return Confirmation(False, f"the node serving tenant {tenant} changed since the claim (run {run_id[:8]} "
                                       f"-> {run[:8]})", missing)
        if missing:
            return Confirmation(False, f"{len(missing)} of {len(reads)} writes not on the node serving tenant "
                                       f"{tenant} (lost in a failover?)", missing)
        if replicas:
            self.waited += 1
            acked = int(replies[-1])
            if acked < replicas:
                self._replicas.pop(node.name, None)  # read the topology again next time (a replica may be failed)
                # said by the node, not the tenant: `behind` gives it to every tenant of this master
                why = f"{acked} of {replicas} replicas of Redis node {node.name} acknowledged within {self.timeout:g} s"
                self._behind[node.name] = (time.monotonic(), why)
                return Confirmation(False, why, behind=True)
        self._behind.pop(node.name, None)
        return Confirmation(True)

    def _replica_count(self, name: str, conn: Any) -> int:
        cached = self._replicas.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[1] < TOPOLOGY_TTL:
            return cached[0]
        count = replicas_of_myself(conn.execute_command("CLUSTER", "NODES"))
        self._replicas[name] = (count, now)
        return count


def _reply_text(exc: Exception) -> str:
    """The error without the command redis-py prefixes to a pipeline's error ("Command # 1 (HGET t:{acme}:p:+33...
    ...) of pipeline caused error: MOVED ..."): the keys of a person's records hold the number, and the caller logs
    this text."""
    return str(exc).split(" of pipeline caused error: ", 1)[-1]


def replicas_of_myself(nodes: Any) -> int:
    """Replicas of the node that answered CLUSTER NODES, whatever their flags (pure; see the module docstring)."""
    text = nodes.decode() if isinstance(nodes, bytes) else nodes
    if isinstance(text, dict):  # a client that parsed the reply: {address: {node_id, flags, master_id, ...}}
        rows = [(v.get("node_id", ""), str(v.get("flags", "")), v.get("master_id", "")) for v in text.values()]
    else:
        rows = []
        for line in str(text).splitlines():
            fields = line.split()
            if len(fields) >= 4:
                rows.append((fields[0], fields[2], fields[3]))
    me = next((node_id for node_id, flags, _ in rows if "myself" in flags.split(",")), None)
    if me is None:
        return 0
    return sum(1 for _, flags, master in rows if master == me and "slave" in flags.split(","))
