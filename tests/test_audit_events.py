"""Audit coverage on a real redis-server: every kind of event the issue names reaches the tenant's hash-chained
trail (opt-outs, consent changes, imports, registry loads, campaign control, token use, exports, erasures), with
no phone number and no token secret in it, and the trail keeps verifying; tampering after a retention trim is
still named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from dialer import privacy, retention
from dialer.audit import AuditLog, stream_key
from dialer.audit_events import exports_key, gateway_sink
from dialer.config import load_config
from dialer.contacts.export import enqueue_export
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.facts import FactStore
from dialer.jobs import EXPORTS, InlineWorker, get_queue
from dialer.registry.loader import load_registry
from dialer.suppression import configure
from gateway import trail
from gateway.app import make_app
from gateway.auth import AuthStore
from rules.model import Consent

KEY = "audit-events-key"
AT = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
NUMBER = "+33145678901"


def entries(client: redis.Redis, tenant: str) -> list:
    return list(AuditLog(client, KEY).entries(tenant))


def raw_trail(client: redis.Redis, tenant: str) -> str:
    return repr(client.xrange(stream_key(tenant)))


@pytest.fixture
async def gateway(redis_url):
    config = load_config(env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": KEY})
    client_redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    app = make_app(config, client_redis)
    previous = trail.set_sink(gateway_sink)  # as `dialer serve` does
    store = AuthStore(client_redis)
    await store.create_tenant("acme", "Acme")
    await store.create_user("acme", "sue", "supervisor")
    await store.create_user("acme", "ada", "admin")
    tokens = {"sue": (await store.create_token("acme", "sue"))[0], "ada": (await store.create_token("acme", "ada"))[0]}
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, tokens
    await client.close()
    await client_redis.aclose()
    trail.set_sink(previous)


async def test_gateway_events_reach_the_chain_once_with_their_actor(gateway, redis_client, redis_url):
    from tests.gateway_support import imported_list

    imported_list(redis_url, "acme", "l1")  # a campaign names lists that exist
    client, tokens = gateway
    sue, ada = ({"Authorization": f"Bearer {tokens[u]}"} for u in ("sue", "ada"))
    resp = await client.post("/v1/campaigns", json={"name": "Spring", "caller_id": "+33145678900",
                                                     "seller_name": "Acme", "lists": ["l1"], "queue": "sales"},
                             headers=sue)
    assert resp.status == 201
    cid = (await resp.json())["id"]
    assert (await client.post(f"/v1/campaigns/{cid}/start", headers=sue)).status == 200
    assert (await client.post(f"/v1/campaigns/{cid}/pause", headers=sue)).status == 200
    assert (await client.post("/v1/optouts", json={"phone": NUMBER, "source": "crm"}, headers=sue)).status == 201
    resp = await client.post("/v1/consents", json={"phone": NUMBER, "source": "web", "ip": "198.51.100.7",
                                                    "text": "Yes, call me"}, headers=sue)
    assert resp.status == 201
    assert (await client.post("/v1/tokens", json={"user": "sue"}, headers=ada)).status == 201

    found = entries(redis_client, "acme")
    assert [e.payload["action"] for e in found if e.kind == "token_use"] == ["token.use"] * 6 + ["token.create"]
    control = [(e.payload["action"], e.payload["campaign"], e.payload["to"]) for e in found
               if e.kind == "campaign_control"]  # once each: from the campaign store's own script
    assert control == [("create", cid, "draft"), ("start", cid, "running"), ("pause", cid, "paused")]
    ref = AuditLog(redis_client, KEY).person_ref(NUMBER)
    [optout] = [e for e in found if e.kind == "optout"]  # once: from the fact store's transaction
    assert optout.actor == "user:sue" and optout.payload["person"] == ref and optout.payload["source"] == "crm"
    [consent] = [e for e in found if e.kind == "consent"]
    assert consent.actor == "user:sue" and consent.payload["action"] == "grant" and consent.payload["ip"] is True
    assert {e.actor for e in found if e.kind == "campaign_control"} == {"sue"}
    text = raw_trail(redis_client, "acme")
    assert "145678901" not in text and "198.51.100.7" not in text and "Yes, call me" not in text
    assert not any(t.split("_", 2)[2] in text for t in tokens.values())
    assert AuditLog(redis_client, KEY).verify("acme").ok


def test_imports_registry_loads_exports_and_erasures_are_audited(redis_client, tmp_path: Path):
    configure(KEY)
    try:
        redis_client.sadd("tenants", "acme", "globex")
        path = tmp_path / "l.csv"
        path.write_text(f"telephone;consent_date\n{NUMBER};2026-01-02\nnope;\n")
        ticket = create_import(redis_client, "acme", path, "leads", region="FR", campaign="c1")
        run_import_inline(redis_client, "acme", ticket.import_id)
        [imported] = [e for e in entries(redis_client, "acme") if e.kind == "import"]
        assert imported.actor == "job:import" and imported.payload["import_id"] == ticket.import_id
        assert imported.payload["status"] == "committed" and imported.payload["summary"]["contacts_added"] == 1
        assert imported.payload["list"] == "leads" and imported.payload["campaign"] == "c1"

        registry = tmp_path / "bloctel.txt"
        registry.write_text("0145678999\n")
        load_registry(redis_client, "bloctel", registry, loaded_at=AT)
        for tenant in ("acme", "globex"):
            [loaded] = [e for e in entries(redis_client, tenant) if e.kind == "registry_load"]
            assert loaded.payload["registry"] == "bloctel" and loaded.payload["status"] == "committed"
            assert loaded.payload["rows"] == 1 and loaded.at == AT

        out = tmp_path / "export.csv"
        enqueue_export(redis_client, "acme", "contacts", str(out), list_id="leads")
        assert InlineWorker([get_queue(redis_client, EXPORTS)], connection=redis_client).work(burst=True)
        [exported] = [e for e in entries(redis_client, "acme") if e.kind == "export"]
        assert exported.payload["path"] == str(out) and exported.payload["rows"] == 1
        assert json.loads(redis_client.hget(exports_key("acme"), str(out)))["kind"] == "contacts"

        privacy.erase(redis_client, "acme", phone=NUMBER, actor="user:dpo", at=AT, secret_key=KEY)
        assert [e.kind for e in entries(redis_client, "acme")][-1] == "erasure"
        assert "145678901" not in raw_trail(redis_client, "acme") and NUMBER[3:] not in out.read_text()
        assert AuditLog(redis_client, KEY).verify("acme").ok and AuditLog(redis_client, KEY).verify("globex").ok
    finally:
        configure(b"")


def test_consent_evidence_is_in_the_fact_store_and_its_recording_in_the_trail(redis_client):
    facts = FactStore(redis_client, audit=AuditLog(redis_client, KEY))
    facts.add_consent("acme", NUMBER, Consent(given_at=AT, source="call", evidence="rec-9", text="script v3",
                                              ip=None, purpose="telemarketing"), actor="user:bob")
    facts.withdraw_consent("acme", NUMBER, AT + timedelta(days=1), source="letter", actor="user:bob")
    grant, withdraw = [e for e in entries(redis_client, "acme") if e.kind == "consent"]
    assert (grant.payload["action"], grant.payload["evidence"], grant.payload["text"]) == ("grant", True, True)
    assert withdraw.payload["action"] == "withdraw" and withdraw.at == AT + timedelta(days=1)
    assert [c.evidence for c in facts.consents("acme", NUMBER)] == ["rec-9", ""]


def test_tampering_after_a_retention_trim_is_still_named(redis_client):
    audit = AuditLog(redis_client, KEY)
    for n in range(6):
        audit.append("acme", "optout", "test", {"n": n}, AT - timedelta(days=3000 - n * 400))
    report = retention.run(redis_client, "acme", AT, secret_key=KEY)
    assert report.removed["audit"] > 0
    result = audit.verify("acme")
    assert result.ok, str(result)
    kept = [e.seq for e in audit.entries("acme")]
    # Delete an entry in the middle of what is kept: named.
    redis_client.xdel(stream_key("acme"), f"{kept[1]}-0")
    result = audit.verify("acme")
    assert not result.ok and result.bad_seq == kept[1] and "missing" in result.problem
    # Cut the start further and move the base by hand: the base is not signed with our key.
    redis_client.hset("t:{acme}:audit:base", mapping={"seq": str(kept[1]), "hash": "0" * 40})
    result = audit.verify("acme")
    assert not result.ok and "not signed" in result.problem
