"""Issue 16 points 8 and 10 (authentication part), on the real aiohttp gateway and a real redis-server: the
audit trail keeps first use of a token per period, changes, data access and refusals, and counts the rest;
failed authentications are rate-limited per client address and per token id (429, audited)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from gateway import audit_policy, guard
from gateway.auth import AuthStore
from tests.gateway_support import audit_events, start_gateway, stop_gateway


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


def uses(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("action") == "token.use"]


async def test_reads_are_audited_once_per_period_and_counted_otherwise(gw):
    for _ in range(50):
        assert (await gw.client.get("/v1/me", headers=gw.auth("acme", "supervisor"))).status == 200
    found = uses(await audit_events(gw, "acme"))
    assert [(e["route"], e["why"]) for e in found] == [("/v1/me", "first_use")]
    assert found[0]["client"] == "127.0.0.1"
    resp = await gw.client.get("/v1/audit/usage", headers=gw.auth("acme", "auditor"))
    assert resp.status == 200
    body = await resp.json()
    token_id = gw.tokens[("acme", "supervisor")][4:14]
    assert body["day"] == datetime.now(UTC).strftime("%Y-%m-%d")
    assert {"token": token_id, "method": "GET", "route": "/v1/me", "count": 49} in body["items"]
    resp = await gw.client.get("/v1/audit/usage?day=2026-02-30", headers=gw.auth("acme", "auditor"))
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "day"


async def test_changes_and_data_access_are_audited_every_time(gw):
    headers = gw.auth("acme", "supervisor")
    for _ in range(3):
        assert (await gw.client.get("/v1/consents?phone=%2B33612345678", headers=headers)).status == 200
    for i in range(2):
        resp = await gw.client.post("/v1/campaigns", json={"name": f"c{i}"}, headers=headers)
        assert resp.status == 201
    found = [(e["method"], e["route"], e["why"]) for e in uses(await audit_events(gw, "acme"))]
    assert found == [("GET", "/v1/consents", "data_access")] * 3 + [("POST", "/v1/campaigns", "change")] * 2


async def test_a_new_period_audits_the_first_use_again(redis_url):
    gw = await start_gateway(redis_url, DIALER_GATEWAY_AUDIT_TOKEN_USE_SECONDS="1")
    try:
        for _ in range(3):
            await gw.client.get("/v1/me", headers=gw.auth("acme", "admin"))
        await asyncio.sleep(1.1)
        await gw.client.get("/v1/me", headers=gw.auth("acme", "admin"))
        whys = [e["why"] for e in uses(await audit_events(gw, "acme"))]
        assert whys in (["first_use", "first_use"], ["first_use", "first_use", "first_use"])  # a period boundary
    finally:
        await stop_gateway(gw)


async def test_refused_requests_are_audited(gw):
    resp = await gw.client.post("/v1/users", json={"name": "x", "role": "admin"}, headers=gw.auth("acme", "auditor"))
    assert resp.status == 403
    [denied] = [e for e in await audit_events(gw, "acme") if e.get("action") == "token.denied"]
    assert (denied["status"], denied["route"], denied["actor"]) == (403, "/v1/users", "auditor-user")
    assert denied["kind"] == "token_use"
    # An expired token still names its tenant: the refusal goes to that tenant's trail.
    store = AuthStore(gw.redis)
    expired, _ = await store.create_token("globex", "admin-user", expires_at=datetime(2020, 1, 1, tzinfo=UTC))
    resp = await gw.client.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
    assert resp.status == 401
    [gone] = [e for e in await audit_events(gw, "globex") if e.get("action") == "token.denied"]
    assert gone["status"] == 401 and expired not in str(gone)
    # A made-up token names no tenant: the gateway-wide stream has it (token id only, never the secret).
    fake = "dlr_0123456789_" + "x" * 43
    assert (await gw.client.get("/v1/me", headers={"Authorization": f"Bearer {fake}"})).status == 401
    stream = await gw.redis.xrange(audit_policy.DENIED_STREAM)
    assert any(f["token"] == "0123456789" and f["status"] == "401" and f["client"] == "127.0.0.1"
               for _, f in stream)
    assert fake not in str(stream)


async def test_failed_authentications_are_rate_limited_per_address(redis_url):
    gw = await start_gateway(redis_url, DIALER_GATEWAY_AUTH_FAILURES_PER_MINUTE="5")
    try:
        # Without a token there is nothing to guess: not counted (a page may poll before login).
        assert [(await gw.client.get("/v1/me")).status for _ in range(8)] == [401] * 8
        statuses = []
        for i in range(8):
            fake = f"dlr_{i:010d}_" + "y" * 43
            statuses.append((await gw.client.get("/v1/me", headers={"Authorization": f"Bearer {fake}"})).status)
        assert statuses == [401] * 5 + [429] * 3
        resp = await gw.client.get("/v1/me", headers=gw.auth("acme", "admin"))  # this address is blocked
        assert resp.status == 429 and 1 <= int(resp.headers["Retry-After"]) <= guard.WINDOW
        assert (await resp.json())["error"]["code"] == "too_many_failures"
        stream = await gw.redis.xrange(audit_policy.DENIED_STREAM)
        assert [f["status"] for _, f in stream].count("429") == 1  # the moment the limit was reached
    finally:
        await stop_gateway(gw)


async def test_failures_on_one_token_id_block_that_id_from_any_address(redis_url):
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for i in range(3):
            await guard.failed(client, f"192.0.2.{i}", "00aa11bb22", 3)
        assert await guard.blocked(client, "198.51.100.9", "00aa11bb22", 3) > 0
        assert await guard.blocked(client, "198.51.100.9", "ffffffffff", 3) == 0
        assert await guard.blocked(client, "192.0.2.1", None, 3) == 0
    finally:
        await client.aclose()
