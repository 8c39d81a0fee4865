"""Webhook delivery end to end: the gateway records facts, the worker delivers to a real aiohttp receiver on
loopback, over a real redis-server. Time is a clock the test moves (backoffs), never sleeps."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from dialer.webhooks.addresses import AddressPolicy
from dialer.webhooks.backoff import RetryPolicy
from dialer.webhooks.delivery import DeliveryWorker
from dialer.webhooks.sealing import SecretBox
from dialer.webhooks.signing import VerificationError, verify
from tests.gateway_support import SECRET_KEY, start_gateway, stop_gateway
from tests.webhook_support import Clock, Receiver

OPEN_ENV = {"DIALER_WEBHOOKS_ALLOW_HTTP": "true", "DIALER_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES": "true"}
LOOPBACK_OK = AddressPolicy(allow_http=True, allow_private=True)
ANN, BOB = "+33145678901", "+33145678902"


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url, **OPEN_ENV)
    yield gateway
    await stop_gateway(gateway)


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def make_worker(redis_url, clock):
    made = []

    async def make(policy: AddressPolicy = LOOPBACK_OK, retry: RetryPolicy | None = None) -> DeliveryWorker:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        worker = DeliveryWorker(client, SecretBox(SECRET_KEY), policy, retry or RetryPolicy(timeout=2.0),
                                clock=clock, jitter=lambda: 0.5)
        made.append((worker, client))
        return worker

    yield make
    for worker, client in made:
        await worker.close()
        await client.aclose()


async def register(gw, url: str, events=("optout.recorded", "consent.withdrawn", "call.outcome")) -> dict:
    resp = await gw.client.post("/v1/webhooks", json={"url": url, "events": list(events)}, headers=gw.auth())
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def optout(gw, phone: str = ANN, source: str = "crm", tenant: str = "acme") -> None:
    resp = await gw.client.post("/v1/optouts", json={"phone": phone, "source": source},
                                headers=gw.auth(tenant, "supervisor"))
    assert resp.status == 201, await resp.text()


async def withdraw(gw, phone: str = ANN, source: str = "web") -> None:
    resp = await gw.client.post("/v1/consents", json={"phone": phone, "source": source, "action": "withdraw"},
                                headers=gw.auth("acme", "supervisor"))
    assert resp.status == 201, await resp.text()


async def drain(worker: DeliveryWorker, clock: Clock, rounds: int = 10, step: float = 0.0) -> None:
    for _ in range(rounds):
        await worker.run_once()
        clock.advance(step)


async def test_optout_is_delivered_signed_and_verifiable(gw, receiver, make_worker, clock):
    endpoint = await register(gw, receiver.url)
    assert endpoint["secret"].startswith("whsec_") and "secret" not in str(endpoint["secrets"])
    await optout(gw)
    worker = await make_worker()
    await worker.run_once()
    [got] = receiver.received
    assert verify([endpoint["secret"]], got.headers, got.body, now=int(clock.now)) == got.event["id"]
    assert got.headers["webhook-id"].startswith("evt_") and got.event["type"] == "optout.recorded"
    assert got.event["data"]["phone"] == ANN and got.event["data"]["source"] == "crm"
    with pytest.raises(VerificationError):  # replayed outside the window
        verify([endpoint["secret"]], got.headers, got.body, now=int(clock.now) + 600)
    await drain(worker, clock, 3, 100)
    assert len(receiver.received) == 1  # delivered once, not again


async def test_other_tenants_and_unsubscribed_events_are_not_sent(gw, receiver, make_worker, clock):
    await register(gw, receiver.url, events=["consent.withdrawn"])
    await optout(gw)  # acme, but not subscribed
    await optout(gw, tenant="globex")  # globex has no endpoint
    await withdraw(gw)
    await drain(await make_worker(), clock, 2)
    assert [e["type"] for e in receiver.events()] == ["consent.withdrawn"]


async def test_retried_after_500s_and_a_timeout_with_the_same_id(gw, receiver, make_worker, clock):
    endpoint = await register(gw, receiver.url)
    receiver.plan = [500, 503, ("sleep", 3.0), 200]
    await optout(gw)
    worker = await make_worker(retry=RetryPolicy(timeout=1.0))
    for _ in range(6):
        await worker.run_once()
        clock.advance(3600)
    assert len(receiver.received) == 4
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 1  # the idempotency id survives retries
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4  # each attempt signed at its own time
    last = receiver.received[-1]
    verify([endpoint["secret"]], last.headers, last.body, now=stamps[-1])
    record = await gw.redis.hgetall(f"t:{{acme}}:wh:d:{endpoint['id']}:{last.headers['webhook-id']}")
    assert record["state"] == "delivered" and record["attempts"] == "4"


async def test_backoff_waits_before_trying_again(gw, receiver, make_worker, clock):
    await register(gw, receiver.url)
    receiver.plan = [500]
    await optout(gw)
    worker = await make_worker()
    await worker.run_once()
    await worker.run_once()  # not due yet: first retry after 3.75 s (5 s * (0.5 + 0.5 * 0.5))
    assert len(receiver.received) == 1
    clock.advance(4)
    await worker.run_once()
    assert len(receiver.received) == 2


async def test_in_order_per_contact_while_other_contacts_flow(gw, receiver, make_worker, clock):
    await register(gw, receiver.url)
    receiver.plan = [500]  # Ann's first event fails once
    await optout(gw, ANN, source="first")
    await withdraw(gw, ANN, source="second")
    await optout(gw, BOB, source="bob")
    await withdraw(gw, ANN, source="third")
    worker = await make_worker()
    await worker.run_once()
    # Ann's head failed, so her later events wait; Bob's went through.
    assert [(e["data"]["phone"], e["data"]["source"]) for e in receiver.events()] == [(ANN, "first"), (BOB, "bob")]
    await drain(worker, clock, 5, 60)
    ann = [e["data"]["source"] for e in receiver.events() if e["data"]["phone"] == ANN]
    assert ann == ["first", "first", "second", "third"]


async def test_receiver_down_then_back_loses_nothing(gw, receiver, make_worker, clock):
    endpoint = await register(gw, receiver.url)
    await receiver.stop()
    for i in range(5):
        await optout(gw, f"+3314567890{i}", source=f"s{i}")
    worker = await make_worker()
    await drain(worker, clock, 8, 1800)  # 4 hours of refused connections
    records = await gw.redis.keys(f"t:{{acme}}:wh:d:{endpoint['id']}:*")
    record_states = {await gw.redis.hget(k, "state") for k in records}
    assert record_states == {"pending"}
    await receiver.start()  # same port
    await drain(worker, clock, 4, 3600)
    assert sorted(e["data"]["source"] for e in receiver.events()) == [f"s{i}" for i in range(5)]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 5


async def test_a_worker_that_dies_mid_delivery_is_retried_by_another(gw, receiver, make_worker, clock):
    await register(gw, receiver.url)
    await optout(gw)
    receiver.plan = [("sleep", 5.0)]
    first = await make_worker()
    task = asyncio.create_task(first.run_once())
    while not receiver.received:
        await asyncio.sleep(0.05)
    task.cancel()  # the process died with the delivery in flight
    with pytest.raises(asyncio.CancelledError):
        await task
    second = await make_worker()
    await second.run_once()
    assert len(receiver.received) == 1  # leased: not taken twice at once
    clock.advance(61)
    await second.run_once()
    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]


async def test_registration_refuses_private_and_plain_http_by_default(redis_url):
    gateway = await start_gateway(redis_url)
    try:
        for url, why in [("http://hooks.example.com/x", "https"), ("https://127.0.0.1/x", "loopback"),
                         ("https://169.254.169.254/x", "link-local"), ("https://192.168.0.10/x", "private")]:
            resp = await gateway.client.post("/v1/webhooks", json={"url": url, "events": ["optout.recorded"]},
                                             headers=gateway.auth())
            body = await resp.json()
            assert resp.status == 422 and body["error"]["field"] == "url" and why in body["error"]["message"]
        resp = await gateway.client.post("/v1/webhooks", json={"url": "https://hooks.example.com/x",
                                                               "events": ["optout.recorded"]}, headers=gateway.auth())
        assert resp.status == 201
    finally:
        await stop_gateway(gateway)


async def test_delivery_refuses_a_name_resolving_to_loopback(gw, receiver, make_worker, clock):
    # Registered while the operator allowed it; the policy is then closed: every resolved address is checked.
    endpoint = await register(gw, f"http://localhost:{receiver.port}/hook")
    await optout(gw)
    worker = await make_worker(policy=AddressPolicy(allow_http=True, allow_private=False))
    await drain(worker, clock, 3, 3600)
    assert receiver.received == []
    key = (await gw.redis.keys(f"t:{{acme}}:wh:d:{endpoint['id']}:*"))[0]
    assert "refused" in await gw.redis.hget(key, "last_error")
    literal = await register(gw, receiver.url)  # an address literal: refused before connecting
    await optout(gw, BOB)
    await drain(worker, clock, 2, 3600)
    assert receiver.received == []
    key = (await gw.redis.keys(f"t:{{acme}}:wh:d:{literal['id']}:*"))[0]
    assert "loopback" in await gw.redis.hget(key, "last_error")


async def test_redirects_are_not_followed(gw, receiver, make_worker, clock):
    endpoint = await register(gw, receiver.url)
    receiver.plan = [("redirect", f"http://127.0.0.1:{receiver.port}/elsewhere")]
    await optout(gw)
    worker = await make_worker()
    await worker.run_once()
    assert len(receiver.received) == 1  # /elsewhere was not requested
    key = (await gw.redis.keys(f"t:{{acme}}:wh:d:{endpoint['id']}:*"))[0]
    assert await gw.redis.hget(key, "last_error") == "redirect not followed"


async def test_rotation_signs_with_both_secrets_then_only_the_new(gw, receiver, make_worker, clock):
    endpoint = await register(gw, receiver.url)
    old = endpoint["secret"]
    resp = await gw.client.post(f"/v1/webhooks/{endpoint['id']}/rotate", json={"overlap_hours": 1},
                                headers=gw.auth())
    assert resp.status == 200
    rotated = await resp.json()
    new = rotated["secret"]
    assert new != old and len(rotated["secrets"]) == 2 and rotated["secrets"][1]["expires_at"]
    worker = await make_worker()
    await optout(gw)
    await worker.run_once()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split()) == 2
    verify([old], got.headers, got.body, now=int(clock.now))
    verify([new], got.headers, got.body, now=int(clock.now))
    clock.advance(3601)  # the overlap is over
    await optout(gw, BOB)
    await worker.run_once()
    got = receiver.received[-1]
    verify([new], got.headers, got.body, now=int(clock.now))
    with pytest.raises(VerificationError):
        verify([old], got.headers, got.body, now=int(clock.now))


async def test_dead_letter_after_the_retry_period_and_manual_redelivery(gw, receiver, make_worker, clock):
    endpoint = await register(gw, receiver.url)
    receiver.plan = [500] * 50
    await optout(gw, ANN, source="doomed")
    worker = await make_worker(retry=RetryPolicy(retry_for=600, timeout=2.0))
    await drain(worker, clock, 12, 120)
    resp = await gw.client.get("/v1/webhook-dead-letters", headers=gw.auth("acme", "auditor"))
    [dead] = (await resp.json())["items"]
    assert dead["endpoint"] == endpoint["id"] and dead["last_status"] == "500"
    other = await gw.client.get("/v1/webhook-dead-letters", headers=gw.auth("globex", "admin"))
    assert (await other.json())["items"] == []
    # The contact's queue moves on after a dead letter: a later event is delivered.
    receiver.plan = []
    await optout(gw, ANN, source="later")
    await drain(worker, clock, 2, 1)
    assert receiver.events()[-1]["data"]["source"] == "later"
    path = f"/v1/webhook-dead-letters/{endpoint['id']}/{dead['event_id']}/redeliver"
    assert (await gw.client.post(path, headers=gw.auth("globex", "admin"))).status == 404
    resp = await gw.client.post(path, headers=gw.auth())
    assert resp.status == 202
    assert (await gw.client.post(path, headers=gw.auth())).status == 404  # not dead any more
    await drain(worker, clock, 2, 1)
    assert receiver.events()[-1]["data"]["source"] == "doomed"
    assert receiver.received[-1].headers["webhook-id"] == dead["event_id"]
    resp = await gw.client.get("/v1/webhook-dead-letters", headers=gw.auth())
    assert (await resp.json())["items"] == []


async def test_deleted_endpoint_gets_nothing_more(gw, receiver, make_worker, clock):
    endpoint = await register(gw, receiver.url)
    await optout(gw)
    resp = await gw.client.delete(f"/v1/webhooks/{endpoint['id']}", headers=gw.auth())
    assert resp.status == 204
    await optout(gw, BOB)
    await drain(await make_worker(), clock, 2)
    assert receiver.received == []
    assert await gw.redis.zcard("t:{acme}:wh:due") == 0


async def test_call_outcome_campaign_and_import_events(gw, receiver, make_worker, clock, redis_url):
    import redis as redis_lib

    from dialer.facts import FactStore, person_key
    from dialer.gate import attempt_record
    from tests.gateway_support import imported_list

    await register(gw, receiver.url, events=["call.outcome", "campaign.state_changed", "import.finished"])
    await gw.redis.hset(person_key("acme", ANN, "att"), "call-1", attempt_record(clock_now(), "c1", "call-1"))
    client = redis_lib.Redis.from_url(redis_url)
    store = FactStore(client)
    await asyncio.to_thread(store.record_outcome, "acme", ANN, "call-1", "answered")
    await asyncio.to_thread(store.record_outcome, "acme", ANN, "call-1", "busy")  # weaker: no new event
    campaign = await gw.ready_campaign()
    resp = await gw.client.post(f"/v1/campaigns/{campaign['id']}/start", headers=gw.auth("acme", "supervisor"))
    assert resp.status == 200, await resp.text()
    await asyncio.to_thread(imported_list, redis_url, "acme", "l1")
    client.close()
    await drain(await make_worker(), clock, 2)
    kinds = [e["type"] for e in receiver.events()]
    assert kinds.count("call.outcome") == 1 and "campaign.state_changed" in kinds and "import.finished" in kinds
    outcome = next(e for e in receiver.events() if e["type"] == "call.outcome")
    assert outcome["data"]["outcome"] == "answered" and outcome["data"]["call_id"] == "call-1"


def clock_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_dialer_webhooks_command_delivers_and_stops_on_sigterm(gw, receiver, redis_url):
    import os
    import signal
    import subprocess
    import sys

    endpoint = await register(gw, receiver.url)
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY, **OPEN_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "dialer", "webhooks"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        await optout(gw)
        for _ in range(900):  # a loaded CI machine may take long to import
            if receiver.received or proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        [got] = receiver.received
        assert verify([endpoint["secret"]], got.headers, got.body, now=int(Clock().now)) == got.event["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


async def test_endpoint_update_moves_pending_deliveries_and_changes_subscriptions(gw, receiver, make_worker, clock):
    endpoint = await register(gw, "http://127.0.0.1:9/nowhere", events=["optout.recorded"])
    worker = await make_worker()
    await optout(gw)
    await worker.run_once()  # fails: nothing listens on port 9
    path = f"/v1/webhooks/{endpoint['id']}"
    resp = await gw.client.patch(path, json={"url": "https://10.0.0.1/x"}, headers=gw.auth())
    assert resp.status == 200  # the operator allows private addresses in this gateway
    resp = await gw.client.patch(path, json={"url": receiver.url, "events": ["consent.withdrawn", "optout.recorded"]},
                                 headers=gw.auth())
    changed = await resp.json()
    assert resp.status == 200 and changed["url"] == receiver.url and len(changed["secrets"]) == 1
    assert (await gw.client.patch(path, json={"events": ["nope"]}, headers=gw.auth())).status == 422
    assert (await gw.client.patch(path, json={"url": receiver.url}, headers=gw.auth("globex"))).status == 404
    await withdraw(gw)
    await drain(worker, clock, 3, 3600)
    assert [e["type"] for e in receiver.events()] == ["optout.recorded", "consent.withdrawn"]
    first = receiver.received[0]
    verify([endpoint["secret"]], first.headers, first.body, now=int(first.headers["webhook-timestamp"]))


async def test_erasure_drops_undelivered_webhooks_about_the_person(gw, receiver, make_worker, clock):
    await register(gw, receiver.url)
    receiver.plan = [500]
    await optout(gw, ANN, source="ann")
    await withdraw(gw, ANN)
    await optout(gw, BOB, source="bob")
    worker = await make_worker()
    await worker.run_once()  # Ann's first fails (pending, her second waits); Bob's is delivered
    resp = await gw.client.post("/v1/subjects/erase", json={"phone": ANN}, headers=gw.auth())
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["removed"]["webhook_deliveries"] == 2
    await drain(worker, clock, 4, 3600)
    assert [e["data"]["source"] for e in receiver.events()] == ["ann", "bob"]  # nothing about Ann after
    leftovers = [k for k in await gw.redis.keys("t:{acme}:wh:*") if ANN in k]
    assert leftovers == [] and not [m for m in await gw.redis.zrange("t:{acme}:wh:due", 0, -1) if ANN in m]
