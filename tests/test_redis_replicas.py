"""Confirming writes on a Redis Cluster's replicas before the runtime acts on them (dialer/runtime/replicas.py), on a
real cluster on loopback: evidence present and replicated is confirmed; evidence missing, a changed node, or a
replica that does not acknowledge (frozen, its link cut) is not. And the replica count read from CLUSTER NODES."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dialer import redisconn
from dialer.facts import person_key
from dialer.runtime.replicas import ReplicaSync, replicas_of_myself
from tests.cluster_support import LocalCluster

NODES = (
    "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n"
    "b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-16383\n"
    "c3 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n"
    "d4 127.0.0.1:7004@17004 slave,fail a1 0 0 1 disconnected\n"
    "e5 127.0.0.1:7005@17005 slave b2 0 0 2 connected\n"
)


def test_replicas_of_the_answering_master_whatever_their_flags() -> None:
    # a failed replica still counts: back, it clears the flag and may be promoted with what it had
    assert replicas_of_myself(NODES) == 2
    assert replicas_of_myself(NODES.encode()) == 2
    as_b2 = NODES.replace("myself,master", "master").replace("7002@17002 master", "7002@17002 myself,master")
    assert replicas_of_myself(as_b2) == 1
    assert replicas_of_myself("") == 0


def test_a_plain_redis_needs_no_confirmation(redis_client) -> None:
    assert ReplicaSync(redis_client).reservations("acme", ["nothing"]).ok


@pytest.mark.cluster
def test_confirmed_only_when_on_the_serving_master_and_its_replica() -> None:
    with LocalCluster() as cluster:
        client = redisconn.connect(cluster.url)
        master = cluster.master_of("t:{acme}:")
        deadline = time.monotonic() + 30
        while True:  # the master learns its replica by gossip a moment after the cluster is up
            with cluster.node_client(master) as node:
                if replicas_of_myself(node.execute_command("CLUSTER", "NODES")) >= 1:
                    break
            assert time.monotonic() < deadline, "the master never listed its replica"
            time.sleep(0.1)
        sync = ReplicaSync(client, timeout=0.5)
        run = client.info("server", target_nodes=client.get_node_from_key("t:{acme}:x"))["run_id"]
        client.set("t:{acme}:call:c1", "+33100000000")
        assert sync.reservations("acme", ["c1"], run_id=run).ok
        assert sync.waited == 1  # it did wait for the replica
        missing = sync.reservations("acme", ["c1", "c2"])
        assert not missing.ok and missing.missing == (1,) and "not on the node" in missing.why
        moved = sync.reservations("acme", ["c1"], run_id="0" * 40)  # the claims went to another run of the node
        assert not moved.ok and "changed since the claim" in moved.why
        attempts = person_key("acme", "+33100000000", "att")
        client.hset(attempts, "c1", '{"at":"2026-12-07T09:00:00Z","campaign":"c","outcome":"reserved"}')
        assert not sync.outcome("acme", "+33100000000", "c1").ok  # no outcome yet
        client.hset(attempts, "c1", '{"at":"2026-12-07T09:00:00Z","campaign":"c","outcome":"busy"}')
        assert sync.outcome("acme", "+33100000000", "c1").ok
        # an error reply says why without the command redis-py puts before it: the key holds the number (logged)
        client.set(person_key("acme", "+33100000009", "att"), "not a hash")
        broken = sync.outcome("acme", "+33100000009", "c9")
        assert not broken.ok and "WRONGTYPE" in broken.why and "100000009" not in broken.why, broken.why

        replica = next(n for n in cluster.alive() if n is not master and cluster.role(n) == "slave"
                       and cluster.node_client(n).info("replication")["master_port"] == master.port)
        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            with cluster.node_client(master) as node:
                node.execute_command("CLIENT", "KILL", "TYPE", "replica")
            client.set("t:{acme}:call:c3", "+33100000003")
            frozen = sync.reservations("acme", ["c3"])
            assert not frozen.ok and "0 of 1 replicas" in frozen.why, frozen
            # known behind: the engine claims nothing for the tenant, and no tick waits, until a probe is acknowledged
            waited = sync.waited
            assert sync.behind("acme") == frozen.why and sync.waited == waited
            other = next(t for t in (f"t{i}" for i in range(100)) if cluster.master_of(f"t:{{{t}}}:") is not master)
            assert sync.behind(other) == ""  # another master's tenants are dialed on
            same = next(t for t in (f"t{i}" for i in range(100)) if cluster.master_of(f"t:{{{t}}}:") is master)
            assert sync.behind(same) == frozen.why and "acme" not in frozen.why  # held too, told of its node only
            sync.retry_behind = 0.0
            assert "0 of 1 replicas" in sync.behind("acme") and sync.waited == waited + 1  # probed again: still behind
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while not sync.reservations("acme", ["c3"]).ok:  # caught up once it reconnects
            assert time.monotonic() < deadline, "the replica never acknowledged again"
            time.sleep(0.2)
        assert sync.behind("acme") == ""
        client.close()


def _wait_for_replica(cluster: LocalCluster, master) -> None:
    deadline = time.monotonic() + 30
    while True:  # the master learns its replica by gossip a moment after the cluster is up
        with cluster.node_client(master) as node:
            if replicas_of_myself(node.execute_command("CLUSTER", "NODES")) >= 1:
                return
        assert time.monotonic() < deadline, "the master never listed its replica"
        time.sleep(0.1)


@pytest.mark.cluster
async def test_an_outcome_the_replica_lacks_keeps_its_pbx_copy_and_holds_no_thread(redis_url) -> None:
    """The replica of the tenant's master frozen, its link cut, while the master (and the heartbeat) stay up: the
    engine stores the call's outcome and returns after one check instead of waiting for the replica in a worker
    thread for as long as it stays behind (a few such outcomes took every thread of the default executor, the
    heartbeat and every other tenant queued behind them); the AstDB copy of the outcome is not deleted, by the
    outcome path nor by the sweep, until the stored outcome is on the replica."""
    import asyncio
    import threading

    from dialer.ami import outcomes
    from dialer.ami.calls import Outcome
    from dialer.ami.dispositions import Disposition
    from dialer.ami.pool import AMIPool
    from dialer.campaigns import StoredCampaign
    from dialer.config import AsteriskServer, load_config
    from dialer.facts import attempt_from_json
    from dialer.gate import call_index_key
    from dialer.pacing import CampaignEstimators
    from dialer.runtime.engine import CampaignRunner, Engine, build_gate
    from dialer.runtime.pbx_outcomes import StoredOutcomeSweep
    from dialer.runtime.queues import ContactQueue, QueuedContact
    from dialer.runtime.runner import Flight
    from tests.runtime_support import SECRET_KEY
    from tests.test_runtime_engine import SETTINGS
    from tests.test_sandbox_pbx import start

    number = "+33100000077"
    with LocalCluster() as cluster:
        client = redisconn.connect(cluster.url)
        master = cluster.master_of("t:{acme}:")
        _wait_for_replica(cluster, master)
        config = load_config(env={"DIALER_REDIS_URL": cluster.url, "DIALER_REDIS_JOBS_URL": redis_url,
                                  "DIALER_SECRET_KEY": SECRET_KEY})
        engine = Engine(client, build_gate(client, config),
                        [AsteriskServer("sbx", "127.0.0.1", 1, "u", "s")], settings=SETTINGS)
        engine.replicas.timeout = 0.5
        queue = ContactQueue(client, "acme", "c1")
        queue.add([QueuedContact("k1", number)], at=time.time())
        [claim] = queue.claim(1, owner=engine.id, now=time.time(), lease_until=time.time() + 60, call_ids=["call1"],
                              servers=["sbx"])
        client.set(call_index_key("acme", "call1"), number)
        attempts = person_key("acme", number, "att")
        client.hset(attempts, "call1", '{"at":"2026-12-07T09:00:00Z","campaign":"c1","outcome":"reserved"}')
        stored = StoredCampaign("c1", "acme", "running", {}, "", "", "", "")
        r = CampaignRunner("acme", "c1", queue, CampaignEstimators(), stored)
        r.claims[claim.contact.contact_id] = claim
        flight = Flight(claim, "acme", "c1", "sbx", time.time() - 30)
        outcome = Outcome("call1", "c1", "acme", number, Disposition.ANSWERED, 16, time.time() - 20, None,
                          time.time() - 5, None)

        replica = next(n for n in cluster.alive() if n is not master and cluster.role(n) == "slave"
                       and cluster.node_client(n).info("replication")["master_port"] == master.port)
        os.kill(replica.proc.pid, signal.SIGSTOP)
        server = await start()
        try:
            with cluster.node_client(master) as node:
                node.execute_command("CLIENT", "KILL", "TYPE", "replica")
            beating = threading.Event()

            def heartbeat() -> None:  # the heartbeat keeps the leases renewed: Redis itself is up
                while not beating.is_set():
                    engine._renewed_at = time.time()
                    time.sleep(0.1)

            beat = threading.Thread(target=heartbeat, daemon=True)
            beat.start()
            result: list[bool] = []
            worker = threading.Thread(target=lambda: result.append(engine._record_outcome(r, flight, outcome, True)),
                                      daemon=True)
            worker.start()
            worker.join(SETTINGS.lease_seconds * 4)  # a hang detector: one check takes the WAIT's 0.5 s
            held = worker.is_alive()
            beating.set()
            assert not held, "the outcome held its worker thread while the replica was behind"
            assert result == [False]  # stored, not confirmed: the PBX copy stays
            assert attempt_from_json(client.hget(attempts, "call1")).outcome == "answered"  # stored on the master
            assert engine.stored_outcomes.state("acme", "call1") == "unconfirmed"
            server.pbx.astdb.put(outcomes.FAMILY, "call1", f"{int(time.time())},c1,acme,answered")
            pool = AMIPool([AsteriskServer("sbx", "127.0.0.1", server.port, "dialer", "dialer-secret", "md5")],
                           astdb_interval=0, sweep_interval=0)
            async with pool:
                sweep = StoredOutcomeSweep(pool, engine.stored_outcomes.state)
                assert await sweep.sweep_once("sbx", time.time()) == 0  # kept: a failover could still lose it
                os.kill(replica.proc.pid, signal.SIGCONT)
                deadline = time.monotonic() + 30
                while engine.stored_outcomes.state("acme", "call1") != "answered":  # the replica caught up
                    assert time.monotonic() < deadline, "the replica never acknowledged again"
                    await asyncio.sleep(0.2)
                assert await sweep.sweep_once("sbx", time.time()) == 1
            assert server.pbx.astdb.get(outcomes.FAMILY, "call1") is None
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
            await server.stop()
        client.close()
