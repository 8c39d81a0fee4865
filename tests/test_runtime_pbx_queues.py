"""Issue 16 point 11: a campaign on an Asterisk queue the PBX does not have is refused (reason code, text, one log
line, one audit entry, shown by `dialer campaigns show`) and dials once the queue appears (`queue reload all`);
AI-endpoint campaigns have no queue and are not checked. Pure verdicts, then the engine against the sandbox PBX
(which answers QueueStatus as Asterisk 22.10.1 does: tests/test_sandbox_queuestatus.py)."""

from __future__ import annotations

import asyncio
import json
import logging

from dialer.ami.protocol import Message
from dialer.audit import stream_key
from dialer.campaigns import CampaignStore
from dialer.livestats import stats_key
from dialer.runtime.engine import offset_clock, run_engine
from dialer.runtime.pbx_queues import (
    QUEUE_MISSING,
    QUEUE_NAME_CASE,
    QUEUE_UNCHECKED,
    QueuePresence,
    campaign_queue,
    listed_name,
)
from dialer.runtime.report import campaign_summary
from tests.runtime_support import AT, OriginateObserver, engine_config, eventually, numbers, setup_campaign
from tests.test_runtime_engine import SETTINGS, sandbox, start_pbx


def params(queue: str) -> Message:
    return Message([("Event", "QueueParams"), ("Queue", queue), ("Max", "0")])


def test_the_queue_is_known_by_its_queueparams_event_in_any_case():
    member = Message([("Event", "QueueMember"), ("Queue", "sales"), ("Name", "Agent 1")])
    assert listed_name("sales", [params("sales"), member]) == "sales"
    assert listed_name("SALES", [params("sales")]) == "sales"
    assert listed_name("sales", [member]) is None  # a member alone says nothing: QueueParams comes first
    assert listed_name("sales", []) is None  # Asterisk's answer for a queue it does not have: ListItems 0


def test_verdicts():
    presence = QueuePresence()
    assert presence.verdict("sales", {"a": 1}).code == QUEUE_UNCHECKED  # not asked yet: no call, nothing said
    presence.observe("a", "sales", 1, None)
    missing = presence.verdict("sales", {"a": 1})
    assert (missing.code, missing.servers, missing.refused) == (QUEUE_MISSING, (), True)
    assert "queue 'sales' does not exist on server a" in missing.text and "queue reload all" in missing.text
    presence.observe("a", "sales", 1, "sales")
    ok = presence.verdict("sales", {"a": 1})
    assert (ok.code, ok.servers) == ("", ("a",))
    assert presence.verdict("sales", {"a": 2}).code == QUEUE_UNCHECKED  # reconnected: asked again first
    presence.observe("a", "Sales", 2, "sales")
    renamed = presence.verdict("Sales", {"a": 2})
    assert renamed.code == QUEUE_NAME_CASE and "set the campaign's queue to 'sales'" in renamed.text
    # two servers, one without the queue: calls go through the other only, and it is said
    presence.observe("b", "sales", 1, None)
    both = presence.verdict("sales", {"a": 1, "b": 1})
    assert (both.code, both.servers, both.lacking) == ("", ("a",), ("b",))
    assert presence.verdict("sales", {}).code == ""  # no server connected: nothing to say about the queue


def test_ai_campaigns_have_no_queue_to_check():
    assert campaign_queue({"agent_kind": "ai", "queue": "nosuch", "ai_endpoint": "Local/ai@sim-ai"}) == ""
    assert campaign_queue({"queue": " sales "}) == "sales"


def audit_entries(client, kind: str) -> list[dict]:
    return [json.loads(fields[b"payload"]) for _, fields in client.xrange(stream_key("acme"))
            if fields[b"kind"] == kind.encode()]


async def test_a_campaign_on_a_missing_queue_is_refused_then_dials_after_a_queue_reload(redis_url, redis_client,
                                                                                        tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dialer")
    phones = [p for p in numbers(20) if p[-1] in "05"][:3]  # answered calls
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False, queue="sales")
    pbx = await start_pbx()  # queue "dialer" only
    store = CampaignStore(redis_client)
    stop = asyncio.Event()
    try:
        async with OriginateObserver(pbx.port) as observer:
            task = asyncio.create_task(run_engine(engine_config(redis_url), stop_event=stop, clock=offset_clock(AT),
                                                  servers=[sandbox(pbx)], settings=SETTINGS, process_id="p1"))
            key = stats_key("acme", campaign)
            await eventually(lambda: redis_client.hget(key, "pacing_reason") == QUEUE_MISSING.encode(), timeout=30)
            await asyncio.sleep(1.0)  # several agent polls and ticks: still refused, said once
            assert sum(observer.by_number.values()) == 0 and not pbx.pbx.calls
            assert store.get("acme", campaign).status == "running"  # not "completed" with every call dropped
            refused = campaign_summary(redis_client, "acme", campaign, AT)["refused"]
            assert refused["code"] == QUEUE_MISSING and "queue 'sales' does not exist on server sbx" in refused["text"]
            errors = [r for r in caplog.records if r.levelno == logging.ERROR and QUEUE_MISSING in r.getMessage()]
            assert len(errors) == 1
            assert [(e["state"], e["code"]) for e in audit_entries(redis_client, "campaign_dialing")] == [
                ("refused", QUEUE_MISSING)]

            pbx.reload_queues({"dialer": 3, "sales": 3})  # queues.conf edited, `queue reload all`
            await eventually(lambda: store.get("acme", campaign).status == "completed", timeout=60)
            await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
        await pbx.stop()
    assert {p: observer.by_number[p] for p in phones} == dict.fromkeys(phones, 1)
    assert [(e["state"], e["queue"]) for e in audit_entries(redis_client, "campaign_dialing")] == [
        ("refused", "sales"), ("resumed", "sales")]
    assert campaign_summary(redis_client, "acme", campaign, AT)["refused"] is None
    assert any("queue 'sales' found on sbx; dialing resumes" in r.getMessage() for r in caplog.records)


async def test_a_queue_removed_by_a_reload_stops_the_campaign_until_it_is_back(redis_url, redis_client, tmp_path):
    phones = [p for p in numbers(40) if p[-1] in "05"][:6]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False)
    pbx = await start_pbx(queues={"dialer": 1})
    store = CampaignStore(redis_client)
    stop = asyncio.Event()
    key = stats_key("acme", campaign)
    try:
        async with OriginateObserver(pbx.port) as observer:
            task = asyncio.create_task(run_engine(engine_config(redis_url), stop_event=stop, clock=offset_clock(AT),
                                                  servers=[sandbox(pbx)], settings=SETTINGS, process_id="p1"))
            await eventually(lambda: sum(observer.by_number.values()) >= 1, timeout=30)
            pbx.reload_queues({})  # the queue is taken out of queues.conf
            await eventually(lambda: redis_client.hget(key, "pacing_reason") == QUEUE_MISSING.encode(), timeout=30)
            placed = sum(observer.by_number.values())
            await asyncio.sleep(1.0)
            assert sum(observer.by_number.values()) == placed < len(phones)
            pbx.reload_queues({"dialer": 1})
            await eventually(lambda: store.get("acme", campaign).status == "completed", timeout=60)
    finally:
        stop.set()
        await task
        await pbx.stop()
    assert sum(observer.by_number.values()) == len(phones)
