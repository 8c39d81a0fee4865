"""The shared agent pool (dialer/runtime/agentpool.py) against a real redis-server: calls in flight towards a
queue counted for every campaign and process together, demands published for the split, places given back,
renewed, expired; queues sharing members form one pool whose agents are counted once."""

from __future__ import annotations

import os
import time

import redis

from dialer.pacing.sharing import ShareClaim, apportion
from dialer.runtime.agentpool import AgentPool, link_queues, pool_free, pool_keys
from tests.race_support import race_context


def test_calls_of_every_campaign_and_process_count_against_the_queue(redis_client):
    a = AgentPool(redis_client, "pbx", lease_seconds=20)
    b = AgentPool(redis.Redis(connection_pool=redis_client.connection_pool), "pbx", lease_seconds=20)
    got, total, mine = a.reserve(["q"], "acme/one", ["a1", "a2", "a3", "a4"], max_total=6, max_mine=3,
                                 claim=ShareClaim("acme/one", 3))
    assert got == ["a1", "a2", "a3"] and (total, mine) == (3, 3)  # its share: 3 of 6
    got, total, mine = b.reserve(["q"], "beta/two", ["b1", "b2", "b3", "b4"], max_total=6, max_mine=6)
    assert got == ["b1", "b2", "b3"] and (total, mine) == (6, 3)  # the queue's 6: the other campaign's 3 count
    snap = a.snapshot(["q"])
    assert snap.in_flight() == 6 and snap.in_flight("acme/one") == 3 and len(snap.ages()) == 6
    assert all(0 <= age < 5 for age in snap.ages())
    assert snap.demands == {"acme/one": ShareClaim("acme/one", 3)}
    assert {c.key: c.demand for c in snap.claims()} == {"acme/one": 6, "beta/two": 3}
    a.release(["a1", "zzz"])  # an agent took a1 (zzz: not ours, ignored)
    assert b.reserve(["q"], "beta/two", ["b5", "b6"], max_total=6, max_mine=6)[0] == ["b5"]
    a.release(["a2", "a3"])
    b.release(["b1", "b2", "b3", "b5"])
    assert a.snapshot(["q"]).calls == ()
    assert redis_client.hlen(pool_keys("pbx", "q")[1]) == 0


def test_places_of_a_silent_process_expire_renewed_ones_stay(redis_client):
    pool = AgentPool(redis_client, "pbx", lease_seconds=0.4)
    pool.reserve(["q"], "acme/c", ["live", "dead"], max_total=5, max_mine=5)
    pool.held.pop("dead")  # this process forgot it (as a dead process would stop renewing it)
    for _ in range(3):
        time.sleep(0.2)
        pool.renew()
    snap = pool.snapshot(["q"])
    assert snap.in_flight() == 1
    assert redis_client.hkeys(pool_keys("pbx", "q")[1]) == [b"live"]  # its owner record went with it
    pool.release(["live"])
    pool.renew()  # a heartbeat after the release never brings it back
    assert pool.snapshot(["q"]).in_flight() == 0


def test_demands_expire_and_other_servers_are_other_pools(redis_client):
    pool = AgentPool(redis_client, "pbx", lease_seconds=20)
    pool.reserve(["q"], "acme/c", [], max_total=0, max_mine=0, claim=ShareClaim("acme/c", 4, 2.0, 1))
    assert pool.snapshot(["q"]).demands["acme/c"] == ShareClaim("acme/c", 4, 2.0, 1)
    assert AgentPool(redis_client, "other-pbx", lease_seconds=20).snapshot(["q"]).demands == {}
    redis_client.hset(pool_keys("pbx", "q")[2], "acme/c", "4|2.0|1|1")  # expired long ago
    assert pool.snapshot(["q"]).demands == {}
    # a campaign held by a legal rule says so (the others leave it its slice: dialer/pacing/pool.py); a progressive
    # one only that it reserves
    for claim in (ShareClaim("acme/h", 2, reserves=True, held=True), ShareClaim("acme/p", 3, reserves=True)):
        pool.reserve(["q2"], claim.key, [], max_total=0, max_mine=0, claim=claim)
        assert pool.snapshot(["q2"]).demands[claim.key] == claim


def test_a_group_of_queues_is_one_pool(redis_client):
    pool = AgentPool(redis_client, "pbx", lease_seconds=20)
    assert pool.reserve(["sales", "support"], "acme/a", ["s1", "s2"], max_total=3, max_mine=3)[0] == ["s1", "s2"]
    got, total, _ = pool.reserve(["support", "sales"], "acme/b", ["t1", "t2"], max_total=3, max_mine=3)
    assert got == ["t1"] and total == 3  # the calls towards sales count against the shared agents


def test_linked_queues_and_agents_counted_once():
    members = {"sales": {"alice", "bob"}, "support": {"bob", "carol"}, "vip": {"dave"}}
    links = link_queues(members)
    assert links["sales"] == links["support"] == ("sales", "support") and links["vip"] == ("vip",)
    free = {"sales": 2, "support": 2}
    by_events = {"sales": {"alice", "bob"}, "support": {"bob", "carol"}}
    assert pool_free(free, by_events, ("sales", "support")) == 3  # bob once
    assert pool_free(free, by_events, ("sales",)) == 2
    assert pool_free({"sales": 0, "support": 0}, {}, ("sales", "support")) == 0


def _race(url: str, rounds: int, start, name: str) -> None:
    client = redis.Redis.from_url(url)
    pool = AgentPool(client, "pbx", lease_seconds=20)
    start.wait()
    for i in range(rounds):
        ids = [f"{os.getpid()}-{i}-{k}" for k in range(3)]
        snap = pool.snapshot(["q"])
        claim = ShareClaim(name, snap.in_flight(name) + 3)
        share = apportion(4, [claim, *(c for c in snap.claims() if c.key != name)])[name]
        got, total, _ = pool.reserve(["q"], name, ids, max_total=4, max_mine=share, claim=ShareClaim(name, 3))
        client.incrby("refused", len(ids) - len(got))
        if got:
            client.rpush("totals", total)
            time.sleep(0.001)  # held a moment: the others contend
            pool.release(got)


def test_processes_racing_never_hold_more_than_the_free_agents(redis_url, redis_client):
    """Four OS processes (four campaigns) reserve 3 places at a time on a queue of 4 free agents: the calls in
    flight, as Redis counted them at each grant, never pass 4."""
    ctx = race_context()
    start = ctx.Event()
    procs = [ctx.Process(target=_race, args=(redis_url, 100, start, f"t/c{i}")) for i in range(4)]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    totals = [int(t) for t in redis_client.lrange("totals", 0, -1)]
    assert len(totals) >= 100 and max(totals) <= 4
    assert int(redis_client.get("refused")) > 0  # they did contend: places were refused
    assert redis_client.zcard(pool_keys("pbx", "q")[0]) == 0
