"""Inbound CRM events: opt-outs and consent withdrawals pushed with the API tokens, idempotent by the CRM's id,
recorded through the same store as POST /v1/optouts and /v1/consents (real gateway, real redis-server)."""

from __future__ import annotations

import asyncio

import pytest

from dialer.facts import optout_log_key
from tests.gateway_support import start_gateway, stop_gateway

ANN = "+33145678901"


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


async def post(gw, body, tenant="acme", role="uploader"):
    resp = await gw.client.post("/v1/crm/events", json=body, headers=gw.auth(tenant, role))
    return resp.status, await resp.json()


async def test_optout_recorded_once_however_often_it_is_sent(gw):
    event = {"id": "crm-123", "type": "optout", "phone": "01 45 67 89 01", "country": "FR", "source": "salesforce"}
    status, first = await post(gw, event)
    assert status == 201 and first["phone"] == ANN and first["duplicate"] is False
    status, again = await post(gw, event)
    assert status == 200 and again["duplicate"] is True and again["at"] == first["at"]
    assert await gw.redis.xlen(optout_log_key("acme")) == 1
    assert await gw.redis.hexists("t:{acme}:dnc", ANN)
    audit = await gw.redis.xrange("t:{acme}:audit")
    assert sum(1 for _, e in audit if "optout" in str(e)) >= 1


async def test_concurrent_retries_record_once(gw):
    event = {"id": "crm-race", "type": "optout", "phone": ANN}
    results = await asyncio.gather(*(post(gw, event) for _ in range(5)))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}
    assert await gw.redis.xlen(optout_log_key("acme")) == 1


async def test_same_id_with_another_body_is_a_conflict(gw):
    assert (await post(gw, {"id": "crm-1", "type": "optout", "phone": ANN}))[0] == 201
    status, body = await post(gw, {"id": "crm-1", "type": "optout", "phone": "+33145678902"})
    assert status == 409 and body["error"]["code"] == "id_reused" and body["error"]["field"] == "id"


async def test_consent_withdrawal_goes_where_consents_go(gw):
    status, body = await post(gw, {"id": "w-1", "type": "consent.withdrawn", "phone": ANN, "source": "crm"})
    assert status == 201 and body["type"] == "consent.withdrawn"
    resp = await gw.client.get("/v1/consents", params={"phone": ANN}, headers=gw.auth("acme", "auditor"))
    [record] = (await resp.json())["items"]
    assert record["withdrawn_at"] and record["source"] == "crm"


async def test_ids_are_per_tenant_and_bad_input_records_nothing(gw):
    assert (await post(gw, {"id": "same", "type": "optout", "phone": ANN}))[0] == 201
    assert (await post(gw, {"id": "same", "type": "optout", "phone": ANN}, tenant="globex"))[0] == 201
    status, body = await post(gw, {"id": "bad", "type": "optout", "phone": "not a number"})
    assert status == 422 and body["error"]["field"] == "phone"
    # The refused id is not remembered: once fixed, the same id records.
    assert (await post(gw, {"id": "bad", "type": "optout", "phone": "+33145678903"}))[0] == 201
    status, body = await post(gw, {"id": "x", "type": "optout", "phone": ANN, "scope": "campaign"})
    assert status == 422 and body["error"]["field"] == "campaign"
    assert (await post(gw, {"id": "y", "type": "optout", "phone": ANN}, role="auditor"))[0] == 403
    resp = await gw.client.post("/v1/crm/events", json={"id": "z", "type": "optout", "phone": ANN})
    assert resp.status == 401
