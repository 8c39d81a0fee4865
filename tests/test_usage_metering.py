"""Usage metering (issue 19): every placed call counted exactly once, in its outcome's transaction; budgets with
alerts and the hard stop. Real redis-server, the real gate; the engine against the sandbox PBX over TCP."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from dialer import holds
from dialer.ami import outcomes
from dialer.ami.calls import Outcome
from dialer.ami.dispositions import Disposition
from dialer.audit import AuditLog
from dialer.facts import FactStore, person_key
from dialer.gate import Request
from dialer.runtime.engine import build_gate, offset_clock
from dialer.runtime.loader import load_campaign
from dialer.runtime.queues import ContactQueue
from dialer.usage import budgets, meter, report
from dialer.usage.plan import PlanError, parse, set_plan
from dialer.webhooks.events import endpoints_key, outbox_key
from rules.model import Contact
from tests.runtime_support import AT, OriginateObserver, engine_config, eventually, numbers, setup_campaign
from tests.test_runtime_engine import engine_task, run_until_completed, start_pbx

T = "acme"


def test_rounding_rules_bill_each_connected_call_up_to_the_increment():
    assert meter.billable(0.2, "per_second") == 1 and meter.billable(61.0, "per_second") == 61
    assert meter.billable(0.2, "per_6_seconds") == 6 and meter.billable(6.1, "per_6_seconds") == 12
    assert meter.billable(59.0, "per_minute") == 60 and meter.billable(60.5, "per_minute") == 120
    answered = meter.measures(meter.CallUsage(100.0, 161.0, ai=True, recorded=True), "per_minute")
    assert answered == {"attempts": 1, "connected": 1, "talk_seconds": 61, "billable_seconds": 120,
                        "ai_seconds": 120, "recordings": 1, "recording_seconds": 61}
    unanswered = meter.measures(meter.CallUsage(None, 130.0, recorded=True), "per_minute")
    assert unanswered == {"attempts": 1, "connected": 0, "talk_seconds": 0, "billable_seconds": 0, "ai_seconds": 0,
                          "recordings": 0, "recording_seconds": 0}
    # the same report again adds nothing; a more precise one adds only what it learnt; a weaker one never subtracts
    counted = meter.merge(None, unanswered)
    assert meter.delta(counted, meter.merge(counted, unanswered)) == {}
    assert meter.delta(counted, meter.merge(counted, answered))["connected"] == 1
    assert meter.delta(meter.merge(None, answered), meter.merge(meter.merge(None, answered), unanswered)) == {}


def test_a_plan_is_data_checked_field_by_field():
    plan = parse({"rounding": "per_6_seconds", "budgets": [{"measure": "attempts", "period": "day", "limit": 10}]})
    assert plan.budgets[0].alerts == (80, 100) and not plan.budgets[0].hard_stop
    for bad, field in [({"rounding": "per_hour"}, "rounding"), ({"budgets": [{"measure": "x", "period": "day",
                                                                              "limit": 1}]}, "budgets[0].measure"),
                       ({"budgets": [{"measure": "attempts", "period": "day", "limit": 0}]}, "budgets[0].limit"),
                       ({"budgets": [{"measure": "attempts", "period": "week", "limit": 5}]}, "budgets[0].period"),
                       ({"colour": "red"}, "colour")]:
        with pytest.raises(PlanError) as caught:
            parse(bad)
        assert caught.value.field == field


def attempt_records(client, phones):
    out = {}
    for phone in phones:
        for call_id, raw in client.hgetall(person_key(T, phone, "att")).items():
            out[call_id.decode()] = (phone, json.loads(raw))
    return out


async def test_each_call_is_metered_once_even_when_its_outcome_is_settled_again(redis_url, redis_client, tmp_path):
    phones = [p for p in numbers(12, base="+331456750") if p[-1] not in "7"]
    campaign = setup_campaign(redis_client, tmp_path, phones, recording=True, max_attempts=1)
    set_plan(redis_client, T, {"rounding": "per_minute"}, actor="test", audit=AuditLog(redis_client), at=AT)
    pbx = await start_pbx()
    try:
        async with OriginateObserver(pbx.port) as observer:
            await run_until_completed(redis_url, redis_client, T, campaign, pbx, offset_clock(AT, 60.0))
    finally:
        await pbx.stop()
    placed = sum(observer.by_number.values())
    records = attempt_records(redis_client, phones)
    assert placed >= 8 and len(records) == placed
    day = AT.astimezone(UTC).date()
    before = report.usage(redis_client, T, day, day + timedelta(days=1))
    totals = before["totals"]
    connected = [r for _, r in records.values() if r["metered"]["connected"]]
    assert totals["attempts"] == placed  # every placed call, once
    assert totals["connected"] == len(connected) == sum(1 for _, r in records.values()
                                                        if r["outcome"] in ("answered", "opted_out"))
    assert totals["billable_seconds"] == sum(r["metered"]["billable_seconds"] for _, r in records.values())
    assert totals["billable_seconds"] % 60 == 0 and totals["billable_seconds"] >= 60 * len(connected)
    assert totals["recordings"] == len(connected)  # the campaign records its calls
    assert before["campaigns"][campaign]["attempts"] == placed and totals["ai_seconds"] == 0
    assert totals["contacts_stored"] == len(phones)  # read by the engine (hourly) for the day
    # After a restart the same calls are settled again: the live outcome replayed, and the AstDB read-back of a
    # call whose events were lost (unknown -> answered). Neither adds anything.
    gate = build_gate(redis_client, engine_config(redis_url))
    for call_id, (phone, record) in records.items():
        if not record["metered"]["connected"]:
            continue
        usage = meter.CallUsage(100.0, 100.0 + record["metered"]["talk_seconds"], recorded=True)
        gate.record_outcome(T, call_id, record["outcome"], AT, e164=phone, metered=meter.measures(usage, "per_minute"))
        lost = Outcome(call_id, campaign, T, phone, Disposition.UNKNOWN, None, None, None, 200.0, None,
                       resolved_by="reconcile")
        settled = outcomes.settle(lost, outcomes.StoredOutcome(call_id, 150.0, campaign, T, Disposition.ANSWERED))
        assert settled.disposition is Disposition.ANSWERED and settled.resolved_by == "astdb"
        again = meter.measures(meter.CallUsage(settled.answered_at, settled.ended_at, recorded=True), "per_minute")
        gate.record_outcome(T, call_id, "answered", AT, e164=phone, metered=again)
    after = report.usage(redis_client, T, day, day + timedelta(days=1))
    assert after["totals"] == totals and after["campaigns"] == before["campaigns"]
    # The record holds the same figures (each increment's `usage` entry, archived once), and still does once Redis
    # has lost everything (tests/test_usage_record.py covers PostgreSQL and the API).
    from dialer.record.archiver import Archiver
    from dialer.record.store import Record
    from dialer.record.url import parse_record_url
    from dialer.usage.archived import usage_from_record

    with Record(parse_record_url(f"sqlite:///{tmp_path}/record.db")) as record:
        record.migrate()
        Archiver(redis_client, record, secret_key="k" * 32, tail=timedelta(days=365)).run_once([T])
        redis_client.flushall()
        assert usage_from_record(record, T, day, day + timedelta(days=1)) == after


async def test_a_dead_process_call_is_counted_once_by_its_successor(redis_url, redis_client, tmp_path):
    """A process died with a call reserved: the successor settles it (unknown) and meters it; nothing lost."""
    phones = ["+33145677801", "+33145677811"]
    campaign = setup_campaign(redis_client, tmp_path, phones, retry_rules={"unknown": 1})
    queue = ContactQueue(redis_client, T, campaign)
    load_campaign(redis_client, queue, ["leads"], at=AT.timestamp())
    dead = queue.claim(2, owner="dead", now=AT.timestamp(), lease_until=0.0, call_ids=["dead-1", "dead-2"],
                       servers=["sbx", "sbx"])
    reserved = {c.contact.phone: c for c in dead}[phones[0]]
    gate = build_gate(redis_client, engine_config(redis_url))
    from dialer.campaigns import CampaignStore

    stored = CampaignStore(redis_client).get(T, campaign)
    [result] = gate.reserve_many([Request(Contact(phones[0], "FR", "75011"), stored.gate_campaign(),
                                          reserved.call_id)], AT)
    assert result.allowed
    pbx = await start_pbx()
    try:
        stop, task = engine_task(redis_url, pbx, offset_clock(AT, 60.0))
        await eventually(lambda: len(queue.final_states()) == 1 and queue.counts()["waiting"] == 1, timeout=60)
        stop.set()
        await task
    finally:
        await pbx.stop()
    day = AT.astimezone(UTC).date()
    totals = report.usage(redis_client, T, day, day + timedelta(days=1))["totals"]
    assert totals["attempts"] == 2  # the dead process's call (unknown) and the one placed since, once each
    assert [a.outcome for a in FactStore(redis_client).attempts(T, phones[0])] == ["unknown"]


def test_budget_alerts_once_per_threshold_and_the_hard_stop_holds_dialing(redis_client):
    redis_client.sadd("tenants", T)
    redis_client.hset(endpoints_key(T), "ep1", "{}")  # a tenant with a webhook endpoint gets the events
    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    plan = set_plan(redis_client, T, {"rounding": "per_second", "budgets": [
        {"measure": "attempts", "period": "month", "limit": 10, "alerts": [80, 100], "hard_stop": True},
        {"measure": "billable_minutes", "period": "day", "limit": 60, "alerts": [50]}]},
        actor="test", audit=AuditLog(redis_client), at=at)
    facts = FactStore(redis_client)

    def call(i: int, seconds: float) -> None:
        phone = f"+3314567{i:04d}"
        facts.record_outcome(T, phone, f"call-{i}", "answered", at, metered=meter.measures(
            meter.CallUsage(0.0, seconds), plan.rounding))
        budgets.check_budgets(redis_client, T, at, plan)

    for i in range(7):
        call(i, 10.0)
    assert _events(redis_client) == []
    call(7, 10.0)  # 8 attempts: 80 %
    assert [(e["data"]["threshold"], e["data"]["measure"]) for e in _events(redis_client)] == [(80, "attempts")]
    assert not holds.tenant_holds(redis_client, T)
    call(8, 1800.0)  # 9 attempts; 31.3 billable minutes today: the day budget's 50 %
    call(9, 10.0)  # 10 attempts: 100 %, hard stop
    sent = [(e["data"]["threshold"], e["data"]["measure"]) for e in _events(redis_client)]
    assert sent == [(80, "attempts"), (50, "billable_minutes"), (100, "attempts")]
    [hold] = holds.tenant_holds(redis_client, T)
    assert hold.code == holds.BUDGET_EXHAUSTED and hold.until == "2027-01-01T00:00:00Z" and "10 attempts" in hold.text()
    assert redis_client.ttl(holds.budget_key(T)) > 0  # lifts itself when the month ends
    call(10, 10.0)
    assert len(_events(redis_client)) == 3  # each threshold once per period
    kinds = [e.payload.get("action") for e in AuditLog(redis_client).entries(T) if e.kind == "hold"]
    assert kinds == ["suspend"]
    # the tenant buys more: raising the limit lifts the hold at once
    budgets.replace_plan(redis_client, T, {"budgets": [{"measure": "attempts", "period": "month", "limit": 100,
                                                        "hard_stop": True}]}, actor="user:admin", at=at)
    assert holds.tenant_holds(redis_client, T) == []


def _events(client):
    return [json.loads(fields[b"body"]) for _, fields in client.xrange(outbox_key(T))
            if fields[b"type"] == b"usage.budget_alert"]


async def test_the_engine_counts_into_budgets_and_stops_at_the_hard_stop(redis_url, redis_client, tmp_path):
    phones = [p for p in numbers(10, base="+331456760") if p[-1] not in "2347"]
    campaign = setup_campaign(redis_client, tmp_path, phones)
    set_plan(redis_client, T, {"budgets": [{"measure": "attempts", "period": "day", "limit": 2, "hard_stop": True}]},
             actor="test", audit=AuditLog(redis_client), at=AT)
    pbx = await start_pbx(queues={"dialer": 1})
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, offset_clock(AT, 1.0))
            await eventually(lambda: redis_client.exists(holds.budget_key(T)), timeout=60)
            from dialer.livestats import stats_key

            await eventually(lambda: b"budget" in (redis_client.hget(stats_key(T, campaign), "pacing_why") or b""),
                             timeout=30)
            placed = sum(observer.by_number.values())
            await asyncio.sleep(1.5)
            assert sum(observer.by_number.values()) == placed  # held: no call since
            stop.set()
            await task
    finally:
        await pbx.stop()
    assert placed <= 3  # the limit, plus at most the call reserved while the second one ended


def test_dialer_usage_prints_a_month_as_a_table_json_or_csv(redis_url, redis_client, monkeypatch, capsys, tmp_path):
    from dialer.cli import main

    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    FactStore(redis_client).record_outcome(T, "+33145670001", "u1", "answered", at, metered=meter.measures(
        meter.CallUsage(0.0, 90.0), "per_minute"))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"rounding": "per_6_seconds"}))
    assert main(["usage", "--tenant", T, "--plan", str(plan)]) == 0
    assert '"per_6_seconds"' in capsys.readouterr().out
    assert main(["usage", "--tenant", T, "--month", "2026-12"]) == 0
    out = capsys.readouterr().out
    assert "2026-12-06" in out and "billable_minutes" in out and "2.0" in out and "per_6_seconds" in out
    assert main(["usage", "--tenant", T, "--month", "2026-12", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["billable_seconds"] == 120
    assert main(["usage", "--tenant", T, "--month", "2026-12", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("2026-12-06,,1,1,90,120")
    assert main(["usage", "--tenant", T, "--month", "2026-13"]) == 1
    plan.write_text(json.dumps({"rounding": "per_hour"}))
    assert main(["usage", "--tenant", T, "--plan", str(plan)]) == 1


async def test_ai_agent_minutes_are_counted_apart(redis_url, redis_client, tmp_path):
    import dataclasses

    from tests.test_runtime_engine import SETTINGS

    phones = [p for p in numbers(8, base="+331456770") if p[-1] not in "234"]
    ai = setup_campaign(redis_client, tmp_path, phones, list_id="bots", agent_kind="ai", pacing_mode="agentless",
                        ai_endpoint="PJSIP/ai@voicebot", voice="artificial", purpose="informational")
    pbx = await start_pbx(queues={"dialer": 1}, ai_sessions=2)
    try:
        await run_until_completed(redis_url, redis_client, T, ai, pbx, offset_clock(AT, 60.0),
                                  settings=dataclasses.replace(SETTINGS, ai_sessions=2))
    finally:
        await pbx.stop()
    day = AT.astimezone(UTC).date()
    figures = report.usage(redis_client, T, day, day + timedelta(days=1))["campaigns"][ai]
    assert figures["connected"] >= 1 and figures["ai_seconds"] == figures["billable_seconds"] > 0
