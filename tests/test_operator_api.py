"""The operator's kill-switch over HTTP (issue 19): an admin of an operator tenant (setting gateway.operator_tenants)
suspends and resumes a tenant; the gate's reserve script refuses the tenant's next reservation at once, as after
`dialer tenant suspend`; who and why are audited; nobody else may do it or see it. Real app, real Redis, the real
gate."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis as redis_lib

from dialer import holds
from dialer.audit import AuditLog
from dialer.runtime.engine import build_gate
from dialer.webhooks.events import endpoints_key, outbox_key
from gateway.auth import AuthStore
from tests.gateway_support import audit_entries, start_gateway, stop_gateway
from tests.runtime_support import engine_config, numbers, setup_campaign
from tests.test_holds import reserve

OPS = "ops"


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url, DIALER_GATEWAY_OPERATOR_TENANTS=f" {OPS} , other-ops")
    store = AuthStore(gateway.redis)
    await store.create_tenant(OPS, "The platform")
    for role in ("admin", "supervisor"):
        await store.create_user(OPS, f"{role}-user", role)
        gateway.tokens[(OPS, role)] = (await store.create_token(OPS, f"{role}-user"))[0]
    yield gateway
    await stop_gateway(gateway)


async def test_an_operator_suspends_a_tenant_and_the_gate_refuses_it_at_once(gw, redis_url, tmp_path: Path):
    client = redis_lib.Redis.from_url(redis_url)
    await gw.redis.hset(endpoints_key("acme"), "ep1", "{}")  # acme has a webhook endpoint: it is told
    try:
        campaign = await asyncio.to_thread(setup_campaign, client, tmp_path, numbers(4, base="+331456790"))
        gate = await asyncio.to_thread(build_gate, client, engine_config(redis_url))
        assert (await asyncio.to_thread(reserve, gate, client, campaign, "+33145679001", "k1")).allowed
        listed = await (await gw.client.get("/v1/operator/tenants", headers=gw.auth(OPS))).json()
        assert {t["id"]: t["suspended"] for t in listed["items"]} == {"acme": False, "globex": False, OPS: False}
        resp = await gw.client.post("/v1/operator/tenants/acme/suspend", json={"reason": "abuse report #12"},
                                    headers=gw.auth(OPS))
        assert resp.status == 200, await resp.text()
        hold = await resp.json()
        assert (hold["code"], hold["reason"], hold["by"]) == ("TENANT_SUSPENDED", "abuse report #12",
                                                              "operator:admin-user (ops)")
        # at once: the tenant's next reservation is refused by the reserve script, whatever any process decided
        denied = await asyncio.to_thread(reserve, gate, client, campaign, "+33145679002", "k2")
        assert not denied.allowed and [r.code for r in denied.reasons] == ["TENANT_SUSPENDED"]
        # the API refuses the tenant new work, with the reason; the tenant sees its hold, another tenant does not
        refused = await gw.client.post(f"/v1/campaigns/{campaign}/start", headers=gw.auth("acme", "supervisor"))
        assert refused.status == 403 and "abuse report #12" in (await refused.json())["error"]["message"]
        own = await (await gw.client.get("/v1/holds", headers=gw.auth("acme", "auditor"))).json()
        assert [h["code"] for h in own["items"]] == ["TENANT_SUSPENDED"]
        other = await (await gw.client.get("/v1/holds", headers=gw.auth("globex", "admin"))).json()
        assert other["items"] == []
        listed = await (await gw.client.get("/v1/operator/tenants", headers=gw.auth(OPS))).json()
        assert [t["id"] for t in listed["items"] if t["suspended"]] == ["acme"]
        # audited: in the suspended tenant's trail (who, why) and in the operator's own
        trail = [(e.actor, e.payload["action"], e.payload.get("reason"))
                 for e in AuditLog(client).entries("acme") if e.kind == "hold"]
        assert trail == [("operator:admin-user (ops)", "suspend", "abuse report #12")]
        assert [(e.actor, e.payload.get("target")) for e in await audit_entries(gw, OPS)
                if e.payload.get("action") == "operator.tenant_suspend"] == [("admin-user", "acme")]
        resp = await gw.client.post("/v1/operator/tenants/acme/resume", json={"reason": "cleared"},
                                    headers=gw.auth(OPS))
        assert resp.status == 200 and (await resp.json())["suspended"] is False
        assert (await asyncio.to_thread(reserve, gate, client, campaign, "+33145679003", "k3")).allowed
        again = await gw.client.post("/v1/operator/tenants/acme/resume", json={}, headers=gw.auth(OPS))
        assert again.status == 409 and (await again.json())["error"]["code"] == "not_suspended"
        assert [e.payload["action"] for e in AuditLog(client).entries("acme") if e.kind == "hold"] == \
            ["suspend", "resume"]
        told = [json.loads(f["body"])["data"] for _, f in await gw.redis.xrange(outbox_key("acme"))
                if f["type"] == "tenant.state_changed"]
        assert [(d["action"], d["reason"]) for d in told] == [("suspend", "abuse report #12"), ("resume", "cleared")]
        assert await gw.redis.xlen(outbox_key("globex")) == 0
    finally:
        client.close()


async def test_only_the_installations_operators_may_suspend_or_list_tenants(gw):
    paths = [("POST", "/v1/operator/tenants/globex/suspend"), ("POST", "/v1/operator/tenants/acme/suspend"),
             ("POST", "/v1/operator/tenants/acme/resume"), ("GET", "/v1/operator/tenants")]
    for method, path in paths:
        for tenant, role in [("acme", "admin"), ("globex", "admin"), (OPS, "supervisor")]:
            resp = await gw.client.request(method, path, json={"reason": "x"}, headers=gw.auth(tenant, role))
            assert resp.status == 403, (method, path, tenant, role)
            assert (await resp.json())["error"]["code"] == "forbidden"
        assert (await gw.client.request(method, path, json={"reason": "x"})).status == 401
    assert holds.TENANT_SUSPENDED not in str(await (await gw.client.get("/v1/holds", headers=gw.auth())).json())
    # an operator's mistakes are named
    resp = await gw.client.post("/v1/operator/tenants/nobody/suspend", json={"reason": "x"}, headers=gw.auth(OPS))
    assert resp.status == 404 and (await resp.json())["error"]["message"] == "tenant not found"
    resp = await gw.client.post("/v1/operator/tenants/acme/suspend", json={"reason": "   "}, headers=gw.auth(OPS))
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "reason"
    resp = await gw.client.post("/v1/operator/tenants/acme/suspend", json={}, headers=gw.auth(OPS))
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "reason"
    # the console is told who is an operator
    mine = await (await gw.client.get("/v1/me", headers=gw.auth(OPS))).json()
    assert "tenants.operate" in mine["permissions"]
    theirs = await (await gw.client.get("/v1/me", headers=gw.auth("acme", "admin"))).json()
    assert "tenants.operate" not in theirs["permissions"] and "campaigns.suspend" in theirs["permissions"]
    # refusals are audited in the caller's trail (gateway/audit_policy.py)
    denials = [e.payload for e in await audit_entries(gw, "acme") if e.payload.get("action") == "token.denied"]
    assert any("not an operator tenant" in d.get("reason", "") for d in denials)


async def test_without_operator_tenants_nobody_suspends_over_http(redis_url):
    gateway = await start_gateway(redis_url, DIALER_GATEWAY_OPERATOR_TENANTS="")
    try:
        for tenant in ("acme", "globex"):
            resp = await gateway.client.post("/v1/operator/tenants/globex/suspend", json={"reason": "x"},
                                             headers=gateway.auth(tenant, "admin"))
            assert resp.status == 403
    finally:
        await stop_gateway(gateway)
