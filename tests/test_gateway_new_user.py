"""Issue 16 "what a new user trips on", on the real aiohttp gateway and a real redis-server: a campaign naming
a list that does not exist is refused at creation, at PATCH and at start, naming the list."""

from __future__ import annotations

import pytest

from tests.gateway_support import start_gateway, stop_gateway

READY = {"caller_id": "+33145678900", "seller_name": "Acme SAS", "queue": "sales"}


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


async def test_a_campaign_on_a_missing_list_is_refused_naming_it(gw):
    sup = gw.auth("acme", "supervisor")
    await gw.ensure_list("acme", "spring")
    resp = await gw.client.post("/v1/campaigns", json={"name": "x", **READY, "lists": ["spring", "sprnig"]},
                                headers=sup)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "unknown_list" and error["field"] == "lists[1]" and "sprnig" in error["message"]
    campaign = await gw.create_campaign(**READY, lists=["spring"])
    resp = await gw.client.patch(f"/v1/campaigns/{campaign['id']}", json={"lists": ["nope"]}, headers=sup)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "lists[0]"
    got = await (await gw.client.get(f"/v1/campaigns/{campaign['id']}", headers=sup)).json()
    assert got["lists"] == ["spring"]  # unchanged
    # Another tenant's list of the same name does not count.
    await gw.ensure_list("globex", "autumn")
    resp = await gw.client.post("/v1/campaigns", json={"name": "x", **READY, "lists": ["autumn"]}, headers=sup)
    assert resp.status == 422


async def test_starting_a_campaign_whose_list_is_gone_is_refused(gw):
    import asyncio

    import redis

    from dialer.campaigns import CampaignStore

    def make() -> str:  # written by an older version, or the list's last contact was erased since
        client = redis.Redis.from_url(gw.redis_url, decode_responses=True)
        try:
            from datetime import UTC, datetime

            return CampaignStore(client).create("acme", {"name": "old", **READY, "lists": ["gone"]}, by="x",
                                                at=datetime.now(UTC)).id
        finally:
            client.close()

    cid = await asyncio.to_thread(make)
    resp = await gw.client.post(f"/v1/campaigns/{cid}/start", headers=gw.auth("acme", "supervisor"))
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "unknown_list" and error["field"] == "lists[0]"
    got = await (await gw.client.get(f"/v1/campaigns/{cid}", headers=gw.auth("acme", "supervisor"))).json()
    assert got["status"] == "draft"


async def test_campaign_exports_cover_the_contacts_of_its_lists(gw):
    """Point 12: a list imported without --campaign, attached to a campaign: the campaign's exports hold what it
    dials (they were only a header row)."""
    import asyncio
    import csv
    import io
    from datetime import UTC, datetime

    import redis

    from dialer.facts import FactStore
    from rules.model import Attempt

    await gw.ensure_list("acme", "spring")  # +33145678901, +33145678902 and one bad row
    campaign = (await gw.create_campaign(**READY, lists=["spring"]))["id"]

    def dial() -> None:
        client = redis.Redis.from_url(gw.redis_url)
        try:
            FactStore(client).record_attempt("acme", "+33145678901", Attempt(
                at=datetime(2026, 3, 2, 9, tzinfo=UTC), campaign=campaign, outcome="no_answer", call_id="k1"))
            FactStore(client).record_attempt("acme", "+33145678902", Attempt(
                at=datetime(2026, 3, 2, 9, tzinfo=UTC), campaign="another", outcome="answered", call_id="k2"))
        finally:
            client.close()

    await asyncio.to_thread(dial)

    async def rows(kind: str) -> list[dict[str, str]]:
        resp = await gw.client.get(f"/v1/exports/{kind}", params={"campaign": campaign}, headers=gw.auth())
        assert resp.status == 200
        return list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))

    assert sorted(r["phone"] for r in await rows("contacts")) == ["'+33145678901", "'+33145678902"]
    assert [(r["phone"], r["call_id"]) for r in await rows("attempts")] == [("'+33145678901", "k1")]
    outcomes = {r["phone"]: r for r in await rows("outcomes")}
    assert outcomes["'+33145678901"]["last_outcome"] == "no_answer"
    assert outcomes["'+33145678902"]["attempts"] == "0"  # dialed by another campaign only


@pytest.mark.parametrize("text", ["STOP", "Arrêtez de m appeler", "Arrêtez de m'appeler", "ARRETEZ DE M’APPELER",
                                  "désinscription", "Desinscription svp", "ne plus m'appeler merci", "Stop appel"])
async def test_french_optout_replies_count(gw, text):
    """Point 16: French replies are opt-outs ("Arrêtez de m appeler" was refused as not_an_optout)."""
    resp = await gw.client.post("/v1/optouts", headers=gw.auth("acme", "uploader"),
                                json={"phone": "+33145678901", "source": "sms", "keyword": text})
    assert resp.status == 201, await resp.text()


async def test_optout_keywords_are_configurable_per_tenant(gw):
    admin = gw.auth("acme", "admin")
    got = await (await gw.client.get("/v1/optout-keywords", headers=admin)).json()
    assert set(got["languages"]) == {"en", "fr"} and "DÉSINSCRIPTION" in got["keywords"]
    resp = await gw.client.put("/v1/optout-keywords", json={"languages": ["en"], "extra": ["basta", "fini les appels"]},
                               headers=admin)
    assert resp.status == 200, await resp.text()
    sms = {"phone": "+33145678901", "source": "sms"}
    post = gw.client.post
    assert (await post("/v1/optouts", json={**sms, "keyword": "Fini les appels !"}, headers=admin)).status == 201
    assert (await post("/v1/optouts", json={**sms, "keyword": "désinscription"}, headers=admin)).status == 422
    assert (await post("/v1/optouts", json={**sms, "keyword": "désinscription"}, headers=gw.auth("globex", "admin"))
            ).status == 201  # another tenant keeps the defaults
    resp = await gw.client.put("/v1/optout-keywords", json={"languages": [], "extra": []}, headers=admin)
    assert resp.status == 422
    resp = await gw.client.put("/v1/optout-keywords", json={"languages": ["en"]}, headers=gw.auth("acme", "supervisor"))
    assert resp.status == 403


async def test_why_not_called_gives_queue_times_in_iso_8601(gw):
    """Point 16: `queue.final.at` was an epoch float; every time in an API body is ISO 8601."""
    import asyncio
    import time

    import redis

    from dialer.runtime.queues import ContactQueue

    await gw.ensure_list("acme", "spring")
    campaign = (await gw.create_campaign(**READY, lists=["spring"]))["id"]
    from dialer.record import current
    from dialer.record.contacts import member_ids

    # the list's contacts are in the record (docs/record.md), not Redis
    contact = next(member_ids(current.contact_record(), "acme", list_id="spring"))
    at = time.time()

    def finalize() -> None:
        client = redis.Redis.from_url(gw.redis_url)
        try:
            assert ContactQueue(client, "acme", campaign).finalize_unqueued(contact, "no_valid_number", "test", at)
        finally:
            client.close()

    await asyncio.to_thread(finalize)
    resp = await gw.client.get(f"/v1/campaigns/{campaign}/contacts/{contact}/why", headers=gw.auth())
    assert resp.status == 200, await resp.text()
    final = (await resp.json())["queue"]["final"]
    assert isinstance(final["at"], str) and final["at"].endswith("Z") and final["at"][:4].isdigit(), final
