"""Metered usage in the record (issue 19): every increment of the Redis counters reaches usage_records exactly once
through the audit outbox, and the report is the same read from the record after Redis lost everything. Real
redis-server, real PostgreSQL (started by the session) and SQLite."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import redis

from dialer import holds
from dialer.facts import FactStore
from dialer.record.archiver import Archiver
from dialer.record.store import Record, RecordNotMigrated
from dialer.record.url import parse_record_url
from dialer.usage import archived, meter, report

KEY = "k" * 32
T = "acme"
DAY1 = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TODAY = date(2026, 12, 6)



def meter_calls(client: redis.Redis) -> int:
    """Calls of two campaigns over two days, each outcome reported again (a replay, an AstDB read-back that
    learns the call was answered); a contacts-stored reading per day. Returns the calls placed."""
    facts = FactStore(client)
    placed = 0
    for i in range(14):
        at = DAY1 if i < 6 else DAY2
        phone, call_id, campaign = f"+3314567{i:04d}", f"call-{i}", "c1" if i % 3 else "c2"
        client.hset(f"t:{{{T}}}:p:{phone}:att", call_id,
                    f'{{"at":"{at.isoformat().replace("+00:00", "Z")}","campaign":"{campaign}","outcome":"reserved"}}')
        answered = i % 2 == 0
        first = meter.measures(meter.CallUsage(None if i % 4 == 0 else (100.0 if answered else None), 100.0 + 7 * i,
                                                ai=i % 5 == 0, recorded=i % 3 == 1), "per_6_seconds")
        facts.record_outcome(T, phone, call_id, "unknown" if i % 4 == 0 else "answered" if answered else "busy",
                             at + timedelta(seconds=30), metered=first)
        facts.record_outcome(T, phone, call_id, "answered" if answered else "busy", at + timedelta(seconds=40),
                             metered=first)  # the same report again: nothing added
        if i % 4 == 0:  # the read-back finds it answered: only the difference is added
            later = meter.measures(meter.CallUsage(100.0, 100.0 + 7 * i, recorded=True), "per_6_seconds")
            facts.record_outcome(T, phone, call_id, "answered", at + timedelta(minutes=5), metered=later)
        placed += 1
    meter.record_contacts_stored(client, T, 40, DAY1)
    meter.record_contacts_stored(client, T, 40, DAY1 + timedelta(minutes=1))  # unchanged: no entry
    meter.record_contacts_stored(client, T, 55, DAY2)
    facts.record_outcome("other", "+33145679999", "x-1", "answered", DAY2,
                         metered=meter.measures(meter.CallUsage(0.0, 300.0), "per_minute"))  # another tenant
    return placed


def test_usage_survives_a_redis_flush_in_the_record(redis_client: redis.Redis, record: Record) -> None:
    placed = meter_calls(redis_client)
    first, last = date(2026, 11, 1), date(2026, 11, 30)
    live = report.usage(redis_client, T, first, last)
    assert live["totals"]["attempts"] == placed and live["totals"]["contacts_stored"] == 55
    assert [d["day"] for d in live["days"]] == ["2026-11-29", "2026-11-30"]
    entries = [e for e in redis_client.xrange(f"t:{{{T}}}:audit") if e[1][b"kind"] == b"usage"]
    read_backs = sum(1 for i in range(placed) if i % 4 == 0)
    assert len(entries) == placed + read_backs + 2  # one per call, one per read-back that added, two readings
    # two archivers copying the same entries (a retry, a second process): each increment stored once
    for _ in range(2):
        Archiver(redis_client, record, secret_key=KEY, tail=timedelta(days=365)).run_once([T, "other"])
    assert record.query("SELECT count(*) FROM usage_records WHERE tenant = %s", (T,))[0][0] == len(entries)
    from_record = archived.usage_from_record(record, T, first, last)
    assert from_record == live
    assert report.usage_csv(from_record) == report.usage_csv(live)
    assert archived.usage_from(redis_client, record, T, first, last, TODAY)["source"] == "record"  # closed, caught up
    assert archived.usage_from(redis_client, record, T, first, TODAY, TODAY)["source"] == "redis"  # open period
    redis_client.flushall()
    assert report.usage(redis_client, T, first, last)["totals"]["attempts"] == 0  # Redis lost it all
    rebuilt = archived.usage_from(redis_client, record, T, first, last, TODAY)
    assert rebuilt.pop("source") == "record" and rebuilt == live
    assert archived.usage_from_record(record, "other", first, last)["totals"]["billable_seconds"] == 300
    assert archived.usage_from_record(record, T, date(2026, 11, 30), last)["totals"]["attempts"] == placed - 6


def test_auto_reads_redis_while_the_record_is_behind(redis_client: redis.Redis, record: Record) -> None:
    meter_calls(redis_client)
    first, last = date(2026, 11, 1), date(2026, 11, 30)
    assert archived.usage_from(redis_client, record, T, first, last, TODAY)["source"] == "redis"  # not archived
    assert archived.usage_from(redis_client, record, T, first, last, TODAY, "record")["totals"]["attempts"] == 0
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(days=365)).run_once([T])
    FactStore(redis_client).record_outcome(T, "+33145670100", "late", "busy", DAY2,
                                           metered=meter.measures(meter.CallUsage(None, 1.0), "per_second"))
    behind = archived.usage_from(redis_client, record, T, first, last, TODAY)
    assert behind["source"] == "redis" and behind["totals"]["attempts"] == 15
    with pytest.raises(ValueError, match="source"):
        archived.usage_from(redis_client, record, T, first, last, TODAY, "disk")


def test_auto_does_not_take_the_record_for_caught_up_once_redis_lost_its_trail(redis_client: redis.Redis,
                                                                              record: Record) -> None:
    """After a Redis data loss the trail and its entries count restart from nothing: a few calls later the record
    holds more rows than Redis counts, yet not those calls (the archiver stops at the fork, ChainGap). auto must
    not answer from the record then; Redis's counters (restored with --restore, plus the new calls) answer."""
    placed = meter_calls(redis_client)
    first, last = date(2026, 11, 1), date(2026, 11, 30)
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(days=365)).run_once([T])
    redis_client.flushall()
    assert archived.usage_from(redis_client, record, T, first, last, TODAY)["source"] == "record"  # nothing new
    archived.restore_month(redis_client, record, T, 2026, 11, actor="operator:carol", at=DAY2)
    facts = FactStore(redis_client)
    for i in range(2):  # two calls after the loss, late on the 30th
        phone = f"+3314568{i:04d}"
        redis_client.hset(f"t:{{{T}}}:p:{phone}:att", f"after-{i}",
                          '{"at":"2026-11-30T23:00:00Z","campaign":"c1","outcome":"reserved"}')
        facts.record_outcome(T, phone, f"after-{i}", "busy", DAY2 + timedelta(hours=14),
                             metered=meter.measures(meter.CallUsage(None, 10.0), "per_second"))
    found = archived.usage_from(redis_client, record, T, first, last, TODAY)
    assert found["source"] == "redis" and found["totals"]["attempts"] == placed + 2
    # the operator confirms the loss (dialer record relink): the archive goes on, and once it holds the new calls
    # the record answers again, with every call counted once
    from dialer.audit import AuditLog
    from dialer.record.relink import confirm

    confirm(AuditLog(redis_client, KEY), record, T, by="cli:ops", reason="flushed", at=DAY2)
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(days=365)).run_once([T])
    found = archived.usage_from(redis_client, record, T, first, last, TODAY)
    assert found["source"] == "record" and found["totals"]["attempts"] == placed + 2


def test_a_record_that_cannot_be_read_leaves_auto_on_redis(redis_client: redis.Redis, tmp_path: Path) -> None:
    meter_calls(redis_client)
    missing = Record(parse_record_url(f"sqlite:///{tmp_path}/nothing-yet.db"))  # never migrated
    found = archived.usage_from(redis_client, missing, T, date(2026, 11, 1), date(2026, 11, 30), TODAY)
    assert found["source"] == "redis" and found["totals"]["attempts"] == 14


def test_migrating_an_existing_record_adds_the_usage_table(tmp_path: Path) -> None:
    """A record made by revision 0001 (before usage_records) is brought to the newest revision."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import create_engine

    from dialer.record.store import MIGRATIONS

    url = parse_record_url(f"sqlite:///{tmp_path}/old.db")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url.sqlalchemy())
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    engine.dispose()
    store = Record(url)
    with pytest.raises(RecordNotMigrated):
        store.query("SELECT count(*) FROM usage_records")
    assert store.migrate() == "0008"  # the newest: 0008 is the audit filter indexes
    assert store.query("SELECT count(*) FROM usage_records") == [(0,)]
    with pytest.raises(Exception, match="append-only"), store.transaction() as tx:
        tx.execute("INSERT INTO usage_records (tenant, seq, day, attempts) VALUES ('t', 1, '2026-11-30', 1)")
        tx.execute("UPDATE usage_records SET attempts = 2")


@pytest.fixture(params=["sqlite", "postgresql"])
def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/record.db"
    return request.getfixturevalue("postgres_url")


def lose_redis_usage(client: redis.Redis, tenant: str) -> None:
    """What a Redis data loss does to the tenant's usage: the counters and the audit tail are gone (the rest of
    Redis, the gateway's tokens among it, is kept so the API can still be asked)."""
    for key in [*client.scan_iter(match=f"t:{{{tenant}}}:usage:*"), *client.scan_iter(match=f"t:{{{tenant}}}:audit*")]:
        client.delete(key)


async def test_usage_over_http_and_the_cli_from_the_record(redis_url: str, redis_client: redis.Redis, record_url: str,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from dialer.cli import main
    from tests.gateway_support import start_gateway, stop_gateway

    placed = meter_calls(redis_client)
    with Record(parse_record_url(record_url)) as store:
        store.migrate()
        Archiver(redis_client, store, secret_key=KEY, tail=timedelta(days=365)).run_once([T, "other"])
    gw = await start_gateway(redis_url, DIALER_RECORD_URL=record_url)
    try:
        month = {"month": "2026-11"}
        live = await (await gw.client.get("/v1/usage", params={**month, "source": "redis"},
                                          headers=gw.auth(T, "auditor"))).json()
        assert live["source"] == "redis" and live["totals"]["attempts"] == placed
        auto = await (await gw.client.get("/v1/usage", params=month, headers=gw.auth(T, "auditor"))).json()
        assert auto["source"] == "record" and auto["days"] == live["days"] and auto["totals"] == live["totals"]
        csv_live = await (await gw.client.get("/v1/usage/export", params={**month, "source": "redis"},
                                              headers=gw.auth(T))).text()
        await asyncio.to_thread(lose_redis_usage, redis_client, T)
        after = await (await gw.client.get("/v1/usage", params=month, headers=gw.auth(T, "supervisor"))).json()
        assert after["source"] == "record" and after["totals"] == live["totals"]
        assert await (await gw.client.get("/v1/usage/export", params=month, headers=gw.auth(T))).text() == csv_live
        gone = await (await gw.client.get("/v1/usage", params={**month, "source": "redis"}, headers=gw.auth(T))).json()
        assert gone["totals"]["attempts"] == 0
        # another tenant reads its own figures from the record, never acme's
        other = await (await gw.client.get("/v1/usage", params={**month, "source": "record"},
                                           headers=gw.auth("globex"))).json()
        assert other["totals"]["attempts"] == 0 and other["days"] == []
        bad = await gw.client.get("/v1/usage", params={**month, "source": "disk"}, headers=gw.auth(T))
        assert bad.status == 422 and (await bad.json())["error"]["field"] == "source"
    finally:
        await stop_gateway(gw)
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.setenv("DIALER_RECORD_URL", record_url)
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    assert main(["usage", "--tenant", T, "--month", "2026-11", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["source"] == "record" and printed["totals"] == live["totals"]
    assert main(["usage", "--tenant", T, "--month", "2026-11"]) == 0
    assert "read from record" in capsys.readouterr().out


async def test_an_explicit_record_source_that_cannot_be_read_is_a_503(redis_url: str,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dialer.cli import main
    from tests.gateway_support import start_gateway, stop_gateway
    from tests.test_record_api import free_port

    down = f"postgresql://nobody@127.0.0.1:{free_port()}/record"
    gw = await start_gateway(redis_url, DIALER_RECORD_URL=down)
    try:
        resp = await gw.client.get("/v1/usage", params={"month": "2026-11", "source": "record"}, headers=gw.auth())
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "record_unavailable"
        resp = await gw.client.get("/v1/usage", params={"month": "2026-11"}, headers=gw.auth())
        assert resp.status == 200 and (await resp.json())["source"] == "redis"  # auto: the live counters
    finally:
        await stop_gateway(gw)
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.setenv("DIALER_RECORD_URL", down)
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    assert main(["usage", "--tenant", T, "--month", "2026-11", "--source", "record"]) == 1
    assert "the record cannot be read" in capsys.readouterr().err


def test_after_a_data_loss_the_counters_come_back_from_the_record_and_budgets_count_on(
        redis_url: str, redis_client: redis.Redis, record: Record, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dialer.audit import AuditLog
    from dialer.cli import main
    from dialer.usage import budgets
    from dialer.usage.plan import parse, set_plan

    placed = meter_calls(redis_client)
    first, last = date(2026, 11, 1), date(2026, 11, 30)
    live = report.usage(redis_client, T, first, last)
    plan = parse({"budgets": [{"measure": "attempts", "period": "month", "limit": 20},
                              {"measure": "billable_minutes", "period": "day", "limit": 10}]})
    at = DAY2 + timedelta(hours=1)
    before = [s.as_dict() for s in budgets.states(redis_client, T, plan, at)]
    assert before[0]["used"] == placed
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(days=365)).run_once([T])
    redis_client.flushall()
    assert budgets.states(redis_client, T, plan, at)[0].used == 0  # what a hard stop would wrongly count from
    set_plan(redis_client, T, {"budgets": [{"measure": "attempts", "period": "month", "limit": 20, "hard_stop": True}]},
             actor="operator:carol", audit=AuditLog(redis_client), at=at)  # the plan, put back by the operator
    assert archived.restore_month(redis_client, record, T, 2026, 11, actor="operator:carol", at=at) == 2
    assert report.usage(redis_client, T, first, last) == live
    assert [s.as_dict() for s in budgets.states(redis_client, T, plan, at)] == before
    assert [h.code for h in holds.tenant_holds(redis_client, T)] == []  # 14 of 20: no hard stop yet
    [entry] = [e for e in AuditLog(redis_client).entries(T) if e.kind == "usage"]
    assert (entry.actor, entry.payload["action"], entry.payload["attempts"]) == ("operator:carol", "restore", placed)
    with pytest.raises(archived.RestoreError, match="still holds"):  # never over counters Redis has
        archived.restore_month(redis_client, record, T, 2026, 11, actor="operator:carol", at=at)
    with pytest.raises(archived.RestoreError, match="no usage"):
        archived.restore_month(redis_client, record, T, 2026, 10, actor="operator:carol", at=at)
    # from the shell
    redis_client.flushall()
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.setenv("DIALER_RECORD_URL", record.url.url if record.dialect == "postgresql"
                       else f"sqlite:///{record.url.path}")
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    assert main(["usage", "--tenant", T, "--restore"]) == 1  # a whole month, named
    assert main(["usage", "--tenant", T, "--month", "2026-11", "--restore"]) == 0
    assert "restored 2 days" in capsys.readouterr().out
    assert report.usage(redis_client, T, first, last) == live
    assert main(["usage", "--tenant", T, "--month", "2026-11", "--restore"]) == 1
    assert "still holds" in capsys.readouterr().err
    redis_client.flushall()  # a plan whose hard stop the restored month has reached: held at once, not after a call
    set_plan(redis_client, T, {"budgets": [{"measure": "attempts", "period": "month", "limit": 10, "hard_stop": True}]},
             actor="operator:carol", audit=AuditLog(redis_client), at=at)
    archived.restore_month(redis_client, record, T, 2026, 11, actor="operator:carol", at=at)
    assert [h.code for h in holds.tenant_holds(redis_client, T)] == [holds.BUDGET_EXHAUSTED]
