"""Live figures: the engine-side writers, the snapshot, the SSE streams (<= 1 s behind) and /metrics."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from dialer import livestats
from tests.gateway_support import start_gateway, stop_gateway

AT = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


async def engine_writes(redis, tenant, campaign, at=None, **gauges):
    at = at or datetime.now(UTC)
    pipe = redis.pipeline(transaction=True)
    livestats.queue_gauges(pipe, tenant, campaign, gauges, at)
    await pipe.execute()


def test_unknown_gauge_is_refused():
    class Pipe:
        def hset(self, *a, **k):
            raise AssertionError("must not write")

    with pytest.raises(ValueError, match="bogus"):
        livestats.queue_gauges(Pipe(), "acme", "c1", {"bogus": 1}, AT)


def test_hours_are_the_last_24_utc_hours():
    hours = livestats.hours(AT)
    assert len(hours) == 24 and hours[-1] == AT.replace(minute=0) and hours[0] == AT.replace(minute=0) - timedelta(
        hours=23)


async def test_snapshot_reads_what_the_engine_wrote(gw):
    cid = (await gw.ready_campaign())["id"]
    pipe = gw.redis.pipeline(transaction=True)
    livestats.queue_gauges(pipe, "acme", cid, {"dialing": 3, "connected": 2, "abandon_rate_24h": 0.021}, AT)
    for _ in range(5):
        livestats.queue_attempt(pipe, "acme", cid, AT)
    livestats.queue_disposition(pipe, "acme", cid, "answered", AT)
    livestats.queue_disposition(pipe, "acme", cid, "busy", AT - timedelta(hours=2))
    livestats.queue_denial(pipe, "acme", cid, "OUTSIDE_CALLING_HOURS")
    await pipe.execute()
    raw_pipe = gw.redis.pipeline(transaction=False)
    livestats.queue_snapshot_reads(raw_pipe, "acme", cid, AT)
    snap = livestats.build_snapshot(await raw_pipe.execute(), AT)
    assert snap["gauges"]["dialing"] == 3 and snap["gauges"]["abandon_rate_24h"] == 0.021
    assert snap["gauges"]["ringing"] == 0
    assert snap["dispositions"] == {"answered": 1, "busy": 1}
    assert snap["denials"] == {"OUTSIDE_CALLING_HOURS": 1}
    assert snap["hourly"][-1] == {"hour": "2026-03-02T10:00:00.000Z", "attempts": 5, "answered": 1}
    assert snap["hourly"][-3]["busy"] == 1
    assert 0 < await gw.redis.ttl(livestats.hour_key("acme", cid, AT)) <= livestats.HOUR_TTL


async def test_stats_route_is_tenant_scoped(gw):
    cid = (await gw.ready_campaign())["id"]
    await engine_writes(gw.redis, "acme", cid, connected=4)
    resp = await gw.client.get(f"/v1/campaigns/{cid}/stats", headers=gw.auth("acme", "auditor"))
    body = await resp.json()
    assert resp.status == 200 and body["gauges"]["connected"] == 4 and body["status"] == "draft"
    assert body["abandon_cap"] == 0.03
    assert (await gw.client.get(f"/v1/campaigns/{cid}/stats", headers=gw.auth("globex", "admin"))).status == 404


async def test_a_draining_server_shows_on_the_campaigns_figures(gw):
    """A runtime publishes the servers that refuse calls (dialer.runtime.servers); the snapshot carries the server's
    name and Asterisk's words only (not the process), and forgets an entry nobody refreshed."""
    cid = (await gw.ready_campaign())["id"]
    now = time.time()
    await gw.redis.hset("dialer:servers:draining", mapping={
        "10.0.0.5:5038": json.dumps({"server": "pbx-a", "message": "Asterisk is shutting down", "since": now - 4,
                                     "process": "host:1:x", "until": now + 60}),
        "10.0.0.6:5038": json.dumps({"server": "pbx-b", "message": "old", "since": now - 400, "until": now - 100})})
    resp = await gw.client.get(f"/v1/campaigns/{cid}/stats", headers=gw.auth("acme", "auditor"))
    body = await resp.json()
    assert body["servers_draining"] == [{"server": "pbx-a", "message": "Asterisk is shutting down",
                                         "since": pytest.approx(now - 4)}]
    await gw.redis.delete("dialer:servers:draining")
    body = await (await gw.client.get(f"/v1/campaigns/{cid}/stats", headers=gw.auth("acme", "auditor"))).json()
    assert body["servers_draining"] == []


async def read_event(resp, timeout: float = 5.0) -> dict:
    """The next `event: stats` of an SSE response."""
    buffer = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), deadline - time.monotonic())
        buffer = chunk
        lines = buffer.decode().splitlines()
        if "event: stats" in lines:
            data = next(line for line in lines if line.startswith("data: "))
            return json.loads(data[6:])
    raise AssertionError("no stats event in time")


async def test_campaign_stream_follows_the_engine_within_a_second(gw):
    cid = (await gw.ready_campaign())["id"]
    await gw.client.post(f"/v1/campaigns/{cid}/start", headers=gw.auth("acme", "supervisor"))
    resp = await gw.client.get(f"/v1/campaigns/{cid}/events", headers=gw.auth("acme", "supervisor"))
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    first = await read_event(resp)
    assert first["status"] == "running" and first["gauges"]["dialing"] == 0
    for n in (1, 7, 12):
        written = time.monotonic()
        await engine_writes(gw.redis, "acme", cid, dialing=n)
        event = await read_event(resp)
        assert event["gauges"]["dialing"] == n
        assert time.monotonic() - written < 1.0  # the notice wakes the stream at once
    # A write without the pub/sub notice is still picked up by the once-a-second re-read.
    await gw.redis.hset(livestats.stats_key("acme", cid), "ringing", 5)
    assert (await read_event(resp, timeout=2.5))["gauges"]["ringing"] == 5
    await gw.client.post(f"/v1/campaigns/{cid}/pause", headers=gw.auth("acme", "supervisor"))
    assert (await read_event(resp, timeout=2.5))["status"] == "paused"
    resp.close()


async def test_tenant_stream_carries_only_own_active_campaigns(gw):
    mine = (await gw.ready_campaign("acme"))["id"]
    draft = (await gw.ready_campaign("acme"))["id"]
    theirs = (await gw.ready_campaign("globex"))["id"]
    for tenant, cid in (("acme", mine), ("globex", theirs)):
        await gw.client.post(f"/v1/campaigns/{cid}/start", headers=gw.auth(tenant, "supervisor"))
    resp = await gw.client.get("/v1/stream", headers=gw.auth("acme", "auditor"))
    assert (await read_event(resp))["campaign"] == mine
    await engine_writes(gw.redis, "globex", theirs, dialing=9)
    await engine_writes(gw.redis, "acme", draft, dialing=8)
    await engine_writes(gw.redis, "acme", mine, dialing=2)
    event = await read_event(resp)
    assert event["campaign"] == mine and event["gauges"]["dialing"] == 2
    resp.close()


async def test_metrics_exposition(gw):
    cid = (await gw.ready_campaign())["id"]
    other = (await gw.ready_campaign("globex"))["id"]
    pipe = gw.redis.pipeline(transaction=True)
    livestats.queue_gauges(pipe, "acme", cid, {"dialing": 2, "ringing": 1, "connected": 3, "queue_depth": 40,
                                               "agents_free": 1, "agents_busy": 3, "abandon_rate_24h": 0.012,
                                               "abandon_rate_30d": 0.009}, AT)
    for disposition in ("answered", "answered", "busy"):
        livestats.queue_disposition(pipe, "acme", cid, disposition, AT)
    livestats.queue_denial(pipe, "acme", cid, "NO_CONSENT")
    livestats.queue_disposition(pipe, "globex", other, "answered", AT)
    await pipe.execute()
    resp = await gw.client.get("/metrics", headers=gw.auth("acme", "auditor"))
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    lines = set(text.splitlines())
    base = f'tenant="acme",campaign="{cid}"'
    assert f'dialer_calls_total{{{base},disposition="answered"}} 2' in lines
    assert f'dialer_calls_total{{{base},disposition="busy"}} 1' in lines
    assert f'dialer_gate_denials_total{{{base},reason="NO_CONSENT"}} 1' in lines
    assert f'dialer_abandon_rate{{{base},window="24h"}} 0.012' in lines
    assert f"dialer_active_channels{{{base}}} 6" in lines
    assert f"dialer_queue_depth{{{base}}} 40" in lines
    assert f'dialer_agents{{{base},state="busy"}} 3' in lines
    assert 'dialer_campaigns{tenant="acme",status="draft"} 1' in lines
    assert "globex" not in text and other not in text
    assert "# TYPE dialer_calls_total counter" in lines
    assert (await gw.client.get("/metrics", headers=gw.auth("acme", "uploader"))).status == 403
    assert (await gw.client.get("/metrics")).status == 401


def test_metrics_text_is_parseable_by_prometheus_rules():
    from gateway.metrics import render

    text = render({"dialer_calls_total": [({"tenant": 'a"b\\c', "campaign": "x\ny", "disposition": "answered"}, 3)]})
    assert 'dialer_calls_total{tenant="a\\"b\\\\c",campaign="x\\ny",disposition="answered"} 3' in text
    assert text.endswith("\n")


async def test_revoking_the_token_ends_an_open_stream(gw, monkeypatch):
    from gateway.api import live
    from gateway.auth import AuthStore

    monkeypatch.setattr(live, "REAUTH_SECONDS", 0.5)
    cid = (await gw.ready_campaign())["id"]
    store = AuthStore(gw.redis)
    token, record = await store.create_token("acme", "supervisor-user")
    resp = await gw.client.get(f"/v1/campaigns/{cid}/events", headers={"Authorization": f"Bearer {token}"})
    await read_event(resp)
    await store.revoke_token("acme", record["id"])
    rest = await asyncio.wait_for(resp.content.read(), timeout=5)  # the server ends the stream
    assert b"event: revoked" in rest
