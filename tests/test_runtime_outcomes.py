"""Issue 16, fault 3: outcomes of calls that end while Redis is down are retried until stored (no false CRITICAL
"NOT stored" once Redis is back). Real redis-server (AOF, fsync always: its restart loses nothing, so dialing goes
on), killed for 20 s while calls are up on the sandbox PBX."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import redis as redislib

from dialer.campaigns import CampaignStore
from dialer.facts import FactStore
from dialer.runtime.engine import offset_clock
from dialer.runtime.queues import ContactQueue
from tests.runtime_support import AT, OriginateObserver, eventually, numbers, setup_campaign
from tests.test_runtime_engine import SETTINGS, engine_task, queue_phone, start_pbx


async def test_outcomes_of_calls_ending_in_a_long_outage_are_stored_without_false_alarm(redis_factory, tmp_path,
                                                                                          caplog):
    caplog.set_level(logging.INFO, logger="dialer")
    (tmp_path / "redis").mkdir()
    server = redis_factory.start(persistent=True, directory=str(tmp_path / "redis"))
    client = redislib.Redis.from_url(server.url)
    phones = [p for p in numbers(20, base="+331456760") if p[-1] not in "2347"][:8]
    campaign = setup_campaign(client, tmp_path, phones)
    # calls answered for 1-2 s: those up at the kill end early in the outage
    pbx = await start_pbx(time_scale=0.1, queues={"dialer": 4})
    settings = dataclasses.replace(SETTINGS, lease_seconds=40.0)  # the claims outlive the outage
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(server.url, pbx, offset_clock(AT, 1.0), settings=settings)
            await eventually(lambda: sum(observer.by_number.values()) >= 3, timeout=30)
            server.kill()
            await asyncio.sleep(20.0)  # longer than the old retry budget (8 tries, ~21 s from the first failure)
            server.start()
            await eventually(lambda: CampaignStore(client).get("acme", campaign).status == "completed", timeout=90)
            stop.set()
            await task
    finally:
        await pbx.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "NOT stored" in m]
    assert not [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any("stored after" in m for m in messages)  # outcomes did wait for Redis
    queue = ContactQueue(client, "acme", campaign)
    finals = {queue_phone(queue, cid): f for cid, f in queue.final_states().items()}
    assert set(finals) == set(phones)
    for phone in phones:
        assert observer.by_number[phone] == 1, phone
        attempts = FactStore(client).attempts("acme", phone)
        assert [a.outcome for a in attempts] == ["answered"], phone  # the real outcome, not "unknown"
        assert finals[phone]["reason"] == "answered"
    client.close()


async def test_an_outage_longer_than_the_lease_hands_the_outcome_to_the_recovery(redis_factory, tmp_path, caplog):
    """Redis down 12 s with 5 s leases: the outcome retry gives the claim to the takeover path (an ERROR line, not
    CRITICAL); this process's recovery takes the claim back once Redis is up and stores the real outcome."""
    caplog.set_level(logging.INFO, logger="dialer")
    (tmp_path / "redis").mkdir()
    server = redis_factory.start(persistent=True, directory=str(tmp_path / "redis"))
    client = redislib.Redis.from_url(server.url)
    phones = [p for p in numbers(20, base="+331456770") if p[-1] not in "2347"][:6]
    campaign = setup_campaign(client, tmp_path, phones)
    pbx = await start_pbx(time_scale=0.1, queues={"dialer": 3})
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(server.url, pbx, offset_clock(AT, 1.0))  # SETTINGS: 5 s leases
            await eventually(lambda: sum(observer.by_number.values()) >= 3, timeout=30)
            server.kill()
            await asyncio.sleep(12.0)
            server.start()
            await eventually(lambda: CampaignStore(client).get("acme", campaign).status == "completed", timeout=90)
            stop.set()
            await task
    finally:
        await pbx.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("kept in memory for the recovery" in m for m in messages)
    assert not [r for r in caplog.records if r.levelno == logging.CRITICAL]
    queue = ContactQueue(client, "acme", campaign)
    finals = {queue_phone(queue, cid): f for cid, f in queue.final_states().items()}
    assert set(finals) == set(phones)
    for phone in phones:
        assert observer.by_number[phone] == 1, phone
        assert [a.outcome for a in FactStore(client).attempts("acme", phone)] == ["answered"], phone
    client.close()


async def test_a_recovery_cut_short_by_redis_leaves_its_claims_to_lapse(redis_factory) -> None:
    """Redis lost while the recovery resolves the claims it took over: they must not stay in the claims the
    heartbeat renews (held forever, never called nor settled while the process lives), and a call this process
    gave back unsent is still known as such for the next pass (released then, not settled `unknown`)."""
    import time

    from dialer.campaigns import StoredCampaign
    from dialer.config import AsteriskServer
    from dialer.pacing import CampaignEstimators
    from dialer.runtime.engine import CampaignRunner, Engine, build_gate
    from dialer.runtime.queues import QueuedContact
    from tests.runtime_support import engine_config

    server = redis_factory.start()
    client = redislib.Redis.from_url(server.url)
    engine = Engine(client, build_gate(client, engine_config(server.url)),
                    [AsteriskServer("sbx", "127.0.0.1", 1, "u", "s")], settings=SETTINGS)
    queue = ContactQueue(client, "acme", "c1")
    queue.add([QueuedContact("k1", "+33145670001"), QueuedContact("k2", "+33145670002")], at=AT.timestamp())
    wall = time.time()
    queue.claim(2, owner=engine.id, now=AT.timestamp(), lease_until=wall - 1, call_ids=["sent-back", "other"],
                servers=["sbx", "sbx"])
    taken = queue.take_over_expired(owner=engine.id, now_wall=wall, lease_until=wall + 60)
    assert {t.claim.call_id for t in taken} == {"sent-back", "other"}
    engine._not_sent["sent-back"] = wall  # its give-back was lost (a failover): never dialed
    r = CampaignRunner("acme", "c1", queue, CampaignEstimators(),
                       StoredCampaign("c1", "acme", "running", {}, "", "", "", ""))
    server.kill()
    try:
        await engine._resolve(r, sorted(taken, key=lambda t: t.claim.call_id != "sent-back"))
    except redislib.RedisError:
        pass
    else:
        raise AssertionError("resolved without Redis")
    assert r.claims == {}  # not renewed: the leases lapse and a later pass resolves them
    assert "sent-back" in engine._not_sent
    client.close()
