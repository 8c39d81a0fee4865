"""Usage, plan, holds and data-subject request register over HTTP (issue 19): roles, tenant isolation, clear
errors, the suspended tenant's refusals. Real app on a real Redis (tests/gateway_support.py)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib

from dialer import holds, subject_requests
from dialer.facts import FactStore
from dialer.usage import meter
from dialer.webhooks.events import OUTBOX, endpoints_key
from tests.gateway_support import audit_entries, start_gateway, stop_gateway


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


def sync_client(gw):
    return redis_lib.Redis.from_url(gw.redis_url)


def meter_calls(gw, tenant: str, campaign: str, talks: list[float | None], at: datetime) -> None:
    client = sync_client(gw)
    try:
        facts = FactStore(client)
        for i, talk in enumerate(talks):
            client.hset(f"t:{tenant}:p:+3314567{i:04d}:att", f"{campaign}-{i}",
                        json.dumps({"at": at.isoformat(), "call_id": f"{campaign}-{i}", "campaign": campaign,
                                    "outcome": "reserved"}))
            usage = meter.CallUsage(None if talk is None else 0.0, talk, recorded=True)
            facts.record_outcome(tenant, f"+3314567{i:04d}", f"{campaign}-{i}",
                                 "no_answer" if talk is None else "answered", at,
                                 metered=meter.measures(usage, "per_6_seconds"))
    finally:
        client.close()


async def test_usage_per_day_and_campaign_as_json_and_csv_for_the_callers_tenant_only(gw):
    today = datetime.now(UTC)
    await asyncio.to_thread(meter_calls, gw, "acme", "c1", [61.0, None, 5.0], today)
    await asyncio.to_thread(meter_calls, gw, "globex", "g1", [600.0], today)
    resp = await gw.client.get("/v1/usage", params={"month": today.strftime("%Y-%m")},
                               headers=gw.auth("acme", "auditor"))
    assert resp.status == 200, await resp.text()
    found = await resp.json()
    assert found["totals"]["attempts"] == 3 and found["totals"]["connected"] == 2
    assert found["totals"]["billable_seconds"] == 66 + 6 and found["totals"]["billable_minutes"] == 1.2
    assert found["totals"]["recordings"] == 2 and list(found["campaigns"]) == ["c1"]  # no globex figure
    assert found["days"][0]["day"] == today.date().isoformat()
    export = await gw.client.get("/v1/usage/export", params={"month": today.strftime("%Y-%m")}, headers=gw.auth())
    assert export.status == 200 and export.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await export.text())))
    assert [(r["campaign"], r["attempts"]) for r in rows] == [("", "3"), ("c1", "3")]
    bad = await gw.client.get("/v1/usage", params={"from": "2026-12-06", "to": "2026-12-01"}, headers=gw.auth())
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "to"
    assert (await gw.client.get("/v1/usage", headers=gw.auth("acme", "uploader"))).status == 403
    other = await (await gw.client.get("/v1/usage", headers=gw.auth("globex"))).json()
    assert list(other["campaigns"]) == ["g1"]
    metrics = await (await gw.client.get("/metrics", headers=gw.auth())).text()
    assert 'dialer_usage_attempts_total{tenant="acme",campaign="c1"} 3' in metrics
    assert 'dialer_usage_billable_seconds_total{tenant="acme",campaign="c1"} 72' in metrics
    assert "g1" not in metrics


async def test_the_plan_is_admins_validated_and_audited(gw):
    plan = {"rounding": "per_minute", "budgets": [{"measure": "billable_minutes", "period": "month",
                                                    "limit": 100, "alerts": [80, 100], "hard_stop": True}]}
    refused = await gw.client.put("/v1/usage/plan", json=plan, headers=gw.auth("acme", "supervisor"))
    assert refused.status == 403
    resp = await gw.client.put("/v1/usage/plan", json=plan, headers=gw.auth())
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"][0]["percent"] == 0
    bad = await gw.client.put("/v1/usage/plan", json={"budgets": [{"measure": "attempts", "period": "day",
                                                                    "limit": 0}]}, headers=gw.auth())
    assert bad.status == 422 and "limit" in (await bad.json())["error"]["field"]
    shown = await (await gw.client.get("/v1/usage/plan", headers=gw.auth("acme", "auditor"))).json()
    assert shown["rounding"] == "per_minute" and shown["budgets"][0]["hard_stop"] is True
    assert (await (await gw.client.get("/v1/usage/plan", headers=gw.auth("globex"))).json())["budgets"] == []
    assert [e.kind for e in await audit_entries(gw, "acme")].count("usage_plan") == 1


async def test_a_campaign_kill_switch_is_for_admins_says_why_and_shows_on_the_dashboard(gw):
    campaign = (await gw.ready_campaign("acme"))["id"]
    path = f"/v1/campaigns/{campaign}"
    assert (await gw.client.post(f"{path}/suspend", json={"reason": "x"},
                                 headers=gw.auth("acme", "supervisor"))).status == 403
    missing = await gw.client.post(f"{path}/suspend", json={}, headers=gw.auth())
    assert missing.status == 422
    resp = await gw.client.post(f"{path}/suspend", json={"reason": "complaint 42"}, headers=gw.auth())
    assert resp.status == 200 and (await resp.json())["code"] == "CAMPAIGN_SUSPENDED"
    assert (await gw.client.post(f"{path}/suspend", json={"reason": "x"}, headers=gw.auth("globex"))).status == 404
    listed = await (await gw.client.get("/v1/holds", headers=gw.auth("acme", "auditor"))).json()
    assert [(h["campaign"], h["reason"], h["by"]) for h in listed["items"]] == [(campaign, "complaint 42",
                                                                                  "user:admin-user")]
    snap = await (await gw.client.get(f"{path}/stats", headers=gw.auth("acme", "supervisor"))).json()
    assert "complaint 42" in snap["holds"][0]["text"]
    shown = await (await gw.client.get(path, headers=gw.auth("acme", "auditor"))).json()
    assert [h["code"] for h in shown["holds"]] == ["CAMPAIGN_SUSPENDED"]
    events = [e for e in await gw.redis.xrange(OUTBOX) if e[1]["type"] == "campaign.state_changed"]
    assert events == [] or json.loads(events[-1][1]["body"])["data"]["action"] == "suspend"
    assert (await (await gw.client.get("/v1/holds", headers=gw.auth("globex"))).json())["items"] == []
    assert (await gw.client.post(f"{path}/unsuspend", json={}, headers=gw.auth())).status == 200
    assert (await gw.client.post(f"{path}/unsuspend", json={}, headers=gw.auth())).status == 409


async def test_a_suspended_tenant_gets_no_new_work_but_keeps_its_peoples_rights(gw):
    campaign = (await gw.ready_campaign("acme"))["id"]
    client = sync_client(gw)
    try:
        holds.suspend_tenant(client, "acme", reason="abuse report 12", by="operator:alice", at=datetime.now(UTC))
    finally:
        client.close()
    created = await gw.client.post("/v1/campaigns", json={"name": "new"}, headers=gw.auth("acme", "supervisor"))
    error = (await created.json())["error"]
    assert created.status == 403 and error["code"] == "tenant_suspended" and "abuse report 12" in error["message"]
    started = await gw.client.post(f"/v1/campaigns/{campaign}/start", headers=gw.auth("acme", "supervisor"))
    assert started.status == 403
    # stopping work, opt-outs, reads: still there
    optout = await gw.client.post("/v1/optouts", json={"phone": "+33145678901", "source": "crm"}, headers=gw.auth())
    assert optout.status in (200, 201)
    assert (await gw.client.get("/v1/campaigns", headers=gw.auth())).status == 200
    assert (await gw.client.post(f"/v1/campaigns/{campaign}/archive", headers=gw.auth())).status == 200
    # another tenant is not affected
    assert (await gw.client.post("/v1/campaigns", json={"name": "ok"},
                                 headers=gw.auth("globex", "supervisor"))).status == 201
    usage = await (await gw.client.get("/v1/usage", headers=gw.auth())).json()
    assert usage["holds"][0]["code"] == "TENANT_SUSPENDED"
    metrics = await (await gw.client.get("/metrics", headers=gw.auth())).text()
    assert 'dialer_tenant_held{tenant="acme",code="TENANT_SUSPENDED"} 1' in metrics


async def test_subject_requests_have_deadlines_states_and_alerts(gw):
    await gw.redis.hset(endpoints_key("acme"), "ep1", "{}")  # a tenant with an endpoint gets the events
    body = {"kind": "erasure", "regime": "GDPR", "phone": "+33145678901", "reference": "ticket 9",
            "received_at": "2026-01-31T10:00:00Z"}
    assert (await gw.client.post("/v1/subject-requests", json=body, headers=gw.auth("acme", "auditor"))).status == 403
    resp = await gw.client.post("/v1/subject-requests", json=body, headers=gw.auth())
    assert resp.status == 201, await resp.text()
    record = await resp.json()
    assert record["deadline"] == "2026-02-28T23:59:59Z"  # one month: 31 Jan -> 28 Feb
    assert record["forward_by"] == "2026-02-17T23:59:59Z"  # 12 business days from Saturday 31 Jan
    assert record["overdue"] is True and "+33145678901" not in json.dumps(record)  # masked and keyed only
    ccpa = await (await gw.client.post("/v1/subject-requests", headers=gw.auth(), json={
        "kind": "access", "regime": "CCPA", "contact_id": "k1"})).json()
    assert ccpa["days_left"] == 45 and ccpa["overdue"] is False
    listed = await (await gw.client.get("/v1/subject-requests", params={"overdue": "true"},
                                        headers=gw.auth("acme", "auditor"))).json()
    assert [r["id"] for r in listed["items"]] == [record["id"]]
    assert (await (await gw.client.get("/v1/subject-requests", headers=gw.auth("globex"))).json())["items"] == []
    assert (await gw.client.get(f"/v1/subject-requests/{record['id']}", headers=gw.auth("globex"))).status == 404
    path = f"/v1/subject-requests/{ccpa['id']}"
    refused = await gw.client.post(f"{path}/state", json={"state": "refused"}, headers=gw.auth())
    assert refused.status == 422 and (await refused.json())["error"]["field"] == "reason"
    extended = await (await gw.client.post(f"{path}/extend", json={"reason": "many records"},
                                           headers=gw.auth())).json()
    assert extended["days_left"] == 90 and extended["extended"] is True
    again = await gw.client.post(f"{path}/extend", json={"reason": "more"}, headers=gw.auth())
    assert again.status == 409 and (await again.json())["error"]["code"] == "already_extended"
    assert (await gw.client.post(f"{path}/state", json={"state": "forwarded"}, headers=gw.auth())).status == 200
    done = await (await gw.client.post(f"{path}/state", json={"state": "done"}, headers=gw.auth())).json()
    assert done["state"] == "done" and [h["state"] for h in done["history"]] == ["received", "received", "forwarded",
                                                                                  "done"]
    assert (await gw.client.post(f"{path}/state", json={"state": "forwarded"}, headers=gw.auth())).status == 409

    def sweep() -> list[dict]:
        client = sync_client(gw)
        try:
            first = subject_requests.sweep(client, "acme", datetime.now(UTC))
            second = subject_requests.sweep(client, "acme", datetime.now(UTC))
            assert first == {"reminder": 0, "overdue": 1} and second == {"reminder": 0, "overdue": 0}
            return [json.loads(f[b"body"]) for _, f in client.xrange(OUTBOX)]
        finally:
            client.close()

    events = await asyncio.to_thread(sweep)
    assert [e["type"] for e in events] == ["subject_request.received", "subject_request.received",
                                           "subject_request.overdue"]
    assert events[-1]["data"]["id"] == record["id"] and events[-1]["data"]["missed"] == "deadline"
    kinds = [e.payload.get("action") for e in await audit_entries(gw, "acme") if e.kind == "subject_request"]
    assert kinds == ["received", "received", "extended", "forwarded", "done"]


def test_deadlines_follow_counsels_table():
    received = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # a Friday
    assert subject_requests.deadlines("GDPR", received) == {"deadline": "2027-01-04T23:59:59Z",
                                                            "forward_by": "2026-12-22T23:59:59Z"}
    assert subject_requests.deadlines("CCPA", received)["deadline"] == "2027-01-18T23:59:59Z"
    assert subject_requests.add_months(datetime(2026, 3, 31).date(), 2).isoformat() == "2026-05-31"
    assert subject_requests.add_business_days(datetime(2026, 12, 4).date(), 1).isoformat() == "2026-12-07"


def test_reminders_go_once_each_nearest_threshold_first(redis_client):
    redis_client.sadd("tenants", "acme")
    redis_client.hset(endpoints_key("acme"), "ep1", "{}")
    received = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    record = subject_requests.record_request(redis_client, "acme", kind="access", regime="GDPR",
                                             subject=subject_requests.Subject(contact_id="k"),
                                             received_at=received, by="test", now=received)
    deadline = datetime.fromisoformat(record["deadline"].replace("Z", "+00:00"))
    # not forwarded to the client within 12 business days: alerted once
    assert subject_requests.sweep(redis_client, "acme", received + timedelta(days=17))["overdue"] == 1
    subject_requests.move(redis_client, "acme", record["id"], "forwarded", by="test",
                          now=received + timedelta(days=17))
    assert subject_requests.sweep(redis_client, "acme", deadline - timedelta(days=10))["reminder"] == 0
    assert subject_requests.sweep_all(redis_client, deadline - timedelta(days=6))["reminder"] == 1
    assert subject_requests.sweep(redis_client, "acme", deadline - timedelta(days=5))["reminder"] == 0
    assert subject_requests.sweep(redis_client, "acme", deadline - timedelta(days=1))["reminder"] == 1
    assert subject_requests.sweep(redis_client, "acme", deadline + timedelta(hours=1))["overdue"] == 1
    types = [f[b"type"].decode() for _, f in redis_client.xrange(OUTBOX)]
    assert types == ["subject_request.received", "subject_request.overdue", "subject_request.reminder",
                     "subject_request.reminder", "subject_request.overdue"]
