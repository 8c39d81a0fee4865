"""Tokens, tenants, users and the error format, against a real app and a real Redis."""

from __future__ import annotations

import logging

import pytest

from gateway import trail
from gateway.auth import PERMISSIONS, ROLES, AuthStore, token_hash
from tests.gateway_support import audit_events, start_gateway, stop_gateway


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


async def test_me_names_tenant_user_role_and_permissions(gw):
    resp = await gw.client.get("/v1/me", headers=gw.auth("globex", "auditor"))
    assert resp.status == 200
    me = await resp.json()
    assert (me["tenant"], me["user"], me["role"]) == ("globex", "auditor-user", "auditor")
    assert "campaigns.control" not in me["permissions"] and "audit.read" in me["permissions"]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer dlr_0123456789_notarealtokennotarealtoken", "Basic abc"])
async def test_missing_or_bad_token_is_401_json(gw, header):
    headers = {"Authorization": header} if header else {}
    resp = await gw.client.get("/v1/me", headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_tokens_are_stored_hashed_only(gw):
    token = gw.tokens[("acme", "admin")]
    keys = [k async for k in gw.redis.scan_iter("*")]
    values = []
    for key in keys:
        kind = await gw.redis.type(key)
        if kind == "hash":
            values += list((await gw.redis.hgetall(key)).values())
    assert all(token not in v for v in values + keys)
    assert f"token:{token_hash(token)}" in keys


async def test_revoked_token_and_disabled_user_stop_working(gw):
    admin = gw.auth("acme", "admin")
    created = await (await gw.client.post("/v1/tokens", json={"user": "uploader-user", "label": "crm"},
                                          headers=admin)).json()
    fresh = {"Authorization": f"Bearer {created['token']}"}
    assert (await gw.client.get("/v1/me", headers=fresh)).status == 200
    listed = await (await gw.client.get("/v1/tokens", headers=admin)).json()
    assert created["id"] in [t["id"] for t in listed["items"]]
    assert all("token" not in t for t in listed["items"])
    assert (await gw.client.delete(f"/v1/tokens/{created['id']}", headers=admin)).status == 200
    assert (await gw.client.get("/v1/me", headers=fresh)).status == 401

    resp = await gw.client.patch("/v1/users/supervisor-user", json={"disabled": True}, headers=admin)
    assert resp.status == 200 and (await resp.json())["disabled"] is True
    assert (await gw.client.get("/v1/me", headers=gw.auth("acme", "supervisor"))).status == 401


async def test_role_change_takes_effect_at_once(gw):
    auditor = gw.auth("acme", "auditor")
    campaign = await gw.ready_campaign()
    assert (await gw.client.post(f"/v1/campaigns/{campaign['id']}/start", headers=auditor)).status == 403
    await gw.client.patch("/v1/users/auditor-user", json={"role": "supervisor"}, headers=gw.auth())
    assert (await gw.client.post(f"/v1/campaigns/{campaign['id']}/start", headers=auditor)).status == 200


async def test_admin_cannot_lock_themselves_out(gw):
    resp = await gw.client.patch("/v1/users/admin-user", json={"role": "auditor"}, headers=gw.auth())
    assert resp.status == 422


async def test_users_are_per_tenant(gw):
    admin = gw.auth("acme", "admin")
    resp = await gw.client.post("/v1/users", json={"name": "zoe", "role": "uploader"}, headers=admin)
    assert resp.status == 201
    assert (await gw.client.post("/v1/users", json={"name": "zoe", "role": "uploader"}, headers=admin)).status == 409
    names = [u["name"] for u in (await (await gw.client.get("/v1/users", headers=admin)).json())["items"]]
    assert "zoe" in names
    other = await (await gw.client.get("/v1/users", headers=gw.auth("globex", "admin"))).json()
    assert "zoe" not in [u["name"] for u in other["items"]]
    # A token cannot be made for another tenant's user.
    resp = await gw.client.post("/v1/tokens", json={"user": "zoe"}, headers=gw.auth("globex", "admin"))
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "user"


async def test_token_use_goes_to_the_audit_trail_without_the_secret(gw):
    token = gw.tokens[("globex", "supervisor")]
    await gw.client.get("/v1/me", headers=gw.auth("globex", "supervisor"))
    entries = await audit_events(gw, "globex")
    uses = [e for e in entries if e["action"] == "token.use"]
    assert uses and uses[-1]["actor"] == "supervisor-user" and uses[-1]["token"] == token[4:14]
    assert uses[-1]["kind"] == "token_use"
    assert all(token not in str(e) for e in entries)
    assert await audit_events(gw, "acme") == []


async def test_audit_sink_can_be_taken_over(gw):
    seen = []

    async def sink(redis, tenant, event):
        seen.append((tenant, event["action"]))

    previous = trail.set_sink(sink)
    try:
        await gw.client.get("/v1/me", headers=gw.auth("acme", "uploader"))
    finally:
        trail.set_sink(previous)
    assert seen == [("acme", "token.use")]


async def test_bad_json_wrong_type_unknown_field_and_oversize(gw):
    headers = {**gw.auth("acme", "supervisor"), "Content-Type": "application/json"}
    resp = await gw.client.post("/v1/campaigns", data=b"{not json", headers=headers)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_json"
    resp = await gw.client.post("/v1/campaigns", json={"name": "x", "max_attempts": "3"}, headers=headers)
    error = (await resp.json())["error"]
    assert resp.status == 422 and error["field"] == "max_attempts" and error["code"] == "wrong_type"
    resp = await gw.client.post("/v1/campaigns", json={"name": "x", "colour": "red"}, headers=headers)
    error = (await resp.json())["error"]
    assert resp.status == 422 and error["field"] == "colour" and error["code"] == "unknown_field"
    resp = await gw.client.post("/v1/campaigns", json={"name": "x", "retry_rules": {"busy": True}}, headers=headers)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "retry_rules.busy"
    resp = await gw.client.post("/v1/campaigns", json={"purpose": "telemarketing"}, headers=headers)
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "missing_field"
    resp = await gw.client.post("/v1/campaigns", data=b'{"name": "' + b"x" * 2_000_000 + b'"}', headers=headers)
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "too_large"


async def test_unknown_route_and_method_are_json(gw):
    resp = await gw.client.get("/v1/nope", headers=gw.auth())
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await gw.client.put("/v1/me", headers=gw.auth())
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_unexpected_error_is_a_masked_log_and_a_json_500(redis_url, caplog, monkeypatch):
    """A handler that blows up: the client gets a bare JSON 500, the log gets the masked details."""
    import types

    from dialer.logs import MaskingFilter
    from gateway import app as app_module
    from gateway.routing import Route

    async def explode(request):
        raise RuntimeError("boom for +33145678901 password=hunter2")

    broken = types.SimpleNamespace(ROUTES=[Route("GET", "/v1/explode", explode, "fails", "me.read")])
    monkeypatch.setattr(app_module, "ROUTE_MODULES", (*app_module.ROUTE_MODULES, broken))
    gateway = await start_gateway(redis_url)
    caplog.handler.addFilter(MaskingFilter())
    try:
        with caplog.at_level(logging.ERROR):
            resp = await gateway.client.get("/v1/explode", headers=gateway.auth())
        text = await resp.text()
    finally:
        await stop_gateway(gateway)
    assert resp.status == 500 and resp.content_type == "application/json"
    assert "Traceback" not in text and "boom" not in text
    assert "unhandled error" in caplog.text and "RuntimeError" in caplog.text
    assert "+33145678901" not in caplog.text and "hunter2" not in caplog.text


def test_permission_table_names_only_known_roles():
    for permission, roles in PERMISSIONS.items():
        assert roles and set(roles) <= set(ROLES), permission


async def test_authenticate_refuses_husks_and_garbage(redis_url):
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = AuthStore(client)
    await store.create_tenant("t1")
    await store.create_user("t1", "u", "admin")
    token, _ = await store.create_token("t1", "u")
    token2, _ = await store.create_token("t1", "u")
    assert (await store.authenticate(token)).role == "admin"
    await client.delete(f"token:{token_hash(token)}")
    await client.hset(f"token:{token_hash(token)}", "last_used_at", "x")  # what a racing write could leave
    assert await store.authenticate(token) is None
    assert await store.authenticate("garbage") is None
    assert (await store.authenticate(token2)).user == "u"
    await client.delete("tenant:t1")
    assert await store.authenticate(token2) is None  # tenant removed: its tokens stop working
    await client.aclose()


async def test_json_oddities_are_400_not_500(gw):
    headers = {**gw.auth("acme", "supervisor"), "Content-Type": "application/json"}
    for raw in (b'{"name": "x", "pacing_ratio": NaN}', b'{"name": "x", "abandon_cap": Infinity}',
                b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b'{"name": "x"} trailing'):
        resp = await gw.client.post("/v1/campaigns", data=raw, headers=headers)
        assert resp.status == 400, raw[:40]
        assert (await resp.json())["error"]["code"] == "bad_json"
    resp = await gw.client.post("/v1/campaigns", data=b"null", headers=headers)
    assert resp.status == 422


async def test_path_values_cannot_reach_neighbouring_keys(gw):
    """`c1:dnc` would address the campaign's opt-out hash if it reached a key unchecked."""
    cid = (await gw.ready_campaign())["id"]
    await gw.client.post("/v1/optouts", headers=gw.auth(), json={"phone": "+33145678901", "source": "crm",
                                                                  "scope": "campaign", "campaign": cid})
    for value in (f"{cid}:dnc", f"{cid}:control", "*", "a b"):
        resp = await gw.client.get(f"/v1/campaigns/{value}", headers=gw.auth())
        assert resp.status == 404, value
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_security_headers_on_api_and_pages(gw):
    for path in ("/", "/v1/openapi.json", "/static/app.js"):
        resp = await gw.client.get(path)
        assert resp.status == 200, path
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
    resp = await gw.client.get("/v1/me", headers=gw.auth())
    assert resp.headers["Cache-Control"] == "no-store"
    assert (await gw.client.get("/static/../app.py")).status == 404
    assert (await gw.client.get("/static/%2e%2e/app.py")).status in (403, 404)


def test_access_log_line_has_no_query_string():
    import io

    from dialer.commands.serve import AccessLogger
    from gateway.proxies import CLIENT

    stream = io.StringIO()
    logger = logging.getLogger("test.access")
    logger.addHandler(logging.StreamHandler(stream))
    logger.setLevel(logging.INFO)

    class Request(dict):  # aiohttp's requests are mappings too (the client address behind a proxy is kept there)
        method, path = "GET", "/v1/consents"
        path_qs = "/v1/consents?phone=%2B33145678901"
        remote = "203.0.113.7"

    class Response:
        status = 200

    from dialer.logs import MaskingFilter

    logger.handlers[0].addFilter(MaskingFilter())
    AccessLogger(logger, "").log(Request(), Response(), 0.004)
    AccessLogger(logger, "").log(Request(), Response(), 123456.789)  # a long-lived event stream
    proxied = Request()
    proxied[CLIENT] = "198.51.100.20"  # what gateway/proxies.py found in X-Forwarded-For from a trusted proxy
    AccessLogger(logger, "").log(proxied, Response(), 0.004)
    lines = stream.getvalue().splitlines()
    assert lines == ["GET /v1/consents 200 in 4ms from 203.0.113.7",
                     "GET /v1/consents 200 in 123456789ms from 203.0.113.7",
                     "GET /v1/consents 200 in 4ms from 198.51.100.20"]


async def test_tokens_can_expire(redis_url):
    from datetime import UTC, datetime, timedelta

    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = AuthStore(client)
    await store.create_tenant("t1")
    await store.create_user("t1", "u", "auditor")
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    token, record = await store.create_token("t1", "u", at=now, expires_at=now + timedelta(days=30))
    assert record["expires_at"] == "2026-03-31T12:00:00Z"
    assert await store.authenticate(token, at=now + timedelta(days=29)) is not None
    assert await store.authenticate(token, at=now + timedelta(days=30)) is None
    await client.aclose()


async def test_api_token_with_expiry(gw):
    resp = await gw.client.post("/v1/tokens", json={"user": "auditor-user", "expires_in_days": 7}, headers=gw.auth())
    created = await resp.json()
    assert resp.status == 201 and created["expires_at"] > created["created_at"]
    assert (await gw.client.get("/v1/me", headers={"Authorization": f"Bearer {created['token']}"})).status == 200
    resp = await gw.client.post("/v1/tokens", json={"user": "auditor-user", "expires_in_days": 0}, headers=gw.auth())
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "expires_in_days"
