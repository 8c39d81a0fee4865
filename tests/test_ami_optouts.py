"""Opt-outs from the dialplan reach the company-wide DNC (real redis-server, real sandbox PBX)."""

from __future__ import annotations

import asyncio

import redis

from dialer.ami.calls import OptOut
from dialer.ami.optouts import OptOutRecorder
from dialer.ami.pool import AMIPool
from dialer.facts import FactStore
from tests.test_ami_client import eventually, request, sandbox_digit, server_config, start_pbx


async def test_keypress_opt_out_lands_in_the_company_dnc(redis_client):
    store = FactStore(redis_client)
    recorder = OptOutRecorder.for_fact_store(store)
    pbx = await start_pbx()
    outcomes = []
    try:
        async with AMIPool(
            [server_config(pbx)], on_optout=recorder, on_outcome=lambda s, o: outcomes.append(o)
        ) as pool:
            req = request(sandbox_digit(optout=True), ai_disclosure=True)  # the callee presses 9 during the disclosure
            await pool.originate("sbx", req)
            await eventually(lambda: recorder.recorded == 1 and outcomes)
    finally:
        await pbx.stop()
    entry = store.optout("acme", req.contact)
    assert entry is not None
    assert (entry.source, entry.call_id, entry.campaign, entry.scope) == ("keypress", req.call_id, "camp1", "company")
    assert outcomes[0].disposition == "opted_out"
    assert recorder.pending == {}


async def test_an_opt_out_is_retried_until_redis_is_back(redis_factory):
    server = redis_factory.start()
    port = server.port
    client = redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.5)
    store = FactStore(client)
    server.kill()
    recorder = OptOutRecorder.for_fact_store(store, retry_initial=0.05, retry_max=0.2)
    optout = OptOut("call-9", "camp1", "acme", "+33100000007", 1795400000.0, "9", "1.1")
    task = asyncio.create_task(recorder("sbx", optout))
    await asyncio.sleep(0.5)
    assert not task.done() and "call-9" in recorder.pending  # failing, still held, not dropped
    redis_factory.start(port=port)
    await asyncio.wait_for(task, 10)
    assert recorder.pending == {} and recorder.recorded == 1
    entry = store.optout("acme", "+33100000007")
    assert entry is not None and entry.call_id == "call-9" and entry.at.timestamp() == 1795400000.0
    client.close()
