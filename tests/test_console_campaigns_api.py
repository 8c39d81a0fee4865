"""What the console's campaign pages read, on a real gateway and redis-server: campaign progress (finished campaigns
included), the agents of a campaign's queue as the engine publishes them, the tenant stream's last event when a
campaign completes, the user's language and zone, pattern errors in words, the message catalogues."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis as redis_lib

from dialer import livestats
from dialer.campaigns import CampaignStore
from dialer.holds import CODES as HOLD_CODES
from dialer.runtime.agents import Member
from dialer.runtime.agentstates import LOGGED_OFF_KEEP, AgentStates, member_state, queue_board
from dialer.runtime.progress import summarise
from dialer.runtime.queues import ContactQueue
from gateway.app import api_routes
from gateway.validation import PATTERN_WORDS
from rules.engine import REASON_CODES
from tests.gateway_support import start_gateway, stop_gateway
from tests.test_gateway_live import read_event

STATIC = Path(__file__).resolve().parent.parent / "gateway" / "static"


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


def sync_client(gw) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(gw.redis_url, decode_responses=True)


def test_progress_figures():
    figures = summarise({"ready": 4, "waiting": 2, "inflight": 1, "final": 9},
                        Counter({"answered": 3, "max_attempts": 2, "gate_denied": 3, "no_valid_number": 1}),
                        list_members=20, known=16, dispositions={"answered": 3, "abandoned": 1, "busy": 4},
                        denials={"NATIONAL_REGISTRY": 3, "NO_CONSENT": 1})
    assert (figures["done"], figures["never_callable"], figures["remaining"]) == (5, 4, 4 + 2 + 1 + 4)
    assert figures["answered"] == 3 and figures["abandon_rate"] == 0.25 and figures["attempts"] == 8
    assert figures["denials"] == 4 and figures["top_denials"][0] == {"reason": "NATIONAL_REGISTRY", "count": 3}


async def test_campaign_list_includes_finished_ones_with_their_progress(gw):
    cid = (await gw.ready_campaign())["id"]
    draft = (await gw.ready_campaign())["id"]
    sync = sync_client(gw)
    queue = ContactQueue(sync, "acme", cid)
    # two contacts taken and final, as the queue's scripts count them (dialer/runtime/queue_lua.py)
    sync.hset(queue.keys["tally"], mapping={"taken": 2, "final": 2, "r:answered": 1, "r:gate_denied": 1,
                                            "d:COMPANY_DNC": 1})
    pipe = sync.pipeline()
    livestats.queue_disposition(pipe, "acme", cid, "answered", datetime.now(UTC))
    livestats.queue_denial(pipe, "acme", cid, "COMPANY_DNC")
    pipe.execute()
    for action in ("start", "stop"):
        await gw.client.post(f"/v1/campaigns/{cid}/{action}", headers=gw.auth("acme", "supervisor"))
    CampaignStore(sync).control("acme", cid, "complete", by="engine", at=datetime.now(UTC))
    listed = await (await gw.client.get("/v1/campaigns?progress=true", headers=gw.auth("acme", "uploader"))).json()
    by_id = {c["id"]: c for c in listed["items"]}
    assert by_id[cid]["status"] == "completed"
    done = by_id[cid]["progress"]
    # The sample list has 2 callable members (tests/gateway_support.py): both are known to the queue here.
    assert (done["done"], done["never_callable"], done["remaining"], done["answered"], done["denials"]) == \
        (1, 1, 0, 1, 1)
    assert by_id[draft]["progress"]["remaining"] == 2  # a draft: its list's contacts are all still to call
    # A finished campaign's progress is kept: later changes to its (final) queue are not re-read.
    sync.hincrby(queue.keys["tally"], "r:answered", -1)
    again = await (await gw.client.get("/v1/campaigns?progress=true", headers=gw.auth())).json()
    assert {c["id"]: c for c in again["items"]}[cid]["progress"] == done
    plain = await (await gw.client.get("/v1/campaigns", headers=gw.auth())).json()
    assert "progress" not in plain["items"][0]
    assert (await gw.client.get("/v1/campaigns?progress=maybe", headers=gw.auth())).status == 422
    sync.close()


def test_agent_states_remember_since_when_and_log_offs():
    tracker = AgentStates()
    a = Member("ann", interface="SIP/ann")
    rows = tracker.observe("sales", [("s|SIP/ann", a)], {}, now=100.0, wall=1000.0, wrapup=5.0)
    assert rows["s|SIP/ann"]["state"] == "free" and rows["s|SIP/ann"]["since"] == 1000.0
    a.in_call = True
    rows = tracker.observe("sales", [("s|SIP/ann", a)], {"s|SIP/ann": "acme/c1"}, now=110.0, wall=1010.0, wrapup=5.0)
    assert rows["s|SIP/ann"] == {"name": "ann", "server": "s", "state": "on_call", "since": 1010.0, "call": "acme/c1"}
    rows = tracker.observe("sales", [("s|SIP/ann", a)], {"s|SIP/ann": "acme/c1"}, now=120.0, wall=1020.0, wrapup=5.0)
    assert rows["s|SIP/ann"]["since"] == 1010.0  # same state: same start
    a.in_call, a.ended_at = False, 120.0
    assert member_state(a, 122.0, 5.0) == "wrapup" and member_state(a, 126.0, 5.0) == "free"
    a.paused = True
    assert member_state(a, 130.0, 5.0) == "paused"
    rows = tracker.observe("sales", [], {}, now=130.0, wall=1030.0, wrapup=5.0)
    assert rows["s|SIP/ann"]["state"] == "logged_off" and rows["s|SIP/ann"]["since"] == 1030.0
    assert tracker.observe("sales", [], {}, now=0, wall=1031.0 + LOGGED_OFF_KEEP, wrapup=5.0) == {}


async def test_agents_route_names_only_own_campaigns(gw):
    mine = (await gw.ready_campaign())["id"]
    theirs = (await gw.ready_campaign("globex"))["id"]
    tracker = AgentStates()
    rows = tracker.observe("sales", [("p|SIP/a", Member("a", in_call=True)), ("p|SIP/b", Member("b", in_call=True)),
                                     ("p|SIP/c", Member("c"))],
                           {"p|SIP/a": f"acme/{mine}", "p|SIP/b": f"globex/{theirs}"}, now=1.0, wall=1000.0,
                           wrapup=5.0)
    sync = sync_client(gw)
    pipe = sync.pipeline(transaction=True)
    queue_board(pipe, "sales", rows, waiting=3)
    pipe.execute()
    body = await (await gw.client.get(f"/v1/campaigns/{mine}/agents", headers=gw.auth("acme", "auditor"))).json()
    assert body["queue"] == "sales" and body["waiting"] == 3
    by_name = {a["name"]: a for a in body["agents"]}
    assert by_name["a"]["call"] == {"campaign": mine, "name": "Spring offer"}
    assert by_name["b"]["call"] == {"other_tenant": True} and theirs not in json.dumps(body)
    assert by_name["c"]["state"] == "free" and by_name["c"]["call"] is None
    assert (await gw.client.get(f"/v1/campaigns/{theirs}/agents", headers=gw.auth("acme", "admin"))).status == 404
    assert (await gw.client.get(f"/v1/campaigns/{mine}/agents", headers=gw.auth("acme", "uploader"))).status == 403
    sync.close()


async def test_tenant_stream_sends_the_final_status_of_a_campaign_that_completes(gw):
    cid = (await gw.ready_campaign())["id"]
    for action in ("start", "stop"):
        await gw.client.post(f"/v1/campaigns/{cid}/{action}", headers=gw.auth("acme", "supervisor"))
    resp = await gw.client.get("/v1/stream", headers=gw.auth("acme", "auditor"))
    assert (await read_event(resp))["status"] == "stopping"
    sync = sync_client(gw)
    CampaignStore(sync).control("acme", cid, "complete", by="engine", at=datetime.now(UTC))
    sync.close()
    event = await read_event(resp, timeout=3.0)
    assert event["campaign"] == cid and event["status"] == "completed"
    resp.close()


async def test_preferences_default_from_accept_language_and_are_kept(gw):
    headers = {**gw.auth("acme", "uploader"), "Accept-Language": "de-DE,fr;q=0.8,en;q=0.5"}
    body = await (await gw.client.get("/v1/me/preferences", headers=headers)).json()
    assert body == {"language": "fr", "time_zone": "", "chosen": False}
    resp = await gw.client.put("/v1/me/preferences", json={"time_zone": "Mars/Olympus"}, headers=headers)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "time_zone"
    resp = await gw.client.put("/v1/me/preferences", json={"language": "xx"}, headers=headers)
    assert resp.status == 422
    resp = await gw.client.put("/v1/me/preferences", json={"language": "en", "time_zone": "Europe/Paris"},
                               headers=headers)
    assert await resp.json() == {"language": "en", "time_zone": "Europe/Paris", "chosen": True}
    # Per user: another user of the tenant still gets their browser's language.
    other = await (await gw.client.get("/v1/me/preferences", headers={**gw.auth("acme", "auditor"),
                                                                      "Accept-Language": "fr"})).json()
    assert other["language"] == "fr" and other["chosen"] is False


async def test_pattern_errors_are_in_words(gw):
    resp = await gw.client.post("/v1/campaigns", json={"name": "x", "lists": ["spring list"]},
                                headers=gw.auth("acme", "supervisor"))
    error = (await resp.json())["error"]
    assert resp.status == 422 and error["field"] == "lists[0]"
    assert "letters" in error["message"] and "pattern" not in error["message"] and "^" not in error["message"]
    resp = await gw.client.post("/v1/campaigns", json={"name": "x", "time_zone": "Paris"},
                                headers=gw.auth("acme", "supervisor"))
    assert resp.status == 422 and "time zone" in (await resp.json())["error"]["message"]


def test_every_pattern_of_the_api_has_words():
    patterns: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.add(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for route in api_routes():
        walk([route.body, route.query, route.raw_body])
    missing = sorted(p for p in patterns if p not in PATTERN_WORDS)
    assert missing == [], f"add these patterns to gateway/validation.py PATTERN_WORDS: {missing}"


def gate_reasons() -> list:
    from dialer import gate
    from rules.engine import Reason

    found = [v for v in vars(gate).values() if isinstance(v, Reason)] + list(gate.HOLDS.values())
    assert {"STATE_UNAVAILABLE", "ERASED_SUPPRESSED", "TENANT_SUSPENDED"} <= {r.code for r in found}
    return found


def test_catalogues_cover_each_other_and_every_reason_code():
    en = json.loads((STATIC / "i18n" / "en.json").read_text())
    fr = json.loads((STATIC / "i18n" / "fr.json").read_text())
    assert sorted(en) == sorted(fr)
    for code, text in REASON_CODES.items():
        assert en[f"reason.{code}"] == text  # the gate's own words (rules/engine.py)
        assert fr[f"reason.{code}"] and fr[f"reason.{code}"] != text
    # the gate's fail-closed denials (dialer/gate.py: Redis unreachable, contention, an erased person...) and its
    # holds are counted among a campaign's denials and listed by a number's lookup like any rule's
    for reason in gate_reasons():
        if reason.code not in HOLD_CODES and reason.code not in REASON_CODES:  # those two have their words above
            assert en.get(f"reason.{reason.code}") == reason.text, reason.code
        assert en.get(f"reason.{reason.code}") and fr.get(f"reason.{reason.code}"), reason.code
        assert fr[f"reason.{reason.code}"] != en[f"reason.{reason.code}"], reason.code
    for key in en:  # the placeholders match, so a French text never loses a figure
        assert set(re.findall(r"\{(\w+)\}", en[key])) == set(re.findall(r"\{(\w+)\}", fr[key])), key
    used = set()
    for path in STATIC.rglob("*.js"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+[a-z_])["']""", path.read_text()))
    nav = (STATIC / "nav.js").read_text()
    used |= set(re.findall(r'label: "([a-z_.]+)"', nav))
    assert sorted(used - set(en)) == []
