"""The record (issue 18): schema, archiver, verify across the boundary, append-only tables; on a real PostgreSQL
started by the test session and on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from dialer.audit import AuditEvent, AuditLog, stream_key
from dialer.record.archiver import Archiver, ChainGap
from dialer.record.store import Record, RecordUnavailable
from dialer.record.url import parse_record_url
from dialer.record.verify import verify_chain

KEY = "k" * 32
T0 = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)



def decision(i: int, allowed: bool, campaign: str = "c1", call_id: str | None = None) -> AuditEvent:
    payload = {"mode": "reserve", "campaign": campaign, "contact_id": f"k{i}", "person": f"p{i % 7}",
               "phone": "+33*******01", "allowed": allowed,
               "reasons": [] if allowed else [["QUIET_HOURS", "fr.hours", None], ["CAP", "fr.cap", None]]}
    if call_id:
        payload["call_id"] = call_id
    return AuditEvent("gate_decision", "gate", payload, T0 + timedelta(minutes=i))


def fill(audit: AuditLog, tenant: str, n: int) -> None:
    events = []
    for i in range(n):
        allowed = i % 3 == 0
        events.append(decision(i, allowed, call_id=f"call{i}" if allowed else None))
        if allowed:
            events.append(AuditEvent("call_outcome", "engine", {
                "call_id": f"call{i}", "outcome": "abandoned" if i % 9 == 0 else "answered", "person": f"p{i % 7}",
                "phone": "+33*******01", "call": {"ring_s": 10.0, "talk_s": 50.0, "wrapup_s": 5.0, "cause": 16,
                                                  "endpoint": "queue:sales", "live": True}}, T0 + timedelta(minutes=i)))
    events.append(AuditEvent("optout", "api:t1", {"person": "p1", "phone": "+33*******01", "scope": "company",
                                                   "campaign": None, "source": "api", "call_id": None,
                                                   "keyword": False}, T0))
    events.append(AuditEvent("consent", "api:t1", {"person": "p2", "phone": "+33*******02", "action": "grant",
                                                    "purpose": "telemarketing", "evidence_ref": "ev123",
                                                    "written": True}, T0))
    audit.append_many(tenant, events)


def counts(record: Record, tenant: str) -> dict[str, int]:
    out = {}
    for table in ("audit_archive", "gate_decisions", "gate_denials", "call_records", "consents", "optouts"):
        out[table] = record.query(f"SELECT count(*) FROM {table} WHERE tenant = %s", (tenant,))[0][0]
    return out


def test_archive_copies_everything_once_and_verifies_across_the_boundary(redis_client: redis.Redis,
                                                                          record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    fill(audit, "t1", 30)
    head = audit.head("t1").seq
    now = datetime.now(UTC) + timedelta(seconds=5)  # every entry older than the (empty) tail
    archiver = Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0), batch=7, clock=lambda: now)
    result = archiver.archive_tenant("t1")
    assert result.archived_seq == head and result.copied == head
    assert result.trimmed == head - 1  # the last archived entry stays as Redis's start
    assert counts(record, "t1") == {"audit_archive": head, "gate_decisions": 30, "gate_denials": 40,
                                    "call_records": 10, "consents": 1, "optouts": 1}
    # the call record carries its gate decision, campaign and contact
    row = record.query("SELECT campaign, contact_id, gate_seq, ring_s, endpoint FROM call_records "
                       "WHERE tenant = %s AND call_id = %s", ("t1", "call3"))[0]
    assert row[0] == "c1" and row[1] == "k3" and row[2] and row[3] == 10.0 and row[4] == "queue:sales"
    # a second pass (and a second archiver) copies nothing twice
    again = Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0))
    assert again.archive_tenant("t1").copied == 0
    assert counts(record, "t1")["audit_archive"] == head
    # more entries after the trim: one chain across the record and Redis
    audit.append("t1", "api", "api:t1", {"n": 1}, T0)
    result = verify_chain(audit, record, "t1")
    assert result.ok, str(result)
    assert result.head_seq == head + 1 and result.checked == head + 1
    assert audit.verify("t1").ok  # Redis's own part still verifies alone (signed base)
    if record.dialect == "postgresql":  # monthly partitions, made on first use: by decision time, by write time
        assert record.partitions("gate_decisions") == ["gate_decisions_p202611"]
        month = datetime.now(UTC).strftime("%Y%m")
        assert f"audit_archive_p{month}" in record.partitions("audit_archive")


def test_redis_part_that_does_not_continue_the_archive_is_found(redis_client: redis.Redis, record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    fill(audit, "t1", 6)
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0)).archive_tenant("t1")
    # someone rewrites Redis's part consistently (a new chain with a forged, validly signed base would need the
    # key; here the base's hash is changed and re-signed, as only a key holder could): the join catches it
    base = redis_client.hgetall("t:{t1}:audit:base")
    seq = int(base[b"seq"])
    forged = "f" * 40
    redis_client.hset("t:{t1}:audit:base", mapping={"hash": forged, "mac": audit._sign("t1", seq, forged)})
    result = verify_chain(audit, record, "t1")
    assert not result.ok


def test_archived_entry_altered_is_found(redis_client: redis.Redis, record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    fill(audit, "t1", 6)
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0)).archive_tenant("t1")
    with record.retention_session() as tx:  # only retention may touch rows: here, a forger with that power
        tx.execute("DELETE FROM audit_archive WHERE tenant = %s AND seq = %s", ("t1", 3))
    result = verify_chain(audit, record, "t1")
    assert not result.ok and result.bad_seq == 3 and "missing" in result.problem


@pytest.mark.parametrize("statement", ["UPDATE audit_archive SET actor = 'x'", "DELETE FROM audit_archive",
                                       "UPDATE call_records SET outcome = 'x'", "DELETE FROM optouts",
                                       "DELETE FROM consents", "UPDATE gate_decisions SET allowed = %s"])
def test_archive_tables_refuse_update_and_delete(redis_client: redis.Redis, record: Record, statement: str) -> None:
    audit = AuditLog(redis_client, KEY)
    fill(audit, "t1", 6)
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0)).archive_tenant("t1")
    before = counts(record, "t1")
    with pytest.raises(Exception, match="append-only"), record.transaction() as tx:
        tx.execute(statement, (True,) if "%s" in statement else ())
    assert counts(record, "t1") == before


def test_gap_between_record_and_redis_is_refused(redis_client: redis.Redis, record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    fill(audit, "t1", 6)
    # entries 1..3 gone without a base: not retention
    redis_client.xtrim(stream_key("t1"), minid="4-0", approximate=False)
    with pytest.raises(ChainGap):
        Archiver(redis_client, record, secret_key=KEY).archive_tenant("t1")
    assert counts(record, "t1")["audit_archive"] == 0


def test_archive_starting_after_a_retention_trim(redis_client: redis.Redis, record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    fill(audit, "t1", 6)
    audit.trim_before("t1", 4)  # retention ran before the record existed
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0)).archive_tenant("t1")
    result = verify_chain(audit, record, "t1")
    assert result.ok, str(result)


def test_unreachable_postgres_is_record_unavailable() -> None:
    from dialer.redisproc import free_port

    store = Record(parse_record_url(f"postgresql://nobody@127.0.0.1:{free_port()}/x"), timeout=1.0)
    try:
        with pytest.raises(RecordUnavailable, match="record postgresql://"):
            store.query("SELECT 1")
        assert not store.ping()
    finally:
        store.close()


def test_reports_per_campaign_day_and_per_person(redis_client: redis.Redis, record: Record) -> None:
    from dialer.record.reports import campaign_days, campaign_days_csv, day_range, person_history

    audit = AuditLog(redis_client, KEY)
    fill(audit, "t1", 30)  # 23:00 .. 23:29 on Nov 30: 10 calls (c1), 20 denials, 2 reasons each
    audit.append_many("t2", [decision(0, False, campaign="c1")])  # another tenant: never counted
    archiver = Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0))
    archiver.run_once()
    first, last = day_range("2026-11-29", "2026-12-01", T0.date())
    rows = campaign_days(record, "t1", first, last)
    assert rows == [{"day": "2026-11-30", "campaign": "c1", "attempts": 10, "answers": 10, "abandons": 4,
                     "abandon_rate": 0.4, "hours_dialed": round(10 * 60 / 3600, 4),
                     "denials": {"CAP": 20, "QUIET_HOURS": 20}, "denied": 40}]
    assert campaign_days(record, "t1", first, last, campaign="other") == []
    text = campaign_days_csv(rows)
    assert text.splitlines() == [
        "day,campaign,attempts,answers,abandons,abandon_rate,hours_dialed,denied,denied:CAP,denied:QUIET_HOURS",
        "2026-11-30,c1,10,10,4,0.4,0.1667,40,20,20"]
    history = person_history(record, "t1", "p0")  # i % 7 == 0: i = 0, 7, 14, 21, 28
    assert [d["contact_id"] for d in history["decisions"]] == ["k0", "k7", "k14", "k21", "k28"]
    assert [c["call_id"] for c in history["calls"]] == ["call0", "call21"]
    assert history["calls"][0]["gate"]["allowed"] is True and history["calls"][0]["outcome"] == "abandoned"
    assert person_history(record, "t2", "p0")["calls"] == []
    assert person_history(record, "t1", "p1")["optouts"][0]["scope"] == "company"
    assert person_history(record, "t1", "p2")["consents"][0]["evidence_ref"] == "ev123"


@pytest.mark.parametrize("value", ["mysql://h/db", "postgresql://h/", "postgresql://h:99999/db", "sqlite://rel.db",
                                   "sqlite:///", "sqlite:///:memory:", "record.db"])
def test_bad_record_url_is_refused_naming_the_setting(value: str) -> None:
    from dialer.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"^setting record\.url: "):
        load_config(env={"DIALER_RECORD_URL": value})


def test_record_urls() -> None:
    assert parse_record_url("postgres://u:pw@db:5432/rec").shown() == "postgresql://u:***@db:5432/rec"
    assert parse_record_url("postgresql://u@db/rec").sqlalchemy() == "postgresql+psycopg://u@db/rec"
    assert parse_record_url("sqlite:////var/lib/d/r.db").path == "/var/lib/d/r.db"
    assert parse_record_url("", data_dir="/data").path == "/data/record.db"


def test_cli_archiver_report_and_verify(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    audit = AuditLog(redis_client, KEY)
    fill(audit, "t1", 12)
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_RECORD_URL": f"sqlite:///{tmp_path}/r.db",
           "DIALER_SECRET_KEY": KEY, "DIALER_RECORD_REDIS_TAIL_HOURS": "0", "PYTHONPATH": os.getcwd()}

    def dialer(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dialer", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    out = dialer("archiver", "--once")
    assert out.returncode == 0, out.stderr
    assert '"archived_seq": 18' in out.stdout
    assert redis_client.xlen(stream_key("t1")) == 1
    out = dialer("audit", "verify", "--tenant", "t1")
    assert out.returncode == 0 and "intact: 18 entries" in out.stdout, out.stdout + out.stderr
    out = dialer("report", "campaign-days", "--tenant", "t1", "--since", "2026-11-30", "--until", "2026-11-30", "--csv")
    assert out.returncode == 0 and out.stdout.splitlines()[1].startswith("2026-11-30,c1,4,4,"), out.stdout
    out = dialer("report", "campaign-days", "--tenant", "t1", "--since", "2026-13-01")
    assert out.returncode == 1 and "--since: expected a date" in out.stderr
    # a record that is down: one line, no traceback
    env["DIALER_RECORD_URL"] = "postgresql://nobody@127.0.0.1:1/x"
    out = dialer("report", "campaign-days", "--tenant", "t1")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.splitlines()[-1].startswith("dialer: record postgresql://nobody@127.0.0.1:1/x: no connection")


def test_retention_drops_whole_months_and_the_chain_still_verifies(redis_client: redis.Redis, record: Record) -> None:
    from dialer.record.retention import drop_before

    audit = AuditLog(redis_client, KEY)
    fill(audit, "t1", 30)  # decisions on 2026-11-30, written (archive partition) this month
    archiver = Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0))
    archiver.archive_tenant("t1")
    now = datetime.now(UTC)
    head = audit.head("t1").seq
    # 1. the month of the decisions goes; the archive (written this month) stays
    drop_before(record, datetime(2026, 12, 1, tzinfo=UTC), KEY, now)
    assert counts(record, "t1")["gate_decisions"] == 0 and counts(record, "t1")["call_records"] == 0
    assert counts(record, "t1")["audit_archive"] == head and counts(record, "t1")["optouts"] == 1
    assert verify_chain(audit, record, "t1").ok
    # 2. everything archived goes: a signed new start; the chain verifies from it through the Redis tail
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    result = drop_before(record, next_month, KEY, now)
    assert result.new_bases == {"t1": head + 1}
    assert counts(record, "t1")["audit_archive"] == 0 and counts(record, "t1")["consents"] == 1
    audit.append("t1", "api", "api:t1", {"n": 1}, T0)
    archiver.archive_tenant("t1")
    result = verify_chain(audit, record, "t1")
    assert result.ok and result.head_seq == head + 1, str(result)
    # a start forged without the key is refused
    with record.retention_session() as tx:
        tx.execute("DELETE FROM audit_bases WHERE tenant = %s", ("t1",))
        tx.execute("INSERT INTO audit_bases (tenant, seq, hash, mac, set_at) VALUES (%s, %s, %s, %s, %s)",
                   ("t1", head, "0" * 40, "forged", record.ts(now)))
    assert not verify_chain(audit, record, "t1").ok
    with pytest.raises(ValueError, match="first instant of a month"):
        drop_before(record, datetime(2026, 12, 2, tzinfo=UTC), KEY, now)


def test_scheduled_retention_removes_only_what_each_tenants_policy_has_expired(
        redis_client: redis.Redis, record: Record, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dialer retention schedule` enqueues the record's retention with each round; run by a worker, it removes
    per tenant what its audit period has expired (whole months on PostgreSQL where every tenant is past them,
    rows in a retention session otherwise), keeps consents and opt-outs, and the chain still verifies."""
    from dialer import retention
    from dialer.jobs import RETENTION, InlineWorker, get_queue

    now = datetime.now(UTC)
    old, mid, recent = datetime(2019, 6, 15, tzinfo=UTC), now - timedelta(days=2000), now - timedelta(days=10)
    audit = AuditLog(redis_client, KEY)
    retention.set_policy(redis_client, "short", {"audit": retention.minimum("audit")}, actor="test", at=now)
    for tenant in ("short", "long"):
        redis_client.sadd("tenants", tenant)
        events = []
        for n, at in enumerate((old, mid, recent)):
            events.append(AuditEvent("gate_decision", "gate", {
                "mode": "reserve", "campaign": "c1", "contact_id": f"k{n}", "person": "p1", "phone": "+33*******01",
                "allowed": n != 1, "call_id": f"call{n}" if n != 1 else None,
                "reasons": [["QUIET_HOURS", "fr.hours", None]] if n == 1 else []}, at))
            if n != 1:
                events.append(AuditEvent("call_outcome", "engine", {"call_id": f"call{n}", "outcome": "answered",
                                                                     "person": "p1", "phone": "+33*******01"}, at))
        events.append(AuditEvent("optout", "api", {"person": "p1", "phone": "+33*******01", "scope": "company",
                                                   "source": "api"}, old))
        events.append(AuditEvent("consent", "api", {"person": "p2", "phone": "+33*******02", "action": "grant",
                                                    "purpose": "telemarketing", "written": True}, old))
        audit.append_many(tenant, events)
    archiver = Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0))
    for tenant in ("short", "long"):
        archiver.archive_tenant(tenant)
    before = {t: counts(record, t) for t in ("short", "long")}
    assert before["short"]["gate_decisions"] == 3 and before["short"]["call_records"] == 2

    url = record.url.url if record.dialect == "postgresql" else f"sqlite:///{record.url.path}"
    monkeypatch.setenv("DIALER_RECORD_URL", url)
    monkeypatch.setenv("DIALER_SECRET_KEY", KEY)
    ids = retention.enqueue_all(redis_client, now)
    assert InlineWorker([get_queue(redis_client, RETENTION)], connection=redis_client).work(burst=True)
    done = get_queue(redis_client, RETENTION).fetch_job(ids[-1]).return_value()
    assert "skipped" not in done, done
    after = {t: counts(record, t) for t in ("short", "long")}
    # the 2019 decision and call are past both periods; the `mid` ones past the short one only
    assert after["long"]["gate_decisions"] == 2 and after["long"]["call_records"] == 1
    assert after["short"]["gate_decisions"] == 1 and after["short"]["call_records"] == 1
    assert after["short"]["gate_denials"] == 0 and after["long"]["gate_denials"] == 1
    for tenant in ("short", "long"):  # written (archived) now: the archive itself is kept; so are the logs
        assert after[tenant]["audit_archive"] == before[tenant]["audit_archive"]
        assert after[tenant]["consents"] == 1 and after[tenant]["optouts"] == 1
    if record.dialect == "postgresql":  # the 2019 month went whole; 2020-21 months hold the long tenant's rows
        assert "gate_decisions_p201906" in done["dropped_partitions"]
        assert not any(name.endswith(f"{mid:%Y%m}") for name in done["dropped_partitions"])
    assert done["removed"]["short"] == {"gate_decisions": 2, "gate_denials": 1, "call_records": 1}
    assert done["removed"]["long"] == {"gate_decisions": 1, "call_records": 1}
    # each tenant's trail says what went (archived, then verified across the boundary with the record)
    for tenant in ("short", "long"):
        last = list(audit.entries(tenant))[-1]
        assert last.kind == "retention" and last.payload["action"] == "record", last
        archiver.archive_tenant(tenant)
        assert verify_chain(audit, record, tenant).ok

    # years later: the archived entries themselves are past their period (cut on when they were written)
    later = now + timedelta(days=retention.defaults()["audit"] + 40)
    result = retention_run(redis_client, record, later)
    for tenant in ("short", "long"):
        assert counts(record, tenant)["audit_archive"] == 0, tenant
        assert counts(record, tenant)["consents"] == 1 and counts(record, tenant)["optouts"] == 1
        assert result.new_bases[tenant] == audit.head(tenant).seq  # the new start: its own "record" entry
        archiver.archive_tenant(tenant)
        assert verify_chain(audit, record, tenant).ok, str(verify_chain(audit, record, tenant))
    # never within the last year, whatever is asked
    from dialer.record.retention import apply_policies

    with pytest.raises(ValueError, match="last 365 days"):
        apply_policies(record, {"long": now - timedelta(days=30)}, KEY, now)


def retention_run(client: redis.Redis, record: Record, at: datetime):
    from dialer.record.retention import run_scheduled

    return run_scheduled(client, record, at, KEY)


def test_serve_skips_a_tenant_with_a_gap_and_archives_the_others(redis_client: redis.Redis, record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    fill(audit, "broken", 3)
    fill(audit, "fine", 3)
    redis_client.xtrim(stream_key("broken"), minid="2-0", approximate=False)  # a hole no retention made
    archiver = Archiver(redis_client, record, secret_key=KEY)
    passes = iter(range(3))
    archiver.serve(interval=0.01, should_stop=lambda: next(passes, None) is None)
    assert counts(record, "fine")["audit_archive"] == audit.head("fine").seq
    assert counts(record, "broken")["audit_archive"] == 0


def test_serve_looks_for_new_tenants_only_every_rescan_period(redis_client: redis.Redis, record: Record) -> None:
    """The keyspace SCAN for tenants runs once per rescan period, not every pass (it cost the gate's Redis more
    than the copy itself); a tenant whose trail appears in between is archived after the next look."""
    audit = AuditLog(redis_client, KEY)
    fill(audit, "early", 3)

    def serve(step: float) -> None:
        calls = [0]
        clock = [0.0]

        def should_stop() -> bool:
            calls[0] += 1
            if calls[0] == 3:
                fill(audit, "late", 3)  # appears after the first look
            return calls[0] > 12

        def monotonic() -> float:
            clock[0] += step
            return clock[0]

        Archiver(redis_client, record, secret_key=KEY).serve(interval=0.0, should_stop=should_stop, rescan=30.0,
                                                              monotonic=monotonic)

    serve(step=0.0)  # the clock never reaches the next look: the new tenant waits (in Redis)
    assert counts(record, "early")["audit_archive"] == audit.head("early").seq
    assert counts(record, "late")["audit_archive"] == 0
    serve(step=31.0)  # every pass is a rescan period after the last look
    assert counts(record, "late")["audit_archive"] == audit.head("late").seq


def test_subject_access_includes_archived_entries(redis_client: redis.Redis, record: Record) -> None:
    from dialer import privacy

    audit = AuditLog(redis_client, KEY)
    phone = "+33145678901"
    ref = audit.person_ref(phone)
    audit.append_many("t1", [
        AuditEvent("gate_decision", "gate", {"mode": "reserve", "campaign": "c1", "contact_id": None, "person": ref,
                                             "allowed": False, "reasons": [["QUIET_HOURS", "r", None]]}, T0),
        AuditEvent("optout", "api:t1", {"person": ref, "scope": "company", "source": "api"}, T0),
        AuditEvent("api", "api:t1", {"n": 1}, T0)])
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0)).archive_tenant("t1")
    assert redis_client.xlen(stream_key("t1")) == 1  # the decision and the opt-out are only in the record now
    without = privacy.access(redis_client, "t1", phone=phone, at=T0, secret_key=KEY, audit_request=False)
    assert without["audit"] == []
    found = privacy.access(redis_client, "t1", phone=phone, at=T0, secret_key=KEY, audit_request=False,
                           record=record)
    assert [(e["seq"], e["kind"]) for e in found["audit"]] == [(1, "gate_decision"), (2, "optout")]
