"""The API routes behind the console's Lists, Compliance, Audit and Users pages (real gateway, real redis-server, the
real import code and the real gate): list preview, the import report with file-level failures, the compliance lookup
and registry freshness, audit filters, inviting users. Roles and tenant isolation on each."""

from __future__ import annotations

import asyncio
import csv
import io

import aiohttp
import pytest

from gateway.accounts import AccountStore
from gateway.auth import AuthStore
from tests.gateway_support import imported_list, start_gateway, stop_gateway


@pytest.fixture
async def gw(redis_url, tmp_path):
    gateway = await start_gateway(redis_url, DIALER_GATEWAY_UPLOAD_DIR=str(tmp_path / "uploads"))
    yield gateway
    await stop_gateway(gateway)


def form(data: bytes, **fields: str) -> aiohttp.FormData:
    out = aiohttp.FormData()
    for key, value in fields.items():
        out.add_field(key, value)
    out.add_field("file", data, filename="clients.csv", content_type="text/csv")
    return out


async def test_preview_reads_the_head_as_the_import_would_and_keeps_nothing(gw, tmp_path):
    text = "Prénom;Téléphone;Notes\nAnn;06 12 34 56 78;x\nEve;pas de numéro;\n" + "Bob;0698765432;y\n" * 2000
    head = text.encode()[:4000]  # cut mid-line, as the page sends it
    resp = await gw.client.post("/v1/imports/preview", data=form(head, truncated="true"),
                                headers=gw.auth("acme", "uploader"))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["format"]["delimiter_name"] == "semicolon" and body["has_header"] and body["truncated"]
    assert [(c["name"], c["field"]) for c in body["columns"]] == [("Prénom", "first_name"), ("Téléphone", "phone"),
                                                                 ("Notes", "ignore")]
    assert body["rows"][0]["imported"] and body["rows"][0]["phones"] == ["+33612345678"]
    assert not body["rows"][1]["imported"] and body["rows"][1]["errors"][0]["reason"] == "phone_has_letters"
    assert list((tmp_path / "uploads").iterdir()) == []  # the staged head is deleted

    # A mapping chosen by a person is applied; a file without phone column answers its problem with the columns.
    resp = await gw.client.post("/v1/imports/preview", data=form(b"name,city\nAnn,Paris\n"),
                                headers=gw.auth("acme", "admin"))
    body = await resp.json()
    assert body["problem"]["code"] == "no_phone_column" and [c["name"] for c in body["columns"]] == ["name", "city"]
    mapping = '{"columns": {"#1": "phone", "#2": "ignore"}}'
    resp = await gw.client.post("/v1/imports/preview", data=form(b"tel,city\n0612345678,Paris\n", mapping=mapping),
                                headers=gw.auth("acme", "admin"))
    body = await resp.json()
    assert "problem" not in body and body["columns"][1]["field"] == "ignore"

    # A binary file is refused as a whole, naming the file; the role and size limits hold.
    resp = await gw.client.post("/v1/imports/preview", data=form(b"\x00\x01\x02" * 100), headers=gw.auth())
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "file"
    resp = await gw.client.post("/v1/imports/preview", data=form(b"phone\n" * 200_000), headers=gw.auth())
    assert resp.status == 413
    resp = await gw.client.post("/v1/imports/preview", data=form(b"phone\n0612345678\n"),
                                headers=gw.auth("acme", "auditor"))
    assert resp.status == 403


async def test_a_failed_import_has_a_report_that_says_why(gw):
    failed = await asyncio.to_thread(imported_list, gw.redis_url, "acme", "empty", "phone\n")
    resp = await gw.client.get(f"/v1/imports/{failed}/report", headers=gw.auth("acme", "uploader"))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["status"] == "failed"
    assert body["items"][0] == {"row": None, "line": None, "column": None, "value": None, "reason": "no_rows",
                                "severity": "file", "message": "the file has a header but no rows"}
    resp = await gw.client.get(f"/v1/imports/{failed}/errors", headers=gw.auth("acme", "uploader"))
    rows = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert rows[1][4:6] == ["no_rows", "file"]  # the CSV report used to be empty

    good = await asyncio.to_thread(imported_list, gw.redis_url, "acme", "spring")
    body = await (await gw.client.get(f"/v1/imports/{good}/report", headers=gw.auth())).json()
    assert body["status"] == "committed" and [i["reason"] for i in body["items"]] == ["phone_has_letters"]
    assert body["more"] is False
    # Another tenant's import is not found, whatever the role.
    resp = await gw.client.get(f"/v1/imports/{good}/report", headers=gw.auth("globex", "admin"))
    assert resp.status == 404


async def test_compliance_lookup_and_registry_freshness(gw):
    resp = await gw.client.post("/v1/optouts", json={"phone": "+33145678901", "source": "crm"},
                                headers=gw.auth("acme", "supervisor"))
    assert resp.status == 201
    resp = await gw.client.get("/v1/compliance/lookup?phone=0145678901&country=FR", headers=gw.auth("acme", "auditor"))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["phone"] == "+33145678901" and body["zones"] == ["Europe/Paris"]
    assert not body["now"]["allowed"]
    dnc = next(r for r in body["now"]["reasons"] if r["code"] == "COMPANY_DNC")
    assert dnc["summary"] == "the person asked this company not to call"
    assert body["optouts"][0]["scope"] == "company" and body["optouts"][0]["source"] == "crm"
    assert body["reason_texts"]["COMPANY_DNC"] == dnc["summary"]
    # Another tenant knows nothing of acme's opt-out.
    other = await (await gw.client.get("/v1/compliance/lookup?phone=%2B33145678901",
                                       headers=gw.auth("globex", "auditor"))).json()
    assert other["optouts"] == [] and not any(r["code"] == "COMPANY_DNC" for r in other["now"]["reasons"])

    for query, field in (("", "phone"), ("?phone=12", "phone"), ("?phone=%2B33145678901&campaign=nope", "campaign")):
        resp = await gw.client.get(f"/v1/compliance/lookup{query}", headers=gw.auth())
        assert resp.status == 422 and (await resp.json())["error"]["field"] == field, query
    resp = await gw.client.get("/v1/compliance/lookup?phone=%2B33145678901", headers=gw.auth("acme", "uploader"))
    assert resp.status == 403

    reg = aiohttp.FormData()
    reg.add_field("file", b"0145678901\n", filename="bloctel.txt")
    assert (await gw.client.post("/v1/registries/bloctel/imports", data=reg, headers=gw.auth())).status == 202
    from tests.test_console_admin_browser import work

    work(gw.redis_url)
    resp = await gw.client.get("/v1/compliance/registries", headers=gw.auth("acme", "supervisor"))
    items = {i["name"]: i for i in (await resp.json())["items"]}
    assert items["bloctel"]["state"] == "fresh" and items["bloctel"]["max_age_days"] == 30
    assert items["bloctel"]["packs"] == ["fr"]
    assert items["us_dnc"]["state"] == "missing" and "REGISTRY_STALE" in items["us_dnc"]["text"]


async def test_audit_filters_by_actor_and_action(gw):
    await gw.client.get("/v1/me", headers=gw.auth("acme", "supervisor"))
    await gw.client.post("/v1/users", json={"name": "new-user", "role": "auditor"}, headers=gw.auth())
    body = await (await gw.client.get("/v1/audit?actor=admin-user&action=user.", headers=gw.auth())).json()
    assert [e["payload"]["action"] for e in body["items"]] == ["user.create"]
    body = await (await gw.client.get("/v1/audit?actor=supervisor-user", headers=gw.auth())).json()
    assert body["items"] and {e["actor"] for e in body["items"]} == {"supervisor-user"}


async def test_inviting_a_user_is_checked_before_anything_is_written(gw):
    store, accounts = AuthStore(gw.redis), AccountStore(gw.redis)
    resp = await gw.client.post("/v1/users", json={"name": "zoe@acme.example", "role": "supervisor",
                                                   "password": "a long enough passphrase"}, headers=gw.auth())
    assert resp.status == 201, await resp.text()
    assert (await resp.json()) | {"created_at": ""} == {"name": "zoe@acme.example", "role": "supervisor",
                                                        "disabled": False, "created_at": "", "can_sign_in": True,
                                                        "mfa": False}
    assert await accounts.find("zoe@acme.example") == ("acme", "zoe@acme.example")

    for data, status, field in (
        ({"name": "short@acme.example", "role": "auditor", "password": "short"}, 422, "password"),
        ({"name": "no-email", "role": "auditor", "password": "a long enough passphrase"}, 422, "name"),
    ):
        resp = await gw.client.post("/v1/users", json=data, headers=gw.auth())
        assert resp.status == status and (await resp.json())["error"]["field"] == field
        assert await store.user("acme", data["name"]) is None  # nothing half-made
    # An email that signs in to another tenant: refused, and no user is left behind in this one.
    resp = await gw.client.post("/v1/users", json={"name": "zoe@acme.example", "role": "auditor",
                                                   "password": "a long enough passphrase"},
                                headers=gw.auth("globex", "admin"))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "email_taken"
    assert await store.user("globex", "zoe@acme.example") is None
    resp = await gw.client.post("/v1/users", json={"name": "x@acme.example", "role": "auditor"},
                                headers=gw.auth("acme", "auditor"))
    assert resp.status == 403
    listed = (await (await gw.client.get("/v1/users", headers=gw.auth("acme", "auditor"))).json())["items"]
    assert {u["name"] for u in listed} >= {"zoe@acme.example"} and all("globex" not in u["name"] for u in listed)
