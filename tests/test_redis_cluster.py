"""The dialer on a real Redis Cluster (3 masters, a replica each, on loopback: tests/cluster_support.py): a list
import, a campaign end to end against the sandbox PBX, and the gate's concurrency tests, every script and MULTI
watched on every master for keys outside one hash slot (tests/slot_audit.py). RQ is not involved: imports run
inline here, and its queues belong on a plain Redis anyway (redis.jobs_url, docs/redis.md).

The failover (a master killed mid-campaign) is tests/test_redis_failover.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

import tests.test_gate as gate_tests
import tests.test_gateway_live as live_tests
import tests.test_gateway_routes as route_tests
from dialer import redisconn
from dialer.audit import AuditLog
from dialer.campaigns import CampaignStore
from dialer.config import load_config
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.contacts.store import Keys, list_member_ids
from dialer.facts import FactStore
from dialer.runtime.engine import offset_clock, run_engine
from dialer.runtime.queues import ContactQueue
from tests.cluster_support import LocalCluster
from tests.gateway_support import start_gateway, stop_gateway
from tests.runtime_support import AT, BLOCTEL, SECRET_KEY, OriginateObserver, eventually, numbers, setup_campaign
from tests.slot_audit import SlotAudit, known_scripts
from tests.test_runtime_engine import EXPECTED, RETRIES, SETTINGS, queue_phone, sandbox, start_pbx

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as started:
        yield started


@pytest.fixture
def cluster_client(cluster: LocalCluster) -> Iterator[redisconn.redis.Redis]:
    cluster.flush()
    client = redisconn.connect(cluster.url)
    yield client
    client.close()


@contextlib.contextmanager
def audited(cluster: LocalCluster) -> Iterator[list[SlotAudit]]:
    """MONITOR every master while the block runs; fails if a script or MULTI used keys of two slots."""
    masters = [n for n in cluster.alive() if cluster.role(n) == "master"]
    with contextlib.ExitStack() as stack:
        audits = [stack.enter_context(SlotAudit("127.0.0.1", n.port)) for n in masters]
        yield audits
    names = known_scripts()
    problems = [p for a in audits for p in a.problems(names)]
    assert problems == [], problems
    assert sum(len(a.runs) for a in audits) > 0  # the audit saw the scripts (it is not blind)


def cluster_config(cluster: LocalCluster, jobs_url: str):
    return load_config(env={"DIALER_REDIS_URL": cluster.url, "DIALER_REDIS_JOBS_URL": jobs_url,
                            "DIALER_SECRET_KEY": SECRET_KEY})


def test_the_cluster_url_makes_a_cluster_client(cluster: LocalCluster, cluster_client) -> None:
    assert redisconn.is_cluster(cluster_client)
    assert len(cluster_client.get_primaries()) == 3
    assert sorted(cluster.role(n) for n in cluster.nodes) == ["master"] * 3 + ["slave"] * 3
    config = cluster_config(cluster, "redis://127.0.0.1:1/0")
    assert config.redis_url == cluster.url and config.jobs_url == "redis://127.0.0.1:1/0"


def test_a_list_import_on_the_cluster(cluster: LocalCluster, cluster_client, tmp_path) -> None:
    csv = tmp_path / "leads.csv"
    rows = [*numbers(40), numbers(40)[3], "not a number"]  # one duplicate, one bad row
    csv.write_text("phone,first_name,postal_code\n" + "".join(f"{p},Ann,75011\n" for p in rows))
    with audited(cluster):
        ticket = create_import(cluster_client, "acme", csv, "leads", region="FR")
        status = run_import_inline(cluster_client, "acme", ticket.import_id)
    assert status["status"] == "committed", status
    members = list(list_member_ids(cluster_client, "acme", "leads"))
    assert len(members) == 40
    summary = status["summary"]
    assert summary["contacts_added"] == 40, summary
    # the whole tenant is one slot: on one master
    keys = Keys("acme")
    assert {cluster_client.keyslot(k) for k in (keys.list("leads"), Keys("acme", ticket.import_id).status,
                                                keys.lists)} \
        == {cluster_client.keyslot("t:{acme}:")}


async def test_a_campaign_runs_end_to_end_on_the_cluster(cluster: LocalCluster, cluster_client, redis_url,
                                                        tmp_path) -> None:
    phones = [*numbers(20), BLOCTEL[0]]
    campaign = setup_campaign(cluster_client, tmp_path, phones, retry_rules=RETRIES, max_attempts=2,
                              recording=True)
    pbx = await start_pbx()
    stop = asyncio.Event()
    store = CampaignStore(cluster_client)
    try:
        with audited(cluster):
            async with OriginateObserver(pbx.port) as observer:
                task = asyncio.create_task(run_engine(
                    cluster_config(cluster, redis_url), stop_event=stop, clock=offset_clock(AT, 60.0),
                    servers=[sandbox(pbx)], settings=SETTINGS, process_id="p1"))
                try:
                    await eventually(lambda: task.done() or store.get("acme", campaign).status == "completed",
                                     timeout=120)
                finally:
                    stop.set()
                    await task
                await asyncio.sleep(0.3)
    finally:
        await pbx.stop()
    queue = ContactQueue(cluster_client, "acme", campaign)
    finals = queue.final_states()
    assert len(finals) == len(phones)
    counts = queue.counts()
    assert counts["inflight"] == 0 and counts["ready"] == 0 and counts["waiting"] == 0
    phone_of = {cid: queue_phone(queue, cid) for cid in finals}
    by_phone = {phone_of[cid]: f for cid, f in finals.items()}
    assert by_phone.pop(BLOCTEL[0])["reason"] == "gate_denied" and observer.by_number[BLOCTEL[0]] == 0
    for phone, final in by_phone.items():
        reason, calls = EXPECTED.get(phone[-1], ("answered", 1))
        assert (final["reason"], final["attempts"]) == (reason, calls), (phone, final)
        assert observer.by_number[phone] == calls, phone
    assert all(n == 1 for n in observer.call_ids.values())  # no call id sent twice
    audit = AuditLog(cluster_client, SECRET_KEY)
    assert audit.verify("acme").ok
    entries = list(audit.entries("acme"))
    reserved = [e for e in entries if e.kind == "gate_decision" and e.payload["allowed"]]
    outcomes = [e for e in entries if e.kind == "call_outcome"]
    assert len(reserved) == len(outcomes) == sum(observer.by_number.values())
    # each call metered once, its increment in the trail for the record (same MULTI, one hash slot: the tenant's)
    metered = [e for e in entries if e.kind == "usage" and "call_id" in e.payload]
    assert sum(e.payload["added"].get("attempts", 0) for e in metered) == len(outcomes)
    assert {e.payload["call_id"] for e in metered} == {e.payload["call_id"] for e in outcomes}


# --- the gate's concurrency tests (tests/test_gate.py), on the cluster --------------------------------------

def test_gate_optout_between_read_and_reserve_on_the_cluster(cluster, cluster_client, tmp_path) -> None:
    with audited(cluster):
        gate_tests.test_optout_between_read_and_reserve_prevents_the_call(cluster_client, tmp_path)


def test_gate_last_slot_taken_between_read_and_reserve_on_the_cluster(cluster, cluster_client, tmp_path) -> None:
    with audited(cluster):
        gate_tests.test_last_slot_taken_between_read_and_reserve(cluster_client, tmp_path)


def test_gate_endless_changes_end_in_contention_on_the_cluster(cluster, cluster_client, tmp_path) -> None:
    with audited(cluster):
        gate_tests.test_endless_changes_end_in_a_contention_denial(cluster_client, tmp_path)


def test_gate_soak_under_concurrency_on_the_cluster(cluster, cluster_client, tmp_path) -> None:
    """Four processes reserving and one opting people out, all on the cluster: caps, cool-offs and opt-outs
    hold, and the audit chain verifies."""
    with audited(cluster):
        gate_tests.test_soak_caps_cooloffs_optouts_hold_under_concurrency(cluster.url, cluster_client, tmp_path)


# --- the gateway on the cluster (its asyncio clients, MULTI blocks with webhook events, pub/sub streams) ------

@pytest.fixture
async def cluster_gw(cluster: LocalCluster, cluster_client, redis_url: str):
    """(after cluster_client, which flushes the cluster)"""
    gateway = await start_gateway(cluster.url, DIALER_REDIS_JOBS_URL=redis_url)
    yield gateway
    await stop_gateway(gateway)


async def test_gateway_routes_on_the_cluster(cluster, cluster_gw, cluster_client) -> None:
    """Tenants, users, tokens (indexed in the tenant's slot, records global), campaigns, concurrent opt-outs
    (each written with its audit entry and webhook event in one MULTI), a token revoked."""
    with audited(cluster):
        await route_tests.test_optout_is_audited_without_the_full_number(cluster_gw)
        await route_tests.test_concurrent_optouts_are_all_kept(cluster_gw, FactStore(cluster_client))
        await route_tests.test_listings_never_show_another_tenants_items(cluster_gw)
        tokens = await (await cluster_gw.client.get("/v1/tokens", headers=cluster_gw.auth())).json()
        mine = next(t for t in tokens["items"] if t["user"] == "auditor-user")
        resp = await cluster_gw.client.delete(f"/v1/tokens/{mine['id']}", headers=cluster_gw.auth())
        assert resp.status in (200, 204), await resp.text()
        resp = await cluster_gw.client.get("/v1/campaigns", headers=cluster_gw.auth("acme", "auditor"))
        assert resp.status == 401


async def test_gateway_live_stream_on_the_cluster(cluster, cluster_gw) -> None:
    """The campaign's Server-Sent Events follow the engine's writes (pub/sub on the cluster)."""
    cid = (await cluster_gw.ready_campaign())["id"]
    await cluster_gw.client.post(f"/v1/campaigns/{cid}/start", headers=cluster_gw.auth("acme", "supervisor"))
    resp = await cluster_gw.client.get(f"/v1/campaigns/{cid}/events", headers=cluster_gw.auth("acme", "supervisor"))
    assert resp.status == 200
    assert (await live_tests.read_event(resp))["status"] == "running"
    for n in (1, 7):
        await live_tests.engine_writes(cluster_gw.redis, "acme", cid, dialing=n)
        assert (await live_tests.read_event(resp, timeout=5))["gauges"]["dialing"] == n
    resp.close()


# --- RQ beside the cluster: queues on the plain Redis of redis.jobs_url, the data on the cluster -------------

def test_rq_jobs_queue_on_the_plain_redis_and_write_to_the_cluster(cluster, cluster_client, redis_url, redis_client,
                                                                  tmp_path, monkeypatch) -> None:
    from dialer import jobs
    from dialer.contacts import jobs as contact_jobs
    from dialer.contacts.jobs import enqueue_import
    from dialer.contacts.store import import_status

    monkeypatch.setattr(contact_jobs, "CHUNK_BYTES", 2_000)  # a few chunks: coordinator and helpers
    csv = tmp_path / "leads.csv"
    csv.write_text("phone,postal_code\n" + "".join(f"+3314567{n:04d},75011\n" for n in range(300)))
    jobs.configure(cluster.url, redis_url)
    try:
        with pytest.raises(RuntimeError, match="jobs_url is required"):
            jobs.configure(cluster.url, "")
            jobs.get_queue(cluster_client, jobs.IMPORTS)
        jobs.configure(cluster.url, redis_url)
        ticket = enqueue_import(cluster_client, "acme", csv, "leads", region="FR", helpers=2)
        queue = jobs.get_queue(cluster_client, jobs.IMPORTS)
        assert queue.connection is not cluster_client and queue.count == 3  # on the plain Redis
        with audited(cluster):
            assert jobs.InlineWorker([queue], connection=redis_client).work(burst=True)
    finally:
        jobs.configure("", "")
    status = import_status(cluster_client, "acme", ticket.import_id)
    assert status["status"] == "committed" and status["summary"]["contacts_added"] == 300, status
    assert not [k for k in cluster_client.scan_iter(match="rq:*")]  # nothing of RQ's on the cluster


async def test_the_gateway_pools_on_the_cluster(cluster, redis_url) -> None:
    """`dialer serve`'s request and live-stream clients (gateway/pool.py) are cluster clients, sized per node."""
    from gateway.pool import live_client, request_client

    config = cluster_config(cluster, redis_url)
    for client in (request_client(config), live_client(config)):
        assert redisconn.is_cluster(client) and await client.ping()
        await client.set("t:{acme}:pool-check", "1")
        assert await client.get("t:{acme}:pool-check") == "1"  # decode_responses, as the handlers expect
        await client.aclose()


def test_a_node_whose_port_was_taken_starts_on_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another test's server can take a port between the check and the start: the node starts on fresh ports."""
    import socket

    from tests import cluster_support

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    real = cluster_support.cluster_ports
    offered = iter([[busy.getsockname()[1]]])
    monkeypatch.setattr(cluster_support, "cluster_ports",
                        lambda count, taken=(): next(offered, None) or real(count, taken))
    cluster = cluster_support.LocalCluster(masters=1, replicas=0)
    try:
        node = cluster._start_node(("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
        assert node.port != busy.getsockname()[1]
        node.cleanup()
    finally:
        busy.close()
