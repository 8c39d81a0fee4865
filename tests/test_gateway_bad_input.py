"""Issue 16 point 9, on the real aiohttp gateway and a real redis-server: every bad input gets a 4xx naming the
field, never a 500. Instants outside 2000-2100 (and the extremes that overflow Python's datetime), NUL
characters and lone surrogates, bodies and upload mappings nested thousands deep. (Redis down answering 503:
tests/test_gateway_load.py.)"""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.gateway_support import SAMPLE_LIST, imported_list, start_gateway, stop_gateway

BAD_INSTANTS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1999-12-31T23:59:59Z",
                "2101-01-01T00:00:00Z"]


@pytest.fixture
async def gw(redis_url, tmp_path):
    gateway = await start_gateway(redis_url, DIALER_GATEWAY_UPLOAD_DIR=str(tmp_path / "up"))
    yield gateway
    await stop_gateway(gateway)


async def expect_field(resp, field: str, status: int = 422) -> dict:
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert error.get("field") == field, error
    return error


@pytest.mark.parametrize("at", BAD_INSTANTS)
async def test_out_of_range_instants_are_refused_naming_the_field(gw, at, caplog):
    headers = gw.auth("acme", "admin")
    campaign = (await gw.ready_campaign())["id"]
    imported_list(gw.redis_url, "acme", "l1")
    phone = "+33612345678"
    for method, path, body in [
        ("POST", "/v1/optouts", {"phone": phone, "source": "crm", "at": at}),
        ("POST", "/v1/consents", {"phone": phone, "source": "web", "at": at}),
        ("POST", "/v1/consents", {"phone": phone, "source": "web", "expires_at": at}),
        ("POST", "/v1/gate/check", {"campaign": campaign, "phone": phone, "country": "FR", "at": at}),
    ]:
        resp = await gw.client.request(method, path, json=body, headers=headers)
        field = "expires_at" if "expires_at" in body else "at"
        error = await expect_field(resp, field)
        assert error["code"] == "out_of_range" and "2000" in error["message"]
    resp = await gw.client.get("/v1/lists/l1/scrub", params={"at": at}, headers=headers)
    await expect_field(resp, "at")
    resp = await gw.client.get("/v1/audit", params={"since": at}, headers=headers)
    await expect_field(resp, "since")
    assert "Traceback" not in caplog.text and "unhandled error" not in caplog.text


@pytest.mark.parametrize("text,code", [("Spring\u0000sale", "bad_text"), ("Spring \ud800", "bad_text")])
async def test_nul_and_lone_surrogates_are_refused(gw, text, code):
    headers = {**gw.auth("acme", "admin"), "Content-Type": "application/json"}
    body = json.dumps({"name": text})  # ensure_ascii: "\u0000" and "\ud800" escapes, as a client would send
    error = await expect_field(await gw.client.post("/v1/campaigns", data=body, headers=headers), "name")
    assert error["code"] == code
    body = json.dumps({"name": "ok", "seller_name": text})
    await expect_field(await gw.client.post("/v1/campaigns", data=body, headers=headers), "seller_name")
    resp = await gw.client.post("/v1/users", data=json.dumps({"name": "x", "role": "admin", text: 1}),
                                headers=headers)
    assert resp.status == 422
    campaigns = await (await gw.client.get("/v1/campaigns", headers=headers)).json()
    assert not campaigns.get("items")  # nothing written


async def test_deep_nesting_is_a_clear_4xx(gw, caplog):
    headers = {**gw.auth("acme", "admin"), "Content-Type": "application/json"}
    deep = "[" * 30_000 + "]" * 30_000
    resp = await gw.client.post("/v1/campaigns", data='{"name": "x", "lists": ' + deep + "}", headers=headers)
    assert resp.status == 400 and "nested too deeply" in (await resp.json())["error"]["message"]
    medium = "[" * 100 + "]" * 100  # parses, but deeper than any of our schemas
    resp = await gw.client.post("/v1/campaigns", data='{"name": "x", "lists": ' + medium + "}", headers=headers)
    assert resp.status == 422
    data = aiohttp.FormData()
    data.add_field("list", "spring")
    data.add_field("mapping", deep)
    data.add_field("file", SAMPLE_LIST.encode(), filename="c.csv", content_type="text/csv")
    resp = await gw.client.post("/v1/imports", data=data, headers=gw.auth("acme", "uploader"))
    await expect_field(resp, "mapping")
    assert "Traceback" not in caplog.text and "unhandled error" not in caplog.text


async def test_a_body_of_blank_lines_is_not_an_empty_body(gw):
    """Schemathesis (CI, 2026-12-06) found PATCH /v1/retention accepting "\\r\\n\\r\\n" as no body: blank lines
    are not JSON (400); only a body with no bytes at all means "no fields"."""
    headers = {**gw.auth("acme", "admin"), "Content-Type": "application/json"}
    resp = await gw.client.patch("/v1/retention", data="\r\n\r\n", headers=headers)
    assert resp.status == 400, await resp.text()
    resp = await gw.client.patch("/v1/retention", data=b"", headers=headers)
    assert resp.status == 200, await resp.text()
