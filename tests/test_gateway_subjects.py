"""Data subject rights over HTTP: access (JSON, CSV), rectification, erasure, retention policy (dialer/privacy.py)."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest

from tests.gateway_support import audit_entries, imported_list, start_gateway, stop_gateway

LIST = ("phone,first_name,last_name,email,consent_given_at,consent_source\n"
        "+33145678901,Ann,Smyth,ann@example.com,2026-01-05,web form\n+33145678902,Bob,Martin,,,\n")


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


@pytest.fixture
async def ann(gw):
    import_id = await asyncio.to_thread(imported_list, gw.redis_url, "acme", "people", LIST)
    return f"{import_id}-2"


async def test_access_shows_what_we_hold_as_json_and_csv(gw, ann):
    resp = await gw.client.get("/v1/subjects", params={"phone": "01 45 67 89 01", "country": "FR"},
                               headers=gw.auth("acme", "auditor"))
    assert resp.status == 200, await resp.text()
    found = await resp.json()
    assert "ann@example.com" in str(found) and "Smyth" in str(found) and "web form" in str(found)
    assert "Martin" not in str(found)
    report = await gw.client.get("/v1/subjects/report", params={"contact_id": ann}, headers=gw.auth())
    assert report.status == 200 and report.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO((await report.read()).decode("utf-8-sig"))))
    assert any("ann@example.com" in row for row in rows)
    resp = await gw.client.get("/v1/subjects", headers=gw.auth())
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "missing_field"
    resp = await gw.client.get("/v1/subjects", params={"contact_id": ann}, headers=gw.auth("globex"))
    assert resp.status == 404
    assert [e.kind for e in await audit_entries(gw, "acme")].count("access") == 2


async def test_rectify_changes_fields_not_numbers(gw, ann):
    resp = await gw.client.patch(f"/v1/contacts/{ann}", json={"last_name": "Smith", "email": None},
                                 headers=gw.auth())
    assert resp.status == 200, await resp.text()
    contact = await resp.json()
    assert contact["last_name"] == "Smith" and not contact.get("email")
    resp = await gw.client.patch(f"/v1/contacts/{ann}", json={"phone": "+33100000000"}, headers=gw.auth())
    assert resp.status == 422 and (await resp.json())["error"]["field"] in ("phone", "changes")
    resp = await gw.client.patch(f"/v1/contacts/{ann}", json={}, headers=gw.auth())
    assert resp.status == 422
    resp = await gw.client.patch(f"/v1/contacts/{ann}", json={"last_name": "X"}, headers=gw.auth("acme", "auditor"))
    assert resp.status == 403
    rectified = [e for e in await audit_entries(gw, "acme") if e.kind == "rectification"]
    assert len(rectified) == 1 and "Smith" not in str(rectified[0].payload)


async def test_erase_removes_the_person_and_suppresses_the_number(gw, ann):
    resp = await gw.client.post("/v1/subjects/erase", json={"phone": "+33145678901", "reason": "letter of 3 May"},
                                headers=gw.auth())
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["contact_ids"] == [ann] and report["suppressed"] == 1
    assert "+33145678901" not in str(report)
    resp = await gw.client.get("/v1/subjects", params={"contact_id": ann}, headers=gw.auth())
    assert resp.status == 404
    campaign = (await gw.create_campaign())["id"]
    check = await (await gw.client.post("/v1/gate/check", json={"campaign": campaign, "phone": "+33145678901"},
                                        headers=gw.auth())).json()
    assert check["decision"]["reasons"][0]["code"] == "ERASED_SUPPRESSED"
    assert [e.kind for e in await audit_entries(gw, "acme")].count("erasure") == 1


async def test_erase_without_secret_key_erases_nothing(redis_url):
    gw = await start_gateway(redis_url, DIALER_SECRET_KEY="")
    try:
        import_id = await asyncio.to_thread(imported_list, gw.redis_url, "acme", "people", LIST)
        resp = await gw.client.post("/v1/subjects/erase", json={"contact_id": f"{import_id}-2"}, headers=gw.auth())
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "no_secret_key"
        from dialer.contacts.store import get_contact

        assert await asyncio.to_thread(get_contact, None, "acme", f"{import_id}-2") is not None  # in the record
    finally:
        await stop_gateway(gw)


async def test_retention_policy_read_and_changed_within_the_law(gw):
    policy = await (await gw.client.get("/v1/retention", headers=gw.auth("acme", "auditor"))).json()
    assert policy["attempts"] == 365
    resp = await gw.client.patch("/v1/retention", json={"attempts": 400}, headers=gw.auth())
    assert resp.status == 200 and (await resp.json())["attempts"] == 400
    resp = await gw.client.patch("/v1/retention", json={"attempts": 5}, headers=gw.auth())
    assert resp.status == 422
    resp = await gw.client.patch("/v1/retention", json={"attempts": 400}, headers=gw.auth("acme", "auditor"))
    assert resp.status == 403
    other = await (await gw.client.get("/v1/retention", headers=gw.auth("globex"))).json()
    assert other["attempts"] == 365
