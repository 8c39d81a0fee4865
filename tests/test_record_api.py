"""The record's reports over HTTP (gateway/api/reports.py): role checks, tenant isolation, CSV, 503 when the record
is down; on the session's real PostgreSQL and on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from dialer.audit import AuditEvent, AuditLog
from dialer.record.archiver import Archiver
from dialer.record.store import Record
from dialer.record.url import parse_record_url
from dialer.redisproc import free_port
from tests.gateway_support import SECRET_KEY, start_gateway, stop_gateway

PHONE = "+33145678901"
AT = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def history(client: redis.Redis, tenant: str) -> None:
    audit = AuditLog(client, SECRET_KEY)
    ref = audit.person_ref(PHONE)
    audit.append_many(tenant, [
        AuditEvent("gate_decision", "gate", {"mode": "reserve", "campaign": "c1", "contact_id": "k1", "person": ref,
                                             "phone": audit.mask(PHONE), "allowed": True, "reasons": [],
                                             "call_id": "call-1"}, AT),
        AuditEvent("call_outcome", "engine", {"call_id": "call-1", "outcome": "answered", "person": ref,
                                              "phone": audit.mask(PHONE), "call": {"ring_s": 12.0, "talk_s": 60.0,
                                                                                   "live": True}}, AT),
        AuditEvent("gate_decision", "gate", {"mode": "reserve", "campaign": "c1", "contact_id": "k1", "person": ref,
                                             "phone": audit.mask(PHONE), "allowed": False,
                                             "reasons": [["QUIET_HOURS", "fr.hours", None]]}, AT + timedelta(hours=1)),
    ])


@pytest.fixture(params=["sqlite", "postgresql"])
def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/record.db"
    return request.getfixturevalue("postgres_url")


async def test_reports_over_http(redis_url: str, redis_client: redis.Redis, record_url: str) -> None:
    with Record(parse_record_url(record_url)) as record:
        record.migrate()
        history(redis_client, "acme")
        Archiver(redis_client, record, secret_key=SECRET_KEY).run_once()
    gw = await start_gateway(redis_url, DIALER_RECORD_URL=record_url)
    try:
        query = {"since": "2026-11-29", "until": "2026-12-01"}
        resp = await gw.client.get("/v1/reports/campaign-days", params=query, headers=gw.auth("acme", "supervisor"))
        assert resp.status == 200, await resp.text()
        items = (await resp.json())["items"]
        assert items == [{"day": "2026-11-30", "campaign": "c1", "attempts": 1, "answers": 1, "abandons": 0,
                          "abandon_rate": 0.0, "hours_dialed": 0.02, "denials": {"QUIET_HOURS": 1}, "denied": 1}]
        resp = await gw.client.get("/v1/reports/campaign-days.csv", params=query, headers=gw.auth("acme", "auditor"))
        assert resp.status == 200 and resp.content_type == "text/csv"
        assert (await resp.text()).splitlines()[1] == "2026-11-30,c1,1,1,0,0.0,0.02,1,1"
        # another tenant sees none of it
        resp = await gw.client.get("/v1/reports/campaign-days", params=query, headers=gw.auth("globex", "admin"))
        assert (await resp.json())["items"] == []
        # one person: every call with the gate's decision for it
        resp = await gw.client.post("/v1/reports/person", json={"phone": PHONE}, headers=gw.auth("acme", "auditor"))
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["phone"] == "+33*******01" and PHONE not in await resp.text()
        assert [c["call_id"] for c in body["calls"]] == ["call-1"]
        assert body["calls"][0]["gate"]["allowed"] is True and body["calls"][0]["talk_seconds"] == 60.0
        assert [d["allowed"] for d in body["decisions"]] == [True, False]
        resp = await gw.client.post("/v1/reports/person", json={"phone": PHONE}, headers=gw.auth("globex", "admin"))
        assert (await resp.json())["calls"] == []
        # roles: a supervisor reads counts, not a person's history; an uploader neither
        resp = await gw.client.post("/v1/reports/person", json={"phone": PHONE},
                                    headers=gw.auth("acme", "supervisor"))
        assert resp.status == 403
        resp = await gw.client.get("/v1/reports/campaign-days", headers=gw.auth("acme", "uploader"))
        assert resp.status == 403
        # bad input names the field
        resp = await gw.client.get("/v1/reports/campaign-days", params={"since": "2026-12-05", "until": "2026-12-01"},
                                   headers=gw.auth("acme", "admin"))
        assert resp.status == 422 and (await resp.json())["error"]["field"] == "since"
        resp = await gw.client.post("/v1/reports/person", json={"phone": "12"}, headers=gw.auth("acme", "admin"))
        assert resp.status == 422 and (await resp.json())["error"]["field"] == "phone"
        # the chain verifies across the record and Redis
        resp = await gw.client.get("/v1/audit/verify", headers=gw.auth("acme", "auditor"))
        assert (await resp.json())["ok"] is True
    finally:
        await stop_gateway(gw)


async def test_record_down_is_503(redis_url: str) -> None:
    gw = await start_gateway(redis_url, DIALER_RECORD_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/record")
    try:
        resp = await gw.client.get("/v1/reports/campaign-days", headers=gw.auth("acme", "admin"))
        assert resp.status == 503 and resp.headers["Retry-After"]
        assert (await resp.json())["error"]["code"] == "record_unavailable"
        resp = await gw.client.post("/v1/reports/person", json={"phone": PHONE}, headers=gw.auth("acme", "admin"))
        assert resp.status == 503
    finally:
        await stop_gateway(gw)
