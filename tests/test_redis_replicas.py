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

        replica = next(n for n in cluster.alive() if n is not master and cluster.role(n) == "slave"
                       and cluster.node_client(n).info("replication")["master_port"] == master.port)
        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            with cluster.node_client(master) as node:
                node.execute_command("CLIENT", "KILL", "TYPE", "replica")
            client.set("t:{acme}:call:c3", "+33100000003")
            frozen = sync.reservations("acme", ["c3"])
            assert not frozen.ok and "0 of 1 replicas" in frozen.why, frozen
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while not sync.reservations("acme", ["c3"]).ok:  # caught up once it reconnects
            assert time.monotonic() < deadline, "the replica never acknowledged again"
            time.sleep(0.2)
        client.close()
