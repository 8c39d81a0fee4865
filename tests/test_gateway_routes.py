"""Campaign, opt-out and consent routes; tenant isolation and roles checked route by route."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest
import redis

from dialer.facts import FactStore, person_key
from dialer.gate import attempt_record, call_index_key
from dialer.webhooks import queue as webhook_queue
from dialer.webhooks.addresses import AddressPolicy
from dialer.webhooks.endpoints import EndpointStore
from dialer.webhooks.sealing import SecretBox
from gateway.app import api_routes
from gateway.auth import PERMISSIONS, ROLES, AuthStore
from tests.gateway_support import (
    SECRET_KEY,
    audit_entries,
    audit_events,
    imported_list,
    start_gateway,
    stop_gateway,
    uploaded_registry,
)

ROUTES = api_routes()

# A valid body for each route that takes one, so checks after validation (404, 403) are what is tested.
SAMPLE_BODIES = {
    ("POST", "/v1/users"): {"name": "newcomer", "role": "auditor"},
    ("PATCH", "/v1/users/{name}"): {"disabled": False},
    ("POST", "/v1/tokens"): {"user": "auditor-user"},
    ("POST", "/v1/campaigns"): {"name": "Another"},
    ("PATCH", "/v1/campaigns/{id}"): {"pacing_ratio": 1.2},
    ("POST", "/v1/optouts"): {"phone": "+33145678901", "source": "crm"},
    ("POST", "/v1/consents"): {"phone": "+33145678901", "source": "web form"},
    ("POST", "/v1/calls/{call_id}/disposition"): {"outcome": "answered"},
    ("POST", "/v1/gate/check"): {"campaign": "c1", "phone": "+33145678901"},
    ("PATCH", "/v1/contacts/{contact_id}"): {"first_name": "Ann"},
    ("POST", "/v1/subjects/erase"): {"phone": "+33145678999"},
    ("PATCH", "/v1/retention"): {"attempts": 800},
    ("POST", "/v1/webhooks"): {"url": "https://hooks.example.com/dialer", "events": ["optout.recorded"]},
    ("POST", "/v1/crm/events"): {"id": "crm-1", "type": "optout", "phone": "+33145678901"},
    ("POST", "/v1/session"): {"email": "someone@example.com", "password": "wrong"},
    ("POST", "/v1/session/mfa/confirm"): {"code": "123456"},
    ("POST", "/v1/session/mfa/verify"): {"code": "123456"},
    ("PUT", "/v1/users/{name}/password"): {"password": "a long enough passphrase"},
    ("PUT", "/v1/auth/policy"): {"mfa_required": False},
    ("PUT", "/v1/session/password"): {"current_password": "x", "new_password": "a long enough passphrase"},
    ("PUT", "/v1/usage/plan"): {"rounding": "per_minute"},
    ("POST", "/v1/campaigns/{id}/suspend"): {"reason": "complaint"},
    ("POST", "/v1/operator/tenants/{tenant}/suspend"): {"reason": "abuse report"},
    ("POST", "/v1/subject-requests"): {"kind": "access", "regime": "GDPR", "phone": "+33145678901"},
    ("POST", "/v1/subject-requests/{request_id}/state"): {"state": "forwarded"},
    ("POST", "/v1/subject-requests/{request_id}/extend"): {"reason": "complex request"},
    ("POST", "/v1/reports/person"): {"phone": "+33145678901"},
}
SAMPLE_QUERIES = {("GET", "/v1/consents"): {"phone": "+33145678901"},
                  ("GET", "/v1/subjects"): {"phone": "+33145678901"},
                  ("GET", "/v1/subjects/report"): {"phone": "+33145678901"}}


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


async def acme_resource(gw, kind: str) -> str | dict[str, str]:
    """Create a resource of `kind` in tenant acme and return its path value (or values by parameter name)."""
    if kind == "campaign":
        return (await gw.ready_campaign("acme"))["id"]
    if kind == "user":
        await AuthStore(gw.redis).create_user("acme", "only-in-acme", "uploader")
        return "only-in-acme"
    if kind == "token":
        _, record = await AuthStore(gw.redis).create_token("acme", "uploader-user")
        return record["id"]
    if kind == "call":  # a call the gate reserved for acme (its attempt and call index, as the gate writes them)
        call_id = "call-only-in-acme"
        await gw.redis.hset(person_key("acme", "+33145678901", "att"), call_id,
                            attempt_record(datetime.now(UTC), "c1", call_id))
        await gw.redis.set(call_index_key("acme", call_id), "+33145678901")
        return call_id
    if kind == "import":
        return await asyncio.to_thread(imported_list, gw.redis_url, "acme", "only-in-acme", run=False)
    if kind == "list":
        await asyncio.to_thread(imported_list, gw.redis_url, "acme", "only-in-acme")
        return "only-in-acme"
    if kind == "campaign_contact":
        campaign = (await gw.ready_campaign("acme"))["id"]
        import_id = await asyncio.to_thread(imported_list, gw.redis_url, "acme", "l1")
        return {"id": campaign, "contact": f"{import_id}-2"}
    if kind == "contact":
        import_id = await asyncio.to_thread(imported_list, gw.redis_url, "acme", "only-in-acme")
        return f"{import_id}-2"
    if kind == "registry_import":
        return await uploaded_registry(gw, "acme")
    if kind == "webhook":
        endpoint, _ = await webhook_store(gw).create("acme", "https://hooks.example.com/acme", ["optout.recorded"])
        return endpoint.id
    if kind == "webhook_dead_letter":  # a delivery the worker gave up on, as it records one
        endpoint, _ = await webhook_store(gw).create("acme", "https://hooks.example.com/x", ["optout.recorded"])
        event_id = "evt_only_in_acme"
        await gw.redis.hset(webhook_queue.delivery_key("acme", endpoint.id, event_id), mapping={
            "tenant": "acme", "endpoint": endpoint.id, "event_id": event_id, "type": "optout.recorded",
            "key": "+33145678901", "body": "{}", "created_at": "0", "attempts": "3", "state": "dead"})
        await gw.redis.zadd(webhook_queue.dead_key("acme"), {f"{endpoint.id}:{event_id}": 1})
        return {"endpoint_id": endpoint.id, "event_id": event_id}
    if kind == "subject_request":
        from dialer import subject_requests

        def record() -> str:
            import redis as redis_lib

            client = redis_lib.Redis.from_url(gw.redis_url)
            try:
                return subject_requests.record_request(
                    client, "acme", kind="access", regime="GDPR", subject=subject_requests.Subject(contact_id="x"),
                    received_at=datetime.now(UTC), by="test", now=datetime.now(UTC))["id"]
            finally:
                client.close()

        return await asyncio.to_thread(record)
    raise AssertionError(f"no factory for resource kind {kind}")


def webhook_store(gw) -> EndpointStore:
    return EndpointStore(gw.redis, SecretBox(SECRET_KEY), AddressPolicy())


def fill(path: str, value: str | dict[str, str]) -> str:
    if isinstance(value, dict):
        return re.sub(r"\{(\w+)\}", lambda m: value[m.group(1)], path)
    return re.sub(r"\{\w+\}", value, path)


async def call(gw, route, path: str, headers: dict[str, str]):
    kwargs = {"headers": headers}
    if (route.method, route.path) in SAMPLE_BODIES:
        kwargs["json"] = SAMPLE_BODIES[(route.method, route.path)]
    if (route.method, route.path) in SAMPLE_QUERIES:
        kwargs["params"] = SAMPLE_QUERIES[(route.method, route.path)]
    resp = await gw.client.request(route.method, path, **kwargs)
    status = resp.status
    body = await resp.json() if status >= 400 else None
    resp.close()  # event streams stay open otherwise
    return status, body


def test_every_route_body_has_a_sample():
    for route in ROUTES:
        if route.body is not None and route.body.get("required"):
            assert (route.method, route.path) in SAMPLE_BODIES, route.path


@pytest.mark.parametrize("route", [r for r in ROUTES if r.resource], ids=lambda r: f"{r.method} {r.path}")
async def test_other_tenants_resource_is_404_as_if_absent(gw, route):
    value = await acme_resource(gw, route.resource)
    path = fill(route.path, value)
    status, body = await call(gw, route, path, gw.auth("globex", "admin"))
    assert status == 404 and body["error"]["code"] == "not_found"
    absent_status, absent_body = await call(gw, route, fill(route.path, "doesnotexist"), gw.auth("globex", "admin"))
    assert (absent_status, absent_body["error"]["message"]) == (404, body["error"]["message"])
    # And the owner does see it.
    owner_status, _ = await call(gw, route, path, gw.auth("acme", "admin"))
    assert owner_status not in (401, 403, 404)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.permission], ids=lambda r: f"{r.method} {r.path}")
async def test_every_protected_route_is_401_without_token(gw, route):
    status, body = await call(gw, route, fill(route.path, "x"), {})
    assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", [r for r in ROUTES if r.permission], ids=lambda r: f"{r.method} {r.path}")
async def test_roles_follow_the_permission_table(gw, route, role):
    value = await acme_resource(gw, route.resource) if route.resource else "x"
    status, body = await call(gw, route, fill(route.path, value), gw.auth("acme", role))
    if role in PERMISSIONS[route.permission]:
        assert status not in (401, 403), body
    else:
        assert status == 403 and body["error"]["code"] == "forbidden"


async def test_named_role_rules(gw):
    campaign = (await gw.ready_campaign())["id"]

    async def act(action: str, role: str) -> int:
        return (await gw.client.post(f"/v1/campaigns/{campaign}/{action}", headers=gw.auth("acme", role))).status

    assert await act("start", "uploader") == 403
    assert await act("start", "supervisor") == 200
    assert await act("pause", "auditor") == 403
    assert await act("pause", "supervisor") == 200
    optout = {"phone": "+33145678901", "source": "crm"}
    assert (await gw.client.post("/v1/optouts", json=optout, headers=gw.auth("acme", "auditor"))).status == 403
    assert (await gw.client.post("/v1/optouts", json=optout, headers=gw.auth("acme", "uploader"))).status == 201


async def test_campaign_lifecycle_over_http_records_who(gw):
    sup = gw.auth("acme", "supervisor")
    created = await gw.create_campaign(pacing_mode="predictive", pacing_ratio=2.5, abandon_cap=0.03,
                                       schedule_windows=[{"days": ["mon", "tue"], "start": "09:00", "end": "12:30"}],
                                       retry_rules={"busy": 30, "no_answer": 120}, max_attempts=4)
    cid = created["id"]
    assert created["status"] == "draft" and created["retry_rules"] == {"busy": 30, "no_answer": 120}
    resp = await gw.client.post(f"/v1/campaigns/{cid}/start", headers=sup)
    error = (await resp.json())["error"]
    assert resp.status == 409 and error["code"] == "campaign_incomplete" and error["field"] == "caller_id"
    await gw.ensure_list("acme", "l1")  # a campaign may only name lists that exist
    resp = await gw.client.patch(f"/v1/campaigns/{cid}", headers=sup,
                                 json={"caller_id": "+33145678900", "seller_name": "Acme", "lists": ["l1"],
                                       "queue": "sales"})
    assert resp.status == 200
    for action, status in [("start", "running"), ("pause", "paused"), ("resume", "running"), ("stop", "stopping")]:
        resp = await gw.client.post(f"/v1/campaigns/{cid}/{action}", headers=sup)
        assert resp.status == 200 and (await resp.json())["status"] == status
    resp = await gw.client.post(f"/v1/campaigns/{cid}/resume", headers=sup)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "bad_transition"
    resp = await gw.client.patch(f"/v1/campaigns/{cid}", json={"pacing_ratio": 3}, headers=sup)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_editable"
    history = (await (await gw.client.get(f"/v1/campaigns/{cid}/history", headers=sup)).json())["items"]
    assert [h["action"] for h in history] == ["stop", "resume", "pause", "start", "create"]
    assert {h["by"] for h in history} == {"supervisor-user"}
    # Campaign changes are audited at their source (dialer/campaigns.py, in the same script as the change),
    # once each: the gateway's own campaign.* events are not appended a second time.
    audited = [e for e in await audit_events(gw, "acme") if e["kind"] == "campaign_control"]
    assert [e["action"] for e in audited] == ["create", "configure", "start", "pause", "resume", "stop"]
    assert {e["actor"] for e in audited} == {"supervisor-user"}
    assert all(e["campaign"] == cid for e in audited)
    assert not [e for e in await audit_events(gw, "acme") if e["action"].startswith("campaign.")]
    listed = await (await gw.client.get("/v1/campaigns?status=stopping", headers=sup)).json()
    assert [c["id"] for c in listed["items"]] == [cid]
    resp = await gw.client.get("/v1/campaigns?status=bogus", headers=sup)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "status"
    resp = await gw.client.get("/v1/campaigns?colour=red", headers=sup)
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "unknown_field"


async def test_campaign_validation_names_nested_fields(gw):
    sup = gw.auth("acme", "supervisor")
    bad = {"name": "x", "schedule_windows": [{"days": ["mon"], "start": "9am", "end": "12:00"}]}
    resp = await gw.client.post("/v1/campaigns", json=bad, headers=sup)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "schedule_windows[0].start"
    bad = {"name": "x", "schedule_windows": [{"days": ["mon"], "start": "12:00", "end": "09:00"}]}
    resp = await gw.client.post("/v1/campaigns", json=bad, headers=sup)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "schedule_windows[0].end"
    resp = await gw.client.post("/v1/campaigns", json=["not", "an", "object"], headers=sup)
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "wrong_type"
    resp = await gw.client.post("/v1/campaigns", json={"name": "x", "pacing_ratio": True}, headers=sup)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "pacing_ratio"


@pytest.fixture
def facts(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield FactStore(client)
    client.close()


@pytest.mark.parametrize("text", ["STOP", "stop", " Stop please", "OPT OUT", "opt-out", "optout", "Unsubscribe",
                                  "QUIT", "end", "Revoke", "cancel"])
async def test_sms_stop_keywords_record_an_optout(gw, facts, text):
    resp = await gw.client.post("/v1/optouts", headers=gw.auth("acme", "uploader"),
                                json={"phone": "01 45 67 89 01", "country": "FR", "source": "sms", "keyword": text})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["phone"] == "+33145678901" and body["scope"] == "company"
    assert facts.optout("acme", "+33145678901").source == "sms"
    assert facts.optout("globex", "+33145678901") is None


@pytest.mark.parametrize("text", ["hello", "stopwatch", "weekend", "send me more"])
async def test_other_sms_text_is_refused_not_dropped_silently(gw, facts, text):
    resp = await gw.client.post("/v1/optouts", headers=gw.auth("acme", "uploader"),
                                json={"phone": "+33145678901", "source": "sms", "keyword": text})
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["field"] == "keyword" and error["code"] == "not_an_optout"
    assert facts.optout("acme", "+33145678901") is None


async def test_campaign_optout_and_bad_numbers(gw, facts):
    sup = gw.auth("acme", "supervisor")
    cid = (await gw.create_campaign())["id"]
    resp = await gw.client.post("/v1/optouts", headers=sup,
                                json={"phone": "+442079460000", "source": "crm", "scope": "campaign", "campaign": cid})
    assert resp.status == 201
    assert facts.optout("acme", "+442079460000") is None
    assert facts.optout("acme", "+442079460000", cid).scope == "campaign"
    resp = await gw.client.post("/v1/optouts", headers=sup, json={"phone": "+442079460000", "source": "crm",
                                                                  "scope": "campaign"})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "campaign"
    other = (await gw.create_campaign("globex"))["id"]
    resp = await gw.client.post("/v1/optouts", headers=sup, json={"phone": "+442079460000", "source": "crm",
                                                                  "campaign": other})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "campaign"
    for phone in ("hello", "+1", "0145678901"):
        resp = await gw.client.post("/v1/optouts", headers=sup, json={"phone": phone, "source": "crm"})
        assert resp.status == 422 and (await resp.json())["error"]["field"] == "phone", phone


async def test_consent_grant_withdraw_and_read(gw, facts):
    up, sup = gw.auth("acme", "uploader"), gw.auth("acme", "supervisor")
    grant = {"phone": "+33145678901", "source": "web form", "at": "2026-01-10T09:00:00Z", "written": True,
             "purpose": "telemarketing", "ip": "203.0.113.9", "text": "I agree to be called by Acme",
             "expires_at": "2028-01-10T09:00:00Z"}
    resp = await gw.client.post("/v1/consents", json=grant, headers=up)
    assert resp.status == 201
    resp = await gw.client.post("/v1/consents", headers=up, json={"phone": "+33145678901", "source": "call",
                                                                   "action": "withdraw", "at": "2026-02-01T08:00:00Z"})
    assert resp.status == 201
    listed = await (await gw.client.get("/v1/consents", params={"phone": "+33145678901"}, headers=sup)).json()
    assert [c["given_at"] for c in listed["items"]] == ["2026-01-10T09:00:00Z", None]
    assert listed["items"][0]["ip"] == "203.0.113.9" and listed["items"][1]["withdrawn_at"] == "2026-02-01T08:00:00Z"
    assert len(facts.consents("acme", "+33145678901")) == 2 and facts.consents("globex", "+33145678901") == []
    other = await (await gw.client.get("/v1/consents", params={"phone": "+33145678901"},
                                       headers=gw.auth("globex", "supervisor"))).json()
    assert other["items"] == []
    resp = await gw.client.get("/v1/consents", headers=sup)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "phone"
    resp = await gw.client.post("/v1/consents", headers=up, json={**grant, "at": "2026-01-10T09:00:00"})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "at"
    resp = await gw.client.post("/v1/consents", headers=up, json={**grant, "expires_at": "2025-01-01T00:00:00Z"})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "expires_at"


async def test_optout_is_audited_without_the_full_number(gw):
    await gw.client.post("/v1/optouts", json={"phone": "+33145678901", "source": "crm"}, headers=gw.auth())
    optouts = [e for e in await audit_entries(gw, "acme") if e.kind == "optout"]
    assert len(optouts) == 1 and "+33145678901" not in str(optouts[0])
    assert optouts[0].actor == "user:admin-user" and optouts[0].payload["phone"].endswith("01")


async def test_concurrent_optouts_are_all_kept(gw, facts):
    phones = [f"+3314567{n:04d}" for n in range(40)]
    results = await asyncio.gather(*[
        gw.client.post("/v1/optouts", json={"phone": p, "source": "crm"}, headers=gw.auth()) for p in phones])
    assert [r.status for r in results] == [201] * 40
    assert all(facts.optout("acme", p) for p in phones)


async def test_listings_never_show_another_tenants_items(gw):
    theirs = (await gw.ready_campaign("globex"))["id"]
    await gw.client.post(f"/v1/campaigns/{theirs}/start", headers=gw.auth("globex", "supervisor"))
    _, their_token = await AuthStore(gw.redis).create_token("globex", "auditor-user")
    mine = (await gw.ready_campaign("acme"))["id"]
    campaigns = await (await gw.client.get("/v1/campaigns", headers=gw.auth())).json()
    assert [c["id"] for c in campaigns["items"]] == [mine]
    tokens = await (await gw.client.get("/v1/tokens", headers=gw.auth())).json()
    assert their_token["id"] not in {t["id"] for t in tokens["items"]}
    assert {t["user"] for t in tokens["items"]} <= {f"{r}-user" for r in ROLES}
    metrics = await (await gw.client.get("/metrics", headers=gw.auth())).text()
    assert theirs not in metrics and "globex" not in metrics


async def test_agent_disposition_over_http(gw, redis_url):
    call_id = await acme_resource(gw, "call")
    sup = gw.auth("acme", "supervisor")
    url = f"/v1/calls/{call_id}/disposition"
    resp = await gw.client.post(url, json={"outcome": "opted_out", "keyword": "stop"}, headers=sup)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert (data["outcome"], data["recorded"], data["phone"]) == ("opted_out", "opted_out", "+33*******01")
    assert data["optout"]["scope"] == "company" and data["campaign"] == "c1"
    sync = redis.Redis.from_url(redis_url)
    optout = FactStore(sync).optout("acme", "+33145678901")
    assert (optout.source, optout.call_id, optout.keyword) == ("agent", call_id, "stop")
    assert FactStore(sync).optout("globex", "+33145678901") is None
    # The hangup's `answered` comes later and does not undo it; a later agent report cannot lower it either.
    resp = await gw.client.post(url, json={"outcome": "callback", "note": "call back at 5"}, headers=sup)
    assert (await resp.json())["recorded"] == "opted_out"
    bad = await gw.client.post(url, json={"outcome": "maybe"}, headers=sup)
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "outcome"
    other = await gw.client.post(url, json={"outcome": "refused"}, headers=gw.auth("globex", "supervisor"))
    assert other.status == 404
    assert (await gw.client.post(url, json={"outcome": "refused"}, headers=gw.auth("acme", "uploader"))).status == 403
    sync.close()
