"""The campaign runtime end to end: real redis-server, the real gate and packs, the sandbox PBX over TCP."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from datetime import UTC, timedelta

import dialer.runtime.figures as figures_module
from dialer.audit import AuditLog
from dialer.campaigns import CampaignStore
from dialer.config import AsteriskServer
from dialer.facts import FactStore
from dialer.gate import Request
from dialer.livestats import denials_key, dispositions_key, stats_key
from dialer.runtime.agents import WrapupTable
from dialer.runtime.engine import RuntimeSettings, build_gate, offset_clock, run_engine
from dialer.runtime.loader import load_campaign
from dialer.runtime.queues import ContactQueue, QueuedContact
from dialer.runtime.report import campaign_summary
from dialer.sandbox.server import SandboxServer
from dialer.sandbox.settings import SandboxSettings
from rules.model import Contact
from tests.runtime_support import (
    AT,
    BLOCTEL,
    SECRET_KEY,
    OriginateObserver,
    engine_config,
    eventually,
    numbers,
    setup_campaign,
)

SETTINGS = RuntimeSettings(dial_template="Local/{number}@sim-callee", lease_seconds=5.0, drain_seconds=10.0,
                           agent_poll_seconds=0.2, stats_seconds=0.2, campaigns_seconds=0.2,
                           wrapup=WrapupTable(0.2))  # the sandbox agents' 2 s wrap-up at a time scale up to 0.1
RETRIES = {"busy": 1, "no_answer": 1, "congestion": 1, "machine": 1, "abandoned": 1}
# The sandbox's last-digit callees: 2 busy, 3 no answer, 4 congestion, 7 opts out (during the recording notice);
# others answer (8 is a machine, but without AMD the campaign cannot tell: answered).
EXPECTED = {"2": ("max_attempts", 2), "3": ("max_attempts", 2), "4": ("max_attempts", 2), "7": ("opted_out", 1)}


async def start_pbx(**overrides) -> SandboxServer:
    settings = SandboxSettings(port=0, time_scale=0.02, seed=11, queues={"dialer": 3}).with_overrides(**overrides)
    server = SandboxServer(settings)
    await server.start()
    return server


def sandbox(server: SandboxServer) -> AsteriskServer:
    return AsteriskServer("sbx", "127.0.0.1", server.port, "dialer", "dialer-secret", "md5")


async def run_until_completed(redis_url, client, tenant, campaign, pbx, clock, settings=SETTINGS, timeout=90.0):
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(engine_config(redis_url), stop_event=stop, clock=clock,
                                          servers=[sandbox(pbx)], settings=settings, process_id="p1"))
    store = CampaignStore(client)
    try:
        await eventually(lambda: task.done() or store.get(tenant, campaign).status == "completed", timeout=timeout)
    finally:
        stop.set()
        engine = await task
    return engine


async def test_a_small_campaign_runs_to_completion(redis_url, redis_client, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="dialer")
    monkeypatch.setattr(figures_module, "PROGRESS_EVERY", 0.5)  # the progress line (every minute in production)
    phones = [*numbers(30), BLOCTEL[0]]
    campaign = setup_campaign(redis_client, tmp_path, phones, retry_rules=RETRIES, max_attempts=2,
                              recording=True)
    pbx = await start_pbx()
    try:
        async with OriginateObserver(pbx.port) as observer:
            await run_until_completed(redis_url, redis_client, "acme", campaign, pbx, offset_clock(AT, 60.0))
            await asyncio.sleep(0.3)
    finally:
        await pbx.stop()
    queue = ContactQueue(redis_client, "acme", campaign)
    finals = queue.final_states()
    assert len(finals) == len(phones)  # every contact left the queue with a reason
    assert queue.counts()["inflight"] == 0 and queue.counts()["ready"] == 0 and queue.counts()["waiting"] == 0
    by_phone = {queue_phone(queue, cid): f for cid, f in finals.items()}
    blocked = by_phone.pop(BLOCTEL[0])
    assert blocked["reason"] == "gate_denied" and "NATIONAL_REGISTRY" in blocked["detail"]
    assert observer.by_number[BLOCTEL[0]] == 0
    for phone, final in by_phone.items():
        reason, calls = EXPECTED.get(phone[-1], ("answered", 1))
        assert (final["reason"], final["attempts"]) == (reason, calls), (phone, final)
        assert observer.by_number[phone] == calls, phone  # originated exactly as often as the retry rules allow
    assert sum(observer.by_number.values()) == sum(f["attempts"] for f in by_phone.values())
    assert all(n == 1 for n in observer.call_ids.values())  # no call id sent twice
    optout = FactStore(redis_client).optout("acme", numbers(30)[7])
    assert optout is not None and optout.source == "keypress"
    summary = campaign_summary(redis_client, "acme", campaign, AT)
    assert summary["queue"]["final"] == len(phones) and summary["attempts"] == sum(observer.by_number.values())
    # 30 numbers ending 0-9 three times: 2, 3, 4 -> max_attempts (9), 7 -> opted_out (3), others answered (18)
    assert summary["final_reasons"] == {"answered": 18, "gate_denied": 1, "max_attempts": 9, "opted_out": 3}
    answers = summary["abandons"]["answers_24h"]
    assert answers == 18 + 3 and summary["abandons"]["abandons_24h"] == 0  # live answers incl. opt-outs
    history = CampaignStore(redis_client).history("acme", campaign)
    assert history[0]["action"] == "complete" and history[0]["by"] == "engine"
    dispositions = {k.decode(): int(v) for k, v in redis_client.hgetall(dispositions_key("acme", campaign)).items()}
    assert sum(dispositions.values()) == summary["attempts"] and dispositions["opted_out"] == 3
    assert redis_client.hget(denials_key("acme", campaign), "NATIONAL_REGISTRY") == b"1"
    gauges = redis_client.hgetall(stats_key("acme", campaign))
    assert b"queue_depth" in gauges and b"agents_free" in gauges  # the dashboard's live figures were written
    hours = redis_client.scan_iter(f"t:{{acme}}:campaign:{campaign}:hour:*")
    hourly = [redis_client.hget(k, "attempts") for k in hours]
    assert sum(int(v or 0) for v in hourly) == summary["attempts"]  # the attempts-per-hour chart is fed
    audit = AuditLog(redis_client, SECRET_KEY)
    assert audit.verify("acme").ok
    entries = list(audit.entries("acme"))
    reserved = [e for e in entries if e.kind == "gate_decision" and e.payload["allowed"]]
    outcomes = [e for e in entries if e.kind == "call_outcome"]
    assert len(reserved) == len(outcomes) == summary["attempts"]  # every call decided and its outcome audited
    assert {e.payload["call_id"] for e in reserved} == set(observer.call_ids)
    # What an operator reads: why contacts left (gate denials by code), progress lines, no "(None)" noise, masked.
    lines = [r.getMessage() for r in caplog.records if r.name == "dialer.runtime.engine"]
    assert any(line.endswith("complete -> completed; 31 contacts final: answered 18, max_attempts 9, opted_out 3, "
                             "gate_denied NATIONAL_REGISTRY 1") for line in lines), lines
    assert any("calls placed in" in line and "queue ready" in line for line in lines), lines
    # the campaign's contacts come from the record through its window (record.window, default 2000)
    assert any(line.endswith("window refilled from the record: 31 queued (0 final as duplicate numbers, 0 without "
                             "a valid number)") for line in lines), lines
    assert any(line.endswith("pacing: progressive") for line in lines) and not any("(None)" in x for x in lines)
    assert not [p for p in phones if p in caplog.text or p[1:] in caplog.text]


def queue_phone(queue: ContactQueue, contact_id: str) -> str:
    """A queued contact's number, from the record's contacts (the queue forgets it once the contact is final)."""
    from dialer.record.contacts import get_contact
    from dialer.record.current import contact_record

    return get_contact(contact_record(), queue.tenant, contact_id)["phone"]


def engine_task(redis_url, pbx, clock, settings=SETTINGS, process_id="p1"):
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(engine_config(redis_url), stop_event=stop, clock=clock,
                                          servers=[sandbox(pbx)], settings=settings, process_id=process_id))
    return stop, task


async def test_a_number_opted_out_while_queued_is_never_dialed(redis_url, redis_client, tmp_path):
    phones = numbers(24, base="+331456710")
    phones = [p for p in phones if p[-1] not in "2347"]  # callees that answer: each call holds the only agent
    campaign = setup_campaign(redis_client, tmp_path, phones)
    facts = FactStore(redis_client)
    clock = offset_clock(AT, 1.0)
    pbx = await start_pbx(queues={"dialer": 1})
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, clock)
            await eventually(lambda: sum(observer.by_number.values()) >= 2, timeout=30)
            allowed = {}
            for phone in phones[len(phones) // 2:]:  # still queued: one agent dials one at a time
                before = set(facts.attempts("acme", phone))
                facts.add_optout("acme", phone, at=clock(), source="api")
                allowed[phone] = len(facts.attempts("acme", phone))  # reservations that won the race, if any
                assert len(before) <= allowed[phone]
            await eventually(lambda: task.done() or CampaignStore(redis_client).get("acme", campaign).status
                             == "completed", timeout=60)
            stop.set()
            await task
    finally:
        await pbx.stop()
    queue = ContactQueue(redis_client, "acme", campaign)
    finals = {queue_phone(queue, cid): f for cid, f in queue.final_states().items()}
    never = [p for p, n in allowed.items() if n == 0]
    assert len(never) >= 3  # most were still queued (calls reserved before the opt-out may still be placed)
    for phone in never:
        assert observer.by_number[phone] == 0, phone
        assert finals[phone]["reason"] == "gate_denied" and "COMPANY_DNC" in finals[phone]["detail"]
    for phone, n in allowed.items():
        assert observer.by_number[phone] <= n


async def test_stop_lets_calls_in_flight_finish_then_completes(redis_url, redis_client, tmp_path):
    phones = [p for p in numbers(30, base="+331456720") if p[-1] not in "2347"]
    campaign = setup_campaign(redis_client, tmp_path, phones)
    store = CampaignStore(redis_client)
    pbx = await start_pbx(queues={"dialer": 2})
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, offset_clock(AT, 1.0))
            await eventually(lambda: sum(observer.by_number.values()) >= 3, timeout=30)
            store.control("acme", campaign, "pause", by="supervisor", at=AT)
            await asyncio.sleep(1.0)
            paused_at = sum(observer.by_number.values())
            await asyncio.sleep(1.0)
            assert sum(observer.by_number.values()) == paused_at  # paused: nothing new is dialed
            store.control("acme", campaign, "resume", by="supervisor", at=AT)
            await eventually(lambda: sum(observer.by_number.values()) >= paused_at + 2, timeout=30)
            store.control("acme", campaign, "stop", by="supervisor", at=AT)
            await eventually(lambda: store.get("acme", campaign).status == "completed", timeout=30)
            dialed = sum(observer.by_number.values())
            stop.set()
            await task
    finally:
        await pbx.stop()
    queue = ContactQueue(redis_client, "acme", campaign)
    counts = queue.counts()
    assert counts["inflight"] == 0 and counts["final"] == dialed  # every placed call settled before completing
    assert counts["ready"] == len(phones) - dialed  # the others stay queued, never dialed
    actions = [(h["action"], h["by"]) for h in store.history("acme", campaign)][:5]
    assert actions == [("complete", "engine"), ("stop", "supervisor"), ("resume", "supervisor"),
                       ("pause", "supervisor"), ("start", "tester")]


async def test_predictive_and_agentless_campaigns_complete(redis_url, redis_client, tmp_path):
    """The other pacing modes drive the same loop: every contact ends final, nobody is dialed beyond the rules."""
    predictive = setup_campaign(redis_client, tmp_path, numbers(20, base="+331456740"), list_id="pred",
                                pacing_mode="predictive", retry_rules={"busy": 1, "abandoned": 1}, max_attempts=2)
    ai = setup_campaign(redis_client, tmp_path, numbers(20, base="+331456750"), list_id="bots", agent_kind="ai",
                        ai_endpoint="PJSIP/ai@voicebot", voice="artificial", purpose="informational")
    store = CampaignStore(redis_client)
    pbx = await start_pbx(queues={"dialer": 3}, ai_sessions=2)
    settings = dataclasses.replace(SETTINGS, ai_sessions=2)
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, offset_clock(AT, 60.0), settings=settings)
            await eventually(lambda: task.done() or all(store.get("acme", c).status == "completed"
                                                        for c in (predictive, ai)), timeout=120)
            stop.set()
            await task
    finally:
        await pbx.stop()
    def allowed(campaign: str, phone: str) -> set[int]:
        if campaign == ai:
            return {1}  # no retry rules: one call each
        return {"2": {2}, "3": {1}, "4": {1}}.get(phone[-1], {1, 2})  # busy retried; abandoned answers may be

    for campaign, phones in ((predictive, numbers(20, base="+331456740")), (ai, numbers(20, base="+331456750"))):
        queue = ContactQueue(redis_client, "acme", campaign)
        finals = {queue_phone(queue, cid): f for cid, f in queue.final_states().items()}
        assert set(finals) == set(phones)
        for phone in phones:
            assert finals[phone]["reason"] != "gate_denied", finals[phone]
            assert observer.by_number[phone] == finals[phone]["attempts"], phone
            assert finals[phone]["attempts"] in allowed(campaign, phone), (phone, finals[phone])


async def test_processes_on_different_pbxs_share_one_campaign(redis_url, redis_client, tmp_path):
    """Each process paces its own PBX's agents; the queue's atomic claims keep them from dialing anyone twice."""
    phones = [p for p in numbers(40, base="+331456760") if p[-1] not in "2347"][:24]
    campaign = setup_campaign(redis_client, tmp_path, phones)
    pbx_a = await start_pbx(queues={"dialer": 2}, seed=1)
    pbx_b = await start_pbx(queues={"dialer": 2}, seed=2)
    try:
        async with OriginateObserver(pbx_a.port) as seen_a, OriginateObserver(pbx_b.port) as seen_b:
            stop_a, task_a = engine_task(redis_url, pbx_a, offset_clock(AT, 1.0), process_id="pa")
            stop_b, task_b = engine_task(redis_url, pbx_b, offset_clock(AT, 1.0), process_id="pb")
            await eventually(lambda: CampaignStore(redis_client).get("acme", campaign).status == "completed",
                             timeout=90)
            stop_a.set()
            stop_b.set()
            await asyncio.gather(task_a, task_b)
    finally:
        await pbx_a.stop()
        await pbx_b.stop()
    assert sum(seen_a.by_number.values()) > 0 and sum(seen_b.by_number.values()) > 0  # both dialed
    for phone in phones:
        assert seen_a.by_number[phone] + seen_b.by_number[phone] == 1, phone
    queue = ContactQueue(redis_client, "acme", campaign)
    assert {f["reason"] for f in queue.final_states().values()} <= {"answered", "not_retried"}
    assert len(queue.final_states()) == len(phones)


async def test_a_dead_process_claims_are_resolved(redis_url, redis_client, tmp_path):
    """Claims left by a process that died: one reserved at the gate but never seen by the PBX (outcome unknown:
    counted, and its person not called again for a day, the delay after an answered call, even though the campaign
    asks for 1 minute), one never reserved (back to the queue, not counted, dialed)."""
    phones = ["+33145677701", "+33145677711"]
    campaign = setup_campaign(redis_client, tmp_path, phones, retry_rules={"unknown": 1})
    queue = ContactQueue(redis_client, "acme", campaign)
    load_campaign(redis_client, queue, ["leads"], at=AT.timestamp())
    dead = queue.claim(2, owner="dead", now=AT.timestamp(), lease_until=0.0, call_ids=["dead-1", "dead-2"],
                       servers=["sbx", "sbx"])
    by_phone = {c.contact.phone: c for c in dead}
    reserved = by_phone[phones[0]]
    gate = build_gate(redis_client, engine_config(redis_url))
    stored = CampaignStore(redis_client).get("acme", campaign)
    # (the list's members come out of a Redis set in no fixed order: reserve the call id phones[0] was claimed with)
    request = Request(Contact(phones[0], "FR", "75011"), stored.gate_campaign(), reserved.call_id)
    [result] = gate.reserve_many([request], AT)
    assert result.allowed  # the dead process reserved this call; whether it sent the Originate nobody knows
    pbx = await start_pbx()
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, offset_clock(AT, 60.0))
            await eventually(lambda: len(queue.final_states()) == 1 and queue.counts()["waiting"] == 1, timeout=60)
            await asyncio.sleep(1.0)  # a minute of the campaign's clock: the 1-minute retry rule would be due
            stop.set()
            await task
    finally:
        await pbx.stop()
    finals = {queue_phone(queue, cid): f for cid, f in queue.final_states().items()}
    assert finals[phones[1]]["reason"] == "answered" and finals[phones[1]]["attempts"] == 1  # never placed before
    assert observer.by_number[phones[0]] == 0 and observer.by_number[phones[1]] == 1
    assert observer.call_ids["dead-1"] == 0 and observer.call_ids["dead-2"] == 0
    assert [a.outcome for a in FactStore(redis_client).attempts("acme", phones[0])] == ["unknown"]  # counted
    assert queue.attempts(reserved.contact.contact_id) == 1
    assert queue.next_due() >= (AT + timedelta(hours=24)).timestamp()  # cooled off like an answered call


async def test_the_campaign_schedule_applies_on_top_of_the_legal_hours(redis_url, redis_client, tmp_path):
    """At Tuesday 10:00 in Paris the law allows the call, but this campaign only calls on Tuesdays from 11:00:
    nobody is dialed, no gate decision is taken, every contact waits for 11:00 Paris time."""
    phones = numbers(5, base="+331456780")
    campaign = setup_campaign(redis_client, tmp_path, phones,
                              schedule_windows=[{"days": ["tue"], "start": "11:00", "end": "12:00"}])
    pbx = await start_pbx()
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, offset_clock(AT, 1.0))
            queue = ContactQueue(redis_client, "acme", campaign)
            await eventually(lambda: queue.counts()["waiting"] == len(phones), timeout=30)
            stop.set()
            await task
    finally:
        await pbx.stop()
    assert sum(observer.by_number.values()) == 0
    assert queue.next_due() == (AT + timedelta(hours=1)).timestamp()
    held = list(queue.held_entries())
    assert len(held) == len(phones) and {h.last["reason"] for h in held} == {"campaign_schedule"}
    assert all(h.attempts == 0 for h in held)
    assert not [e for e in AuditLog(redis_client, SECRET_KEY).entries("acme") if e.kind == "gate_decision"]


async def test_a_redis_outage_mid_campaign_loses_nobody(redis_factory, tmp_path):
    """Redis (persistent) is killed while calls are in flight and restarted 1.5 s later: the engine keeps its
    calls, stores their outcomes when Redis is back, and completes the campaign; nobody is dialed twice."""
    import redis as redislib

    (tmp_path / "redis").mkdir()
    server = redis_factory.start(persistent=True, directory=str(tmp_path / "redis"))
    client = redislib.Redis.from_url(server.url)
    phones = [p for p in numbers(30, base="+331456790") if p[-1] not in "2347"][:16]
    campaign = setup_campaign(client, tmp_path, phones)
    pbx = await start_pbx(time_scale=0.1, queues={"dialer": 4})
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(server.url, pbx, offset_clock(AT, 1.0))
            await eventually(lambda: sum(observer.by_number.values()) >= 4, timeout=30)
            server.kill()
            await asyncio.sleep(1.5)
            server.start()
            await eventually(lambda: CampaignStore(client).get("acme", campaign).status == "completed", timeout=90)
            stop.set()
            await task
    finally:
        await pbx.stop()
    queue = ContactQueue(client, "acme", campaign)
    finals = {queue_phone(queue, cid): f for cid, f in queue.final_states().items()}
    assert set(finals) == set(phones)  # nobody lost
    for phone in phones:
        assert observer.by_number[phone] <= 1, phone  # nobody dialed twice (no retry rules)
        assert finals[phone]["attempts"] == observer.by_number[phone] or finals[phone]["reason"] == "max_attempts"
    assert all(a.outcome != "reserved" for p in phones for a in FactStore(client).attempts("acme", p))
    client.close()


async def test_a_scheduled_campaign_starts_itself_and_waits_for_the_legal_hours(redis_url, redis_client, tmp_path):
    """Started at 09:50 Paris with starts_at 09:52: scheduled, then activated by the engine at 09:52. The gate denies
    every contact until 10:00 (French calling hours) with a next_allowed_at: each waits for it (no attempt counted),
    then is dialed once at or after 10:00."""
    phones = [p for p in numbers(10, base="+331456810") if p[-1] not in "2347"]
    early = AT - timedelta(minutes=10)
    campaign = setup_campaign(redis_client, tmp_path, phones, at=early,
                              starts_at=(early + timedelta(minutes=2)).isoformat())
    store = CampaignStore(redis_client)
    assert store.get("acme", campaign).status == "scheduled"
    pbx = await start_pbx()
    try:
        async with OriginateObserver(pbx.port) as observer:
            await run_until_completed(redis_url, redis_client, "acme", campaign, pbx, offset_clock(early, 60.0))
    finally:
        await pbx.stop()
    moves = [(h["action"], h["by"], h["to"]) for h in reversed(store.history("acme", campaign))]
    assert moves == [("create", "tester", "draft"), ("start", "tester", "scheduled"),
                     ("activate", "engine", "running"), ("complete", "engine", "completed")]
    queue = ContactQueue(redis_client, "acme", campaign)
    finals = {queue_phone(queue, cid): f for cid, f in queue.final_states().items()}
    assert {p: (f["reason"], f["attempts"]) for p, f in finals.items()} == {p: ("answered", 1) for p in phones}
    assert all(observer.by_number[p] == 1 for p in phones)
    decisions = [e for e in AuditLog(redis_client, SECRET_KEY).entries("acme") if e.kind == "gate_decision"]
    denied = [e for e in decisions if not e.payload["allowed"]]
    allowed = [e for e in decisions if e.payload["allowed"]]
    assert len(allowed) == len(phones) and all(e.at >= AT for e in allowed)  # nobody dialed before 10:00
    assert denied and all(e.at < AT for e in denied)  # denied before 10:00 (no dialing before the activation)
    assert all(e.at >= early + timedelta(minutes=2) for e in decisions)
    assert {e.payload["next_allowed_at"] for e in denied} == {AT.astimezone(UTC).isoformat().replace("+00:00", "Z")}


async def run_sampling(redis_url, client, campaign, pbx, settings, clock):
    """Run an Engine until the campaign completes, sampling its calls in flight; returns (engine, peak, sent times)."""
    import redis as redislib

    from dialer.runtime.engine import Engine

    config = engine_config(redis_url)
    engine_client = redislib.Redis.from_url(redis_url)
    engine = Engine(engine_client, build_gate(engine_client, config), [sandbox(pbx)], settings=settings, clock=clock,
                    process_id="sampler")
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    peak, sent, reserved = 0, set(), set()
    try:
        store = CampaignStore(client)
        deadline = asyncio.get_running_loop().time() + 90
        while store.get("acme", campaign).status != "completed" and not task.done():
            assert asyncio.get_running_loop().time() < deadline, "campaign not completed in time"
            peak = max(peak, len(engine.flights))
            sent |= {f.sent_wall for f in engine.flights.values()}
            # the calls-per-second slots taken, on Redis's clock (each stays in its server's window for 1 s)
            for key in client.scan_iter(match="dialer:trunk:*:originates"):
                reserved |= {score / 1000 for _, score in client.zrange(key, 0, -1, withscores=True)}
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task
        engine_client.close()
    engine.reserved_walls = sorted(reserved)
    return engine, peak, sorted(sent)


async def test_power_mode_dials_its_ratio_within_the_trunk_and_cps_ceilings(redis_url, redis_client, tmp_path, caplog):
    """A power campaign (pacing_ratio 3) with one agent: 3 lines for the free agent, cut to the trunk's 2 channels;
    then with 1 call per second instead: never two Originates within a second."""
    caplog.set_level(logging.INFO, logger="dialer.runtime.engine")
    no_answer = [p for p in numbers(60, base="+331456820") if p[-1] == "3"]  # ring to the timeout: lines pile up
    pbx = await start_pbx(queues={"dialer": 1}, time_scale=0.1)
    try:
        trunk = setup_campaign(redis_client, tmp_path, no_answer[:4], list_id="trunk", pacing_mode="power",
                               pacing_ratio=3, answered_before=100)
        _, peak, _ = await run_sampling(redis_url, redis_client, trunk, pbx,
                                        dataclasses.replace(SETTINGS, trunk_channels=2), offset_clock(AT, 1.0))
        assert peak == 2  # more than progressive's 1 line for 1 agent, never more than the trunk's 2 channels
        assert any(r.getMessage().endswith("pacing: power (limited by trunk)") for r in caplog.records)
        CampaignStore(redis_client).control("acme", trunk, "archive", by="tester", at=AT)

        cps = setup_campaign(redis_client, tmp_path, no_answer[4:], list_id="cps", pacing_mode="power", pacing_ratio=3,
                             answered_before=100)
        engine, peak, sent = await run_sampling(redis_url, redis_client, cps, pbx,
                                                dataclasses.replace(SETTINGS, calls_per_second=1.0),
                                                offset_clock(AT, 1.0))
        assert peak >= 2 and len(sent) == 2
        # 1 Originate per second at most, counted where the limit is kept: the slots taken in Redis, on its clock.
        # (Each Originate leaves a few ms after its slot; on a loaded machine the event loop can add more, so the
        # gap between the two sends measured here once fell under 1 s.)
        assert len(engine.reserved_walls) >= 2  # (a slot taken for a call then not placed is given back)
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(engine.reserved_walls))
    finally:
        await pbx.stop()


async def test_an_unexpected_error_before_the_originate_gives_everything_back(redis_url, redis_client, tmp_path,
                                                                             caplog):
    """A dial template the engine cannot fill (settings built in code skip the config's check) fails before any
    Originate: the trunk channel, the gate's reservation and the claim are given back, the contact waits a minute
    (a bug would repeat at once), and nothing stays in flight."""
    from dialer.runtime.trunk import trunk_keys

    caplog.set_level(logging.ERROR, logger="dialer.runtime.engine")
    phones = numbers(3, base="+331456860")
    campaign = setup_campaign(redis_client, tmp_path, phones)
    pbx = await start_pbx()
    broken = dataclasses.replace(SETTINGS, dial_template="PJSIP/{number}@{trunk}", trunk_channels=5)
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, offset_clock(AT, 1.0), settings=broken)
            queue = ContactQueue(redis_client, "acme", campaign)
            await eventually(lambda: queue.counts()["waiting"] == 3, timeout=30)
            stop.set()
            engine = await task
    finally:
        await pbx.stop()
    assert engine.flights == {} and engine.placed == 0 and sum(observer.by_number.values()) == 0
    assert redis_client.zcard(trunk_keys(f"127.0.0.1:{pbx.port}")[0]) == 0
    for phone in phones:  # the reservations were released: no attempt is left "reserved" at the gate
        assert all(a.outcome != "reserved" for a in FactStore(redis_client).attempts("acme", phone))
    due = queue.next_due()
    assert due is not None and due >= AT.timestamp() + 55
    assert any("unexpected error before the Originate" in r.getMessage() for r in caplog.records)


async def test_agentless_campaigns_share_their_servers_ai_sessions(redis_url, redis_client, tmp_path):
    """Two AI campaigns on one server with 2 AI sessions: never more than 2 AI calls up at once between them
    (each campaign alone would take both sessions), and both run to completion."""
    answer = [p for p in numbers(40, base="+331456870") if p[-1] in "169"]  # callees who answer and talk
    kw = {"agent_kind": "ai", "ai_endpoint": "PJSIP/ai@voicebot", "voice": "artificial", "purpose": "informational"}
    bots = [setup_campaign(redis_client, tmp_path, answer[i * 4:(i + 1) * 4], list_id=f"bots{i}", **kw)
            for i in range(2)]
    store = CampaignStore(redis_client)
    pbx = await start_pbx(ai_sessions=10, time_scale=0.05)  # the PBX could take more: the dialer's 2 bound it
    settings = dataclasses.replace(SETTINGS, ai_sessions=2)
    peak = 0
    try:
        stop, task = engine_task(redis_url, pbx, offset_clock(AT, 1.0), settings=settings)
        deadline = asyncio.get_running_loop().time() + 90
        while not all(store.get("acme", c).status == "completed" for c in bots):
            assert asyncio.get_running_loop().time() < deadline and not task.done()
            peak = max(peak, pbx.pbx.calls_up())
            await asyncio.sleep(0.005)
        stop.set()
        await task
    finally:
        await pbx.stop()
    assert peak == 2
    for campaign in bots:
        finals = ContactQueue(redis_client, "acme", campaign).final_states()
        assert len(finals) == 4 and {f["reason"] for f in finals.values()} == {"answered"}, finals


def test_a_mixed_campaign_backs_off_on_its_worst_abandon_window(redis_url, redis_client):
    """US (30 days) and GB (24 h) numbers in one campaign: a day's spike of abandons must not hide in the month."""
    from dialer.campaigns import StoredCampaign
    from dialer.pacing import CampaignEstimators, RedisAbandonCounter
    from dialer.runtime.engine import CampaignRunner, Engine

    now = AT.timestamp()
    counter = RedisAbandonCounter(redis_client, "acme")
    for i in range(200):  # 25 days ago: 200 live answers, no abandon
        counter.record("mixed", f"old-{i}", now - 25 * 86400, False)
    for i in range(20):  # the last hour: 20 live answers, 3 abandoned (15% over 24 h; 1.4% over 30 days)
        counter.record("mixed", f"new-{i}", now - 600, i < 3)
    engine = Engine(redis_client, build_gate(redis_client, engine_config(redis_url)),
                    [AsteriskServer("sbx", "127.0.0.1", 1, "u", "s")], settings=SETTINGS)
    stored = StoredCampaign("mixed", "acme", "running", {"pacing_mode": "predictive"}, "", "", "", "")
    runner = CampaignRunner("acme", "mixed", ContactQueue(redis_client, "acme", "mixed"), CampaignEstimators(), stored,
                            countries={"US"})
    engine.figures.write_stats(runner, AT, {})
    assert runner.abandon_totals == (220, 3)  # US only: the 30-day window
    runner.countries = {"US", "GB"}
    engine.figures.write_stats(runner, AT, {})
    assert runner.abandon_totals == (20, 3)  # with GB numbers too: the 24-hour window, the worse of the two


def test_claim_leases_follow_redis_clock_not_a_drifting_local_one(redis_url, redis_client):
    """A machine whose clock runs a minute ahead would see every other process's claims as expired and take them
    over; leases are measured on Redis's clock instead (the offset is read at each heartbeat)."""
    import time

    from dialer.runtime.engine import Engine

    engine = Engine(redis_client, build_gate(redis_client, engine_config(redis_url)),
                    [AsteriskServer("sbx", "127.0.0.1", 1, "u", "s")], settings=SETTINGS, process_id="ahead")
    engine._local_time = lambda: time.time() + 60.0
    engine._heartbeat()
    seconds, micros = redis_client.time()
    assert abs(engine._lease_clock() - (seconds + micros / 1e6)) < 1.0
    queue = ContactQueue(redis_client, "acme", "c1")
    queue.add([QueuedContact("k1", "+33145670001")], at=AT.timestamp())
    assert queue.claim(1, owner="alive", now=AT.timestamp(), lease_until=seconds + 20, call_ids=["x"],
                       servers=["sbx"])
    taken = queue.take_over_expired(owner="ahead", now_wall=engine._lease_clock(),
                                    lease_until=engine._lease_clock() + 20)
    assert taken == []  # the other process's live claim stays its own
