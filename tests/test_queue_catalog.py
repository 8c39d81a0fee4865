"""The PBXs' queues as the engines list them (dialer/runtime/queue_catalog.py), and the gateway refusing a campaign
on a queue no PBX has when it is created, changed or started, instead of holding it only when it would dial."""

from __future__ import annotations

import asyncio
import json

from dialer.ami.protocol import Message
from dialer.runtime import queue_catalog
from dialer.runtime.engine import offset_clock, run_engine
from tests.gateway_support import start_gateway, stop_gateway
from tests.runtime_support import AT, engine_config, eventually
from tests.test_runtime_engine import SETTINGS, sandbox, start_pbx

NOW = 1_800_000_000.0


def listing(at: float, *names: str) -> str:
    return json.dumps({"at": at, "queues": list(names)})


def test_queue_names_come_from_queuesummary_events():
    events = [Message([("Event", "QueueSummary"), ("Queue", "sales")]), Message([("Event", "QueueSummary"),
              ("Queue", "dialer")]), Message([("Event", "QueueSummaryComplete"), ("ListItems", "2")])]
    assert queue_catalog.queue_names(events) == ["dialer", "sales"]


def test_verdicts():
    fresh = {b"asterisk:a": listing(NOW - 10, "sales").encode(), "asterisk:b": listing(NOW - 20, "support")}
    assert queue_catalog.verdict(fresh, "support", NOW) == queue_catalog.PRESENT  # on one PBX is enough
    assert queue_catalog.verdict(fresh, "Sales", NOW) == queue_catalog.MISSING  # exact names: agent events use them
    assert queue_catalog.verdict({}, "sales", NOW) == queue_catalog.UNKNOWN  # no engine has listed: cannot know
    stale = {"asterisk:a": listing(NOW - queue_catalog.MAX_AGE - 1, "sales")}
    assert queue_catalog.verdict(stale, "nope", NOW) == queue_catalog.UNKNOWN
    assert queue_catalog.verdict({"asterisk:a": "{not json"}, "nope", NOW) == queue_catalog.UNKNOWN


async def test_an_engine_lists_every_queue_of_its_pbx(redis_url, redis_client):
    pbx = await start_pbx(queues={"dialer": 2, "sales": 1})
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(engine_config(redis_url), stop_event=stop, clock=offset_clock(AT),
                                          servers=[sandbox(pbx)], settings=SETTINGS, process_id="p1"))
    try:
        await eventually(lambda: redis_client.exists(queue_catalog.KEY), timeout=30)
    finally:
        stop.set()
        await task
        await pbx.stop()
    [(server, raw)] = redis_client.hgetall(queue_catalog.KEY).items()
    assert server.startswith(b"asterisk:")  # under the PBX's identity, whatever address it was reached by
    seconds, _ = redis_client.time()
    found = json.loads(raw)
    assert found["queues"] == ["dialer", "sales"] and abs(found["at"] - seconds) < 60  # Redis's clock, not AT


async def test_the_gateway_refuses_a_campaign_on_a_queue_no_pbx_has(redis_url, redis_client):
    gw = await start_gateway(redis_url)
    try:
        sup = gw.auth("acme", "supervisor")
        await gw.ensure_list("acme", "l1")
        body = {"name": "Spring", "caller_id": "+33162000000", "seller_name": "Acme SAS", "lists": ["l1"]}
        # no engine has listed any PBX: saved (the engine holds it if the queue is missing)
        resp = await gw.client.post("/v1/campaigns", json={**body, "queue": "nope"}, headers=sup)
        assert resp.status == 201, await resp.text()
        unlisted = (await resp.json())["id"]
        seconds, _ = redis_client.time()
        redis_client.hset(queue_catalog.KEY, "asterisk:pbx1", listing(float(seconds), "sales", "support"))
        resp = await gw.client.post("/v1/campaigns", json={**body, "queue": "Sales"}, headers=sup)
        assert resp.status == 422
        error = (await resp.json())["error"]
        assert error["code"] == "unknown_queue" and error["field"] == "queue" and "support" not in error["message"]
        resp = await gw.client.post("/v1/campaigns", json={**body, "queue": "sales"}, headers=sup)
        assert resp.status == 201, await resp.text()
        good = (await resp.json())["id"]
        resp = await gw.client.patch(f"/v1/campaigns/{good}", json={"queue": "gone"}, headers=sup)
        assert resp.status == 422 and (await resp.json())["error"]["code"] == "unknown_queue"
        resp = await gw.client.post(f"/v1/campaigns/{unlisted}/start", headers=sup)  # saved earlier, refused now
        assert resp.status == 409 and (await resp.json())["error"]["code"] == "unknown_queue"
        resp = await gw.client.post(f"/v1/campaigns/{good}/start", headers=sup)
        assert resp.status == 200, await resp.text()
    finally:
        await stop_gateway(gw)
