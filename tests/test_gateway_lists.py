"""Lists, imports, scrub, gate what-if and "why not called", registries, audit query and exports over HTTP.

Everything real: a real Redis, the real import and registry jobs run by a real RQ worker (InlineWorker in
burst mode, in this process), the real gate with the shipped rule packs.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tracemalloc
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import holidays
import pytest
import redis

from dialer.gate import Gate
from dialer.jobs import QUEUES, InlineWorker
from dialer.registry.store import RegistryStore
from rules import load_packs
from rules.model import Contact
from tests.gateway_support import SAMPLE_LIST, SECRET_KEY, imported_list, start_gateway, stop_gateway

PARIS = ZoneInfo("Europe/Paris")
# Telephone canvassing of French consumers needs their prior consent (since 2026-08-11): Bob gave it, Ann not.
CONSENTED_LIST = ("phone,first_name,country,consent_given_at,consent_source,consent_written\n"
                  "+33145678901,Ann,FR,,,\n+33145678902,Bob,FR,2026-01-05,web form,yes\n"
                  "not a number,Eve,FR,,,\n")


def open_instant(hour: int = 10) -> datetime:
    """The next Tuesday (not a French public holiday) at `hour` Paris time: inside French calling hours, and
    a few days from now at most, so a registry copy loaded now is fresh."""
    day = datetime.now(PARIS).date() + timedelta(days=1)
    while day.weekday() != 1 or day in holidays.country_holidays("FR", years=day.year):
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=PARIS)


@pytest.fixture
async def gw(redis_url, tmp_path):
    gateway = await start_gateway(redis_url, DIALER_GATEWAY_UPLOAD_DIR=str(tmp_path / "uploads"))
    yield gateway
    await stop_gateway(gateway)


def work(redis_url: str) -> None:
    """Run every queued job to the end, as `dialer worker --burst` would."""
    client = redis.Redis.from_url(redis_url)
    InlineWorker(list(QUEUES), connection=client).work(burst=True)
    client.close()


def form(text: str | bytes, **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for key, value in fields.items():
        data.add_field(key, value)
    data.add_field("file", text.encode() if isinstance(text, str) else text, filename="clients.csv",
                   content_type="text/csv")
    return data


async def upload(gw, text: str = SAMPLE_LIST, role: str = "uploader", **fields: str):
    fields.setdefault("list", "spring")
    return await gw.client.post("/v1/imports", data=form(text, **fields), headers=gw.auth("acme", role))


async def test_upload_runs_as_a_job_with_progress_and_error_report(gw, tmp_path):
    resp = await upload(gw)
    assert resp.status == 202, await resp.text()
    queued = await resp.json()
    assert queued["status"] == "queued" and queued["duplicate_of"] is None
    assert len(os.listdir(tmp_path / "uploads")) == 1  # staged for the worker
    work(gw.redis_url)  # RQ installs signal handlers: main thread
    status = await (await gw.client.get(f"/v1/imports/{queued['id']}", headers=gw.auth("acme", "auditor"))).json()
    assert status["status"] == "committed"
    assert status["rows_done"] == status["rows_total"] == 3
    assert status["summary"]["valid"] == 2 and status["summary"]["invalid"] == 1
    assert os.listdir(tmp_path / "uploads") == []  # the import is over: its uploaded file is deleted
    report = await gw.client.get(f"/v1/imports/{queued['id']}/errors", headers=gw.auth("acme", "uploader"))
    assert report.status == 200 and report.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO((await report.read()).decode("utf-8-sig"))))
    assert [(r["row"], r["severity"]) for r in rows] == [("4", "error")] and rows[0]["reason"]
    lists = await (await gw.client.get("/v1/lists", headers=gw.auth())).json()
    assert lists["items"] == [{"id": "spring", "contacts": 2, "imports": 1, "region": "FR",
                               "last_import": queued["id"], "updated_at": lists["items"][0]["updated_at"]}]
    imports = await (await gw.client.get("/v1/imports", headers=gw.auth())).json()
    assert [i["id"] for i in imports["items"]] == [queued["id"]]
    # The same file again is not imported twice.
    again = await (await upload(gw)).json()
    assert again["duplicate_of"] == queued["id"] and again["id"] == queued["id"]
    # Another tenant sees nothing.
    other = await (await gw.client.get("/v1/imports", headers=gw.auth("globex"))).json()
    assert other["items"] == []


async def test_bad_uploads_are_clear_json_errors(gw, tmp_path):
    async def error(resp) -> tuple[int, str, str | None]:
        body = (await resp.json())["error"]
        return resp.status, body["code"], body.get("field")

    assert await error(await gw.client.post("/v1/imports", json={"list": "x"}, headers=gw.auth())) == (
        415, "unsupported_media_type", None)
    no_file = aiohttp.FormData(default_to_multipart=True)
    no_file.add_field("list", "spring")
    no_file.add_field("region", "FR")
    assert await error(await gw.client.post("/v1/imports", data=no_file, headers=gw.auth())) == (
        422, "missing_field", "file")
    assert await error(await upload(gw, colour="red")) == (422, "unknown_field", "colour")
    assert await error(await upload(gw, list="a:b")) == (422, "invalid_field", "list")
    assert await error(await upload(gw, region="")) == (422, "invalid_field", "region")
    assert await error(await upload(gw, region="XX")) == (422, "bad_region", "region")
    theirs = (await gw.create_campaign("globex"))["id"]
    assert await error(await upload(gw, campaign=theirs)) == (422, "invalid_field", "campaign")
    assert await error(await upload(gw, "", list="empty")) == (422, "empty_file", "file")
    assert await error(await upload(gw, mapping="{nope")) == (422, "invalid_field", "mapping")
    resp = await gw.client.post("/v1/imports", data=b"--x\r\nnot a part", headers={
        **gw.auth(), "Content-Type": "multipart/form-data; boundary=x"})
    assert resp.status in (400, 422)
    assert os.listdir(tmp_path / "uploads") == []  # nothing refused stays staged


async def test_oversize_upload_is_413_and_nothing_is_kept(redis_url, tmp_path):
    gw = await start_gateway(redis_url, DIALER_GATEWAY_MAX_UPLOAD_MB="1",
                             DIALER_GATEWAY_UPLOAD_DIR=str(tmp_path / "up"))
    try:
        big = "phone\n" + "+33145678901\n" * 120_000  # 1.56 MB
        resp = await upload(gw, big)
        assert resp.status == 413 and (await resp.json())["error"]["code"] == "too_large"

        async def chunks():  # no Content-Length: the limit is enforced while streaming
            boundary = b"--b\r\nContent-Disposition: form-data; name=\"list\"\r\n\r\nbig\r\n" \
                       b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nphone\n"
            yield boundary
            for _ in range(200):
                yield b"+33145678901\n" * 1000
            yield b"\r\n--b--\r\n"

        resp = await gw.client.post("/v1/imports", data=chunks(), headers={
            **gw.auth(), "Content-Type": "multipart/form-data; boundary=b"})
        assert resp.status == 413 and (await resp.json())["error"]["code"] == "too_large"
        assert os.listdir(tmp_path / "up") == []
    finally:
        await stop_gateway(gw)


async def test_large_upload_is_streamed_not_held_in_memory(gw, tmp_path):
    block = b"+33145678901\n" * 10_000  # 130 kB
    size = len(block) * 160  # ~21 MB

    async def chunks():
        yield (b"--b\r\nContent-Disposition: form-data; name=\"list\"\r\n\r\nbig\r\n"
               b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\r\nphone\n")
        for _ in range(160):
            yield block
        yield b"\r\n--b--\r\n"

    tracemalloc.start()
    try:
        resp = await gw.client.post("/v1/imports", data=chunks(), headers={
            **gw.auth(), "Content-Type": "multipart/form-data; boundary=b"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status == 202, await resp.text()
    staged = [tmp_path / "uploads" / name for name in os.listdir(tmp_path / "uploads")]
    assert [p.stat().st_size for p in staged] == [size + len(b"phone\n")]
    assert peak < size / 4, f"the upload was buffered: peak {peak} bytes for a {size}-byte file"


@pytest.fixture
async def loaded(gw):
    """A ready campaign with the sample list attached (Ann without consent, Bob with), and Bloctel loaded."""
    campaign = (await gw.create_campaign(caller_id="+33162000000", seller_name="Acme SAS", queue="sales"))["id"]
    import_id = await asyncio.to_thread(imported_list, gw.redis_url, "acme", "spring", CONSENTED_LIST,
                                        campaign=campaign)
    # the list exists now: attach it (a campaign may not name a list that does not exist)
    resp = await gw.client.patch(f"/v1/campaigns/{campaign}", json={"lists": ["spring"]},
                                 headers=gw.auth("acme", "supervisor"))
    assert resp.status == 200, await resp.text()
    reg = aiohttp.FormData()
    reg.add_field("file", b"0145678901\n0145678999\n", filename="bloctel.txt")
    resp = await gw.client.post("/v1/registries/bloctel/imports", data=reg, headers=gw.auth())
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    work(gw.redis_url)  # RQ installs signal handlers: main thread
    return {"campaign": campaign, "import": import_id, "job": job["id"]}


async def test_registry_upload_status_and_operator_rule(gw, loaded):
    resp = await gw.client.get(f"/v1/registry-imports/{loaded['job']}", headers=gw.auth("acme", "auditor"))
    job = await resp.json()
    assert job["status"] == "finished" and job["report"]["status"] == "committed" and job["report"]["rows"] == 2
    bloctel = await (await gw.client.get("/v1/registries/bloctel", headers=gw.auth("acme", "supervisor"))).json()
    assert bloctel["loaded"] and bloctel["rows"] == 2 and bloctel["file_name"] == "bloctel.txt"
    listed = await (await gw.client.get("/v1/registries", headers=gw.auth())).json()
    assert {r["name"]: r["loaded"] for r in listed["items"]}["us_dnc"] is False
    # globex's admin is not an operator tenant: registries are shared, so it may not load them.
    reg = aiohttp.FormData()
    reg.add_field("file", b"0145678902\n", filename="bloctel.txt")
    resp = await gw.client.post("/v1/registries/bloctel/imports", data=reg, headers=gw.auth("globex"))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    resp = await gw.client.get(f"/v1/registry-imports/{loaded['job']}", headers=gw.auth("globex"))
    assert resp.status == 404


async def test_gate_check_explains_and_reserves_nothing(gw, loaded):
    sup = gw.auth("acme", "supervisor")
    at = open_instant()
    listed = {"campaign": loaded["campaign"], "phone": "+33145678901", "at": at.isoformat()}
    resp = await gw.client.post("/v1/gate/check", json=listed, headers=sup)
    assert resp.status == 200, await resp.text()
    decision = (await resp.json())["decision"]
    assert not decision["allowed"] and "NO_CONSENT" in [r["code"] for r in decision["reasons"]]
    assert all(r["text"] and r["rule"] for r in decision["reasons"])
    free = await (await gw.client.post("/v1/gate/check", headers=sup, json={
        "campaign": loaded["campaign"], "contact_id": f"{loaded['import']}-3", "at": at.isoformat()})).json()
    assert free["decision"]["allowed"], free
    night = await (await gw.client.post("/v1/gate/check", headers=sup, json={
        "campaign": loaded["campaign"], "phone": "+33145678901", "at": at.replace(hour=3).isoformat()})).json()
    assert not night["decision"]["allowed"] and night["decision"]["next_allowed_at"] is None  # consent first
    assert {"OUTSIDE_CALLING_HOURS", "NO_CONSENT"} <= {r["code"] for r in night["decision"]["reasons"]}
    assert night["phone"] == "+33*******01"
    # Nothing reserved: the person has no attempt.
    client = redis.Redis.from_url(gw.redis_url)
    assert not client.keys("t:{acme}:p:*:att")
    client.close()
    resp = await gw.client.post("/v1/gate/check", headers=sup, json={"campaign": "nope", "phone": "+33145678902"})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "campaign"
    resp = await gw.client.post("/v1/gate/check", headers=sup, json={"campaign": loaded["campaign"]})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "phone"
    # The what-if checks are in the audit trail, without the number.
    audit = await (await gw.client.get("/v1/audit", params={"kind": "gate_decision"}, headers=gw.auth())).json()
    assert len(audit["items"]) == 3 and {e["payload"]["mode"] for e in audit["items"]} == {"check"}
    assert "+33145678901" not in str(audit)


async def test_why_not_called_names_the_latest_decision_and_the_next_time(gw, loaded):
    sup = gw.auth("acme", "supervisor")
    cid, listed = loaded["campaign"], f"{loaded['import']}-2"
    why = await (await gw.client.get(f"/v1/campaigns/{cid}/contacts/{listed}/why", headers=sup)).json()
    assert why["contact_id"] == listed and why["in_campaign"] and why["queue"] is None
    assert why["last_decision"] is None
    assert "NO_CONSENT" in [r["code"] for r in why["now"]["reasons"]] and "denies" in why["summary"]
    # The engine's gate reserves a call for the other contact at an open instant, then a retry is denied.
    client = redis.Redis.from_url(gw.redis_url)
    gate = Gate(client, load_packs(), RegistryStore(client), secret_key=SECRET_KEY, actor="engine")
    stored = (await asyncio.to_thread(gw_campaign, gw.redis_url, cid)).gate_campaign()
    at = open_instant()
    first = gate.check_and_reserve(Contact("+33145678902", "FR"), stored, at, contact_id=f"{loaded['import']}-3")
    assert first.allowed
    resp = await gw.client.post("/v1/optouts", json={"phone": "+33145678902", "source": "sms", "keyword": "STOP"},
                                headers=gw.auth("acme", "uploader"))
    assert resp.status == 201
    second = gate.check_and_reserve(Contact("+33145678902", "FR"), stored, at + timedelta(seconds=5),
                                    contact_id=f"{loaded['import']}-3")
    assert not second.allowed
    client.close()
    by_number = await (await gw.client.get(f"/v1/campaigns/{cid}/contacts/33145678902/why", headers=sup)).json()
    assert by_number["contact_id"] == f"{loaded['import']}-3"
    last = by_number["last_decision"]
    assert "COMPANY_DNC" in [r["code"] for r in by_number["now"]["reasons"]]
    assert last["allowed"] is False and last["reasons"] == [{"code": r.code, "rule": r.rule, "until": iso(r.until)}
                                                            for r in second.reasons]
    assert by_number["phone"] == "+33*******02"
    # Unknown contact, and another tenant asking, are the same 404.
    resp = await gw.client.get(f"/v1/campaigns/{cid}/contacts/nobody-1/why", headers=sup)
    assert resp.status == 404
    resp = await gw.client.get(f"/v1/campaigns/{cid}/contacts/{listed}/why", headers=gw.auth("globex", "supervisor"))
    assert resp.status == 404


def gw_campaign(redis_url: str, cid: str):
    from dialer.campaigns import CampaignStore

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return CampaignStore(client).get("acme", cid)
    finally:
        client.close()


def iso(value):
    return value.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z") if value else None


async def test_scrub_summary_and_report(gw, loaded):
    params = {"campaign": loaded["campaign"], "at": open_instant().isoformat()}
    summary = await (await gw.client.get("/v1/lists/spring/scrub", params=params, headers=gw.auth("acme", "auditor")))\
        .json()
    assert (summary["now"], summary["never"]) == (1, 1) and summary["never_by_reason"]["NO_CONSENT"] == 1
    assert sum(summary["rejected_at_import"].values()) == 1
    report = await gw.client.get("/v1/lists/spring/scrub/report", params=params, headers=gw.auth())
    rows = list(csv.DictReader(io.StringIO((await report.read()).decode("utf-8-sig"))))
    assert sorted(r["verdict"] for r in rows) == ["never", "now"]
    resp = await gw.client.get("/v1/lists/other/scrub", headers=gw.auth())
    assert resp.status == 404


async def test_audit_query_filters_and_pages(gw, loaded):
    for _ in range(3):
        await gw.client.post("/v1/gate/check", headers=gw.auth(), json={"campaign": loaded["campaign"],
                                                                        "phone": "+33145678902"})
    page = await (await gw.client.get("/v1/audit", params={"kind": "gate_decision", "limit": "2"},
                                      headers=gw.auth("acme", "auditor"))).json()
    assert len(page["items"]) == 2 and page["next_before"]
    seqs = [e["seq"] for e in page["items"]]
    assert seqs == sorted(seqs, reverse=True)
    rest = await (await gw.client.get("/v1/audit", params={"kind": "gate_decision", "before": str(page["next_before"])},
                                      headers=gw.auth("acme", "auditor"))).json()
    assert [e["seq"] for e in rest["items"]] and max(e["seq"] for e in rest["items"]) < min(seqs)
    future = (datetime.now(PARIS) + timedelta(days=1)).isoformat()
    none = await (await gw.client.get("/v1/audit", params={"since": future}, headers=gw.auth())).json()
    assert none["items"] == []
    verify = await (await gw.client.get("/v1/audit/verify", headers=gw.auth("acme", "auditor"))).json()
    assert verify["ok"] and verify["head_seq"] >= 3
    assert (await (await gw.client.get("/v1/audit", headers=gw.auth("globex"))).json())["items"] == [] or all(
        e["kind"] != "gate_decision" for e in (await (await gw.client.get("/v1/audit", headers=gw.auth("globex")))
                                               .json())["items"])


async def test_exports_are_csv_with_formula_protection(gw, loaded):
    resp = await gw.client.get("/v1/exports/contacts", params={"list": "spring"}, headers=gw.auth("acme", "auditor"))
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert sorted(r["phone"] for r in rows) == ["'+33145678901", "'+33145678902"]
    resp = await gw.client.get("/v1/exports/outcomes", params={"campaign": loaded["campaign"]}, headers=gw.auth())
    raw = await resp.read()
    assert resp.status == 200 and raw.startswith(b"\xef\xbb\xbf")  # byte-order mark for Excel
    assert raw.decode("utf-8-sig").splitlines()[0].startswith(("phone", "contact", "number"))
    resp = await gw.client.get("/v1/exports/attempts", headers=gw.auth())
    assert resp.status == 422
    resp = await gw.client.get("/v1/exports/contacts", params={"list": "spring"}, headers=gw.auth("globex"))
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "list"
