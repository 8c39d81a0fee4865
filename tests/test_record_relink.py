"""After a Redis data loss: the archiver refuses the forked trail until an operator confirms the loss, then the
record holds one signed, confirmed break and the archive goes on with Redis's new trail, nothing archived changed,
nothing copied twice (issue 18; dialer/record/relink.py). A real redis-server is killed and restarted empty, or
FLUSHALLed, or restarted from an older snapshot (a failover that lost the last writes); on SQLite and on the
PostgreSQL the tests start."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from dialer.audit import AuditEvent, AuditLog
from dialer.record.archiver import Archiver, ChainGap
from dialer.record.relink import Break, RelinkError, breaks, confirm, diagnose
from dialer.record.store import Record
from dialer.record.verify import verify_tenant

KEY = "k" * 32
T = "acme"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TABLES = ("audit_archive", "gate_decisions", "call_records", "consents", "optouts", "usage_records")



def events(tag: str, n: int) -> list[AuditEvent]:
    """n calls' worth of entries: a decision, its outcome, a consent, an opt-out, a usage increment each."""
    out = []
    for i in range(n):
        at = T0 + timedelta(minutes=i)
        call = f"{tag}-call{i}"
        out += [
            AuditEvent("gate_decision", "gate", {"mode": "reserve", "campaign": "c1", "contact_id": f"{tag}{i}",
                                                  "person": f"p{i}", "allowed": True, "reasons": [],
                                                  "call_id": call}, at),
            AuditEvent("call_outcome", "engine", {"call_id": call, "outcome": "answered", "person": f"p{i}",
                                                  "call": {"talk_s": 30.0, "live": True}}, at),
            AuditEvent("consent", "api:t1", {"person": f"{tag}p{i}", "action": "grant", "purpose": "telemarketing",
                                             "evidence_ref": f"{tag}-ev{i}", "written": True}, at),
            AuditEvent("optout", "api:t1", {"person": f"{tag}o{i}", "scope": "company", "source": "api"}, at),
            AuditEvent("usage", "engine", {"day": "2026-11-30", "call_id": call, "campaign": "c1",
                                           "added": {"attempts": 1, "connected": 1}}, at),
        ]
    return out


def counts(record: Record) -> dict[str, int]:
    return {t: int(record.query(f"SELECT count(*) FROM {t} WHERE tenant = %s", (T,))[0][0]) for t in TABLES}


def archived_rows(record: Record, upto: int) -> list[tuple]:
    return [tuple(str(v) for v in r) for r in record.query(
        "SELECT seq, prev, hash, body FROM audit_archive WHERE tenant = %s AND seq <= %s ORDER BY seq", (T, upto))]


def archiver(client: redis.Redis, record: Record) -> Archiver:
    return Archiver(client, record, secret_key=KEY, tail=timedelta(hours=24), batch=7)


def one_line_naming_the_command(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and f"dialer record relink --tenant {T}" in text, text
    return text


def test_redis_restarted_empty_archiving_goes_on_after_the_confirmed_break(redis_factory, record: Record) -> None:
    server = redis_factory.start()
    client = redis.Redis.from_url(server.url)
    audit = AuditLog(client, KEY)
    audit.append_many(T, events("old", 4))  # 20 entries
    assert archiver(client, record).archive_tenant(T).archived_seq == 20
    before = counts(record)
    old_rows = archived_rows(record, 20)

    server.kill()  # no persistence: the server comes back empty
    redis_factory.start(port=server.port)
    client = redis.Redis.from_url(server.url)
    audit = AuditLog(client, KEY)
    audit.append_many(T, events("new", 2))  # seqs 1..10 again: they overlap the archived 1..20

    # without the confirmation: refused, every pass, one line naming the command; nothing copied
    for _ in range(2):
        with pytest.raises(ChainGap) as refused:
            archiver(client, record).archive_tenant(T)
        one_line_naming_the_command(refused.value)
    assert counts(record) == before
    assert not verify_tenant(audit, record, T).ok

    b = confirm(audit, record, T, by="cli:ops", reason="redis restarted without persistence",
                at=datetime.now(UTC))
    assert (b.last_seq, b.fork_seq, b.first_seq, b.seq) == (20, 0, 1, 21)
    assert b.last_hash == old_rows[-1][2] and b.first_prev == "0" * 40

    result = archiver(client, record).archive_tenant(T)
    assert result.copied == 11 and result.archived_seq == 31  # the 10 new entries and the confirmation's own
    assert archiver(client, record).archive_tenant(T).copied == 0  # nothing twice
    after = counts(record)
    assert after["audit_archive"] == 31
    for table in ("gate_decisions", "call_records", "consents", "optouts", "usage_records"):
        assert after[table] == before[table] + 2, table  # each new call's row, once, next to the archived ones
    assert archived_rows(record, 20) == old_rows  # nothing archived changed
    seqs = [int(r[0]) for r in record.query("SELECT seq FROM consents WHERE tenant = %s ORDER BY seq", (T,))]
    assert len(seqs) == len(set(seqs)) == 6

    verified = verify_tenant(audit, record, T)
    assert verified.ok and len(verified.breaks) == 1, verified
    assert "1 confirmed break" in str(verified) and "cli:ops" in str(verified)
    audit.append_many(T, events("later", 1))  # and it goes on
    assert archiver(client, record).archive_tenant(T).copied == 5
    verified = verify_tenant(audit, record, T)
    assert verified.ok and len(verified.breaks) == 1 and verified.head_seq == 16
    [entry] = [e for e in audit.entries(T) if e.payload.get("action") == "record_relink"]
    assert entry.actor == "cli:ops" and entry.payload["record_seq"] == 20
    client.close()


def test_a_failover_that_lost_the_last_entries_is_detected_and_relinked(redis_factory, record: Record,
                                                                        tmp_path: Path) -> None:
    """A replica that missed the last writes, as a restart from an older snapshot: Redis's head falls behind the
    archive (refused at once, before any new entry), then new entries reuse the lost seqs."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = redis_factory.start(directory=str(directory))
    client = redis.Redis.from_url(server.url)
    audit = AuditLog(client, KEY)
    audit.append_many(T, events("old", 2))  # 10 entries
    client.save()  # what the replica had
    audit.append_many(T, events("lost", 1))  # 11..15: archived, then lost by Redis
    assert archiver(client, record).archive_tenant(T).archived_seq == 15
    before = counts(record)
    old_rows = archived_rows(record, 15)

    server.kill()
    redis_factory.start(port=server.port, directory=str(directory))  # loads the older snapshot
    client = redis.Redis.from_url(server.url)
    audit = AuditLog(client, KEY)
    assert audit.head(T).seq == 10
    with pytest.raises(ChainGap) as refused:  # seen with nothing new in Redis yet
        archiver(client, record).archive_tenant(T)
    assert "ends at seq 10" in one_line_naming_the_command(refused.value)
    audit.append_many(T, events("new", 1))  # 11..15 again, other entries
    with pytest.raises(ChainGap) as refused:
        archiver(client, record).archive_tenant(T)
    one_line_naming_the_command(refused.value)

    fork = diagnose(audit, record, T)
    assert fork is not None and fork.fork_seq == 10 and fork.first == (11, old_rows[9][2], fork.first[2])
    b = confirm(audit, record, T, by="cli:ops", reason="failover", at=datetime.now(UTC))
    assert (b.last_seq, b.fork_seq, b.first_seq, b.seq, b.shift) == (15, 10, 11, 16, 5)

    assert archiver(client, record).archive_tenant(T).archived_seq == 21  # 5 new entries + the confirmation
    assert archiver(client, record).archive_tenant(T).copied == 0
    after = counts(record)
    for table in ("gate_decisions", "call_records", "consents", "optouts", "usage_records"):
        assert after[table] == before[table] + 1, table
    assert archived_rows(record, 15) == old_rows
    verified = verify_tenant(audit, record, T)
    assert verified.ok and len(verified.breaks) == 1, verified
    client.close()


def test_flushall_mid_service_the_archiver_refuses_until_relinked_then_goes_on(redis_factory, record: Record,
                                                                                caplog) -> None:
    """The archiver running as a service: a FLUSHALL mid-way stops it for the tenant with one logged line; after
    `dialer record relink` (its function) it copies the new trail without a restart."""
    server = redis_factory.start()
    client = redis.Redis.from_url(server.url)
    audit = AuditLog(client, KEY)
    audit.append_many(T, events("old", 3))
    service = Archiver(redis.Redis.from_url(server.url), record, secret_key=KEY, tail=timedelta(hours=24))
    stop = threading.Event()
    worker = threading.Thread(target=service.serve, kwargs={"interval": 0.05, "should_stop": stop.is_set,
                                                            "tenants": [T]}, daemon=True)
    caplog.set_level(logging.ERROR, logger="dialer.record.archiver")
    worker.start()
    try:
        wait_for(lambda: service.progress(T)[0] == 15)
        client.flushall()
        audit.append_many(T, events("new", 1))
        wait_for(lambda: any("dialer record relink --tenant acme" in r.getMessage() for r in caplog.records))
        # the new trail grows while the archiver waits (the line once named Redis's end, so it was said again)
        audit.append_many(T, events("meanwhile", 1))
        passes = service_passes(service, 5)
        assert service.progress(T)[0] == 15, passes
        confirm(audit, record, T, by="cli:ops", reason="flushall by mistake", at=datetime.now(UTC))
        # the new trail continues the record (a failure says whether the service thread was still alive)
        wait_for(lambda: service.progress(T)[0] == 15 + audit.head(T).seq,
                 why=lambda: f"worker alive {worker.is_alive()}, record seq {service.progress(T)[0]}, Redis head "
                             f"{audit.head(T).seq}, errors {[r.getMessage() for r in caplog.records][-3:]}")
    finally:
        stop.set()
        worker.join(30)
    refusals = [r for r in caplog.records if "relink" in r.getMessage()]
    assert len(refusals) == 1  # said once, not every pass
    verified = verify_tenant(audit, record, T)
    assert verified.ok and len(verified.breaks) == 1, verified
    client.close()


def test_the_service_survives_an_unexpected_error(redis_client: redis.Redis, record: Record, caplog) -> None:
    """An error the service does not expect (a driver error it does not map, a bug) in one tenant's pass is logged
    with its traceback and the pass retried: the service thread does not die (a dead one archives nothing more,
    silently, until a restart)."""
    audit = AuditLog(redis_client, KEY)
    audit.append_many(T, events("old", 3))
    service = Archiver(redis_client, record, secret_key=KEY, tail=timedelta(hours=24))
    original, failed = service.archive_tenant, []

    def failing_twice(tenant: str):
        if len(failed) < 2:
            failed.append(tenant)
            raise TypeError("injected: an error the service does not expect")
        return original(tenant)

    service.archive_tenant = failing_twice  # type: ignore[method-assign]
    stop = threading.Event()
    worker = threading.Thread(target=service.serve, kwargs={"interval": 0.05, "should_stop": stop.is_set,
                                                            "tenants": [T]}, daemon=True)
    caplog.set_level(logging.ERROR, logger="dialer.record.archiver")
    worker.start()
    try:
        wait_for(lambda: service.progress(T)[0] == 15, why=lambda: f"worker alive {worker.is_alive()}")
    finally:
        stop.set()
        worker.join(30)
    said = [r for r in caplog.records if "injected" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is not None  # once, with its traceback
    assert len(failed) == 2


def service_passes(service: Archiver, n: int) -> int:
    """Wait until a serving archiver has made `n` more passes over the tenant."""
    seen = [0]
    original = service.archive_tenant

    def counting(tenant: str):
        seen[0] += 1
        return original(tenant)

    service.archive_tenant = counting  # type: ignore[method-assign]
    try:
        wait_for(lambda: seen[0] >= n)
    finally:
        service.archive_tenant = original  # type: ignore[method-assign]
    return seen[0]


def wait_for(condition, deadline: float = 60.0, why=lambda: "") -> None:
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not reached {why()}")


def test_relink_refuses_what_is_not_a_data_loss(redis_client: redis.Redis, record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    audit.append_many(T, events("a", 1))
    archiver(redis_client, record).archive_tenant(T)
    with pytest.raises(RelinkError, match="continues the record"):
        confirm(audit, record, T, by="cli:ops", reason="", at=datetime.now(UTC))
    with pytest.raises(RelinkError, match="secret_key"):
        confirm(AuditLog(redis_client), record, T, by="cli:ops", reason="", at=datetime.now(UTC))
    assert breaks(record, T) == []


def test_a_forged_or_altered_break_fails_verify(redis_client: redis.Redis, record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    audit.append_many(T, events("old", 1))
    archiver(redis_client, record).archive_tenant(T)
    redis_client.flushall()
    audit.append_many(T, events("new", 1))
    with pytest.raises(ChainGap):
        archiver(redis_client, record).archive_tenant(T)
    b = confirm(audit, record, T, by="cli:ops", reason="lost", at=datetime.now(UTC))
    archiver(redis_client, record).archive_tenant(T)
    assert verify_tenant(audit, record, T).ok
    # a second break written without the key (someone hiding a cut as a confirmed loss)
    forged = Break(**{**b.__dict__, "seq": 99, "first_hash": "f" * 40, "mac": "0" * 64})
    with record.transaction() as tx:
        tx.execute(f"INSERT INTO audit_breaks ({', '.join(Break.COLUMNS)}) VALUES "
                   f"({', '.join(['%s'] * len(Break.COLUMNS))})",
                   [*(getattr(forged, c) for c in Break.COLUMNS[:-2]), record.ts(datetime.now(UTC)), forged.mac])
    result = verify_tenant(audit, record, T)
    assert not result.ok and "not signed" in result.problem


def test_the_break_row_is_append_only(redis_client: redis.Redis, record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    audit.append_many(T, events("old", 1))
    archiver(redis_client, record).archive_tenant(T)
    redis_client.flushall()
    confirm(audit, record, T, by="cli:ops", reason="lost", at=datetime.now(UTC))
    with pytest.raises(Exception, match="append-only"), record.transaction() as tx:
        tx.execute("UPDATE audit_breaks SET confirmed_by = %s WHERE tenant = %s", ("someone", T))
    with pytest.raises(Exception, match="append-only"), record.transaction() as tx:
        tx.execute("DELETE FROM audit_breaks WHERE tenant = %s", (T,))


@pytest.mark.parametrize("loss", ["restart", "failover"])
def test_redis_trimmed_after_the_break_still_verifies_as_one_chain(redis_factory, record: Record, tmp_path: Path,
                                                                   loss: str) -> None:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = redis_factory.start(directory=str(directory))
    client = redis.Redis.from_url(server.url)
    audit = AuditLog(client, KEY)
    audit.append_many(T, events("old", 2))
    if loss == "failover":
        client.save()
    audit.append_many(T, events("lost", 1))
    archiver(client, record).archive_tenant(T)
    server.kill()
    if loss == "restart":
        for name in directory.iterdir():
            name.unlink() if name.is_file() else None
    redis_factory.start(port=server.port, directory=str(directory))
    client = redis.Redis.from_url(server.url)
    audit = AuditLog(client, KEY)
    audit.append_many(T, events("new", 2))
    confirm(audit, record, T, by="cli:ops", reason=loss, at=datetime.now(UTC))
    now = datetime.now(UTC) + timedelta(seconds=5)
    trimming = Archiver(client, record, secret_key=KEY, tail=timedelta(0), batch=4, clock=lambda: now)
    result = trimming.archive_tenant(T)
    assert result.trimmed > 0 and result.archived_seq == 15 + 11
    verified = verify_tenant(audit, record, T)
    assert verified.ok and len(verified.breaks) == 1, verified
    audit.append_many(T, events("later", 1))
    assert trimming.archive_tenant(T).copied == 5
    assert verify_tenant(audit, record, T).ok


def test_the_commands_confirm_the_loss(redis_factory, record: Record, monkeypatch, capsys) -> None:
    """`dialer record relink` (refused without a terminal or --yes), and `dialer runtime resume --after-data-loss`,
    whose one confirmation relinks every forked tenant."""
    from dialer.cli import main

    server = redis_factory.start()
    client = redis.Redis.from_url(server.url)
    monkeypatch.setenv("DIALER_REDIS_URL", server.url)
    monkeypatch.setenv("DIALER_SECRET_KEY", KEY)
    monkeypatch.setenv("DIALER_RECORD_URL", record.url.url if record.dialect == "postgresql"
                       else f"sqlite:///{record.url.path}")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    audit = AuditLog(client, KEY)
    for tenant in (T, "globex"):
        audit.append_many(tenant, events("old", 1))
        Archiver(client, record, secret_key=KEY).archive_tenant(tenant)
    client.flushall()
    audit.append_many(T, events("new", 1))
    assert main(["record", "relink", "--tenant", T]) == 1
    assert "--yes" in capsys.readouterr().err
    assert main(["record", "relink", "--tenant", T, "--yes", "--reason", "restart"]) == 0
    assert "relinked" in capsys.readouterr().out
    assert main(["record", "relink", "--tenant", T, "--yes"]) == 0
    assert "nothing to relink" in capsys.readouterr().out
    # globex: a loss the operator confirms with the runtime's resume
    from dialer.runtime.datastate import DataState

    assert DataState(client, who="engine").beat() is True  # the marker is born now (the flush took the old one)
    client.hset("dialer:datastate", "halted", "Redis data vanished")
    assert main(["runtime", "resume", "--after-data-loss", "--yes", "--reason", "flushed"]) == 0
    out = capsys.readouterr().out
    assert "tenant globex relinked" in out, out
    for tenant in (T, "globex"):
        Archiver(client, record, secret_key=KEY).archive_tenant(tenant)
        verified = verify_tenant(audit, record, tenant)
        assert verified.ok and len(verified.breaks) == 1, verified
    client.close()


def test_a_promoted_replica_that_missed_the_last_writes(redis_factory, record: Record) -> None:
    """A real failover: a replica is promoted (REPLICAOF NO ONE) while the old master still takes writes that the
    archiver copies; the dialer then works on the promoted replica, whose trail forks after what it had."""
    master, replica = redis_factory.start(), redis_factory.start()
    old = redis.Redis.from_url(master.url)
    new = redis.Redis.from_url(replica.url)
    AuditLog(old, KEY).append_many(T, events("old", 2))  # 10 entries, replicated
    new.replicaof("127.0.0.1", master.port)
    wait_for(lambda: new.hget(f"t:{{{T}}}:audit:head", "seq") == b"10")
    new.replicaof("NO", "ONE")  # promoted: what the old master takes from now on never reaches it
    AuditLog(old, KEY).append_many(T, events("lost", 1))  # 11..15
    assert archiver(old, record).archive_tenant(T).archived_seq == 15
    before, old_rows = counts(record), archived_rows(record, 15)
    audit = AuditLog(new, KEY)
    audit.append_many(T, events("new", 2))  # 11..20 on the promoted replica: 11..15 reuse the lost seqs
    with pytest.raises(ChainGap) as refused:
        archiver(new, record).archive_tenant(T)
    assert "does not link to the archived entry 15" in one_line_naming_the_command(refused.value)
    b = confirm(audit, record, T, by="cli:ops", reason="failover to the replica", at=datetime.now(UTC))
    assert (b.fork_seq, b.first_seq, b.seq) == (10, 11, 16)
    assert archiver(new, record).archive_tenant(T).copied == 11
    assert archiver(new, record).archive_tenant(T).copied == 0
    after = counts(record)
    for table in ("gate_decisions", "call_records", "consents", "optouts", "usage_records"):
        assert after[table] == before[table] + 2, table
    assert archived_rows(record, 15) == old_rows
    verified = verify_tenant(audit, record, T)
    assert verified.ok and len(verified.breaks) == 1, verified
    old.close()
    new.close()


def test_a_second_loss_before_the_new_trail_was_archived(redis_client: redis.Redis, record: Record) -> None:
    audit = AuditLog(redis_client, KEY)
    audit.append_many(T, events("old", 1))
    archiver(redis_client, record).archive_tenant(T)
    redis_client.flushall()
    audit.append_many(T, events("first", 1))
    confirm(audit, record, T, by="cli:ops", reason="first loss", at=datetime.now(UTC))
    redis_client.flushall()  # lost again before the archiver copied anything of it
    audit.append_many(T, events("second", 1))
    with pytest.raises(ChainGap) as refused:
        archiver(redis_client, record).archive_tenant(T)
    one_line_naming_the_command(refused.value)
    confirm(audit, record, T, by="cli:ops", reason="second loss", at=datetime.now(UTC))
    assert archiver(redis_client, record).archive_tenant(T).archived_seq == 5 + 6
    verified = verify_tenant(audit, record, T)
    assert verified.ok and len(verified.breaks) == 2, verified
    assert "lost again" in verified.breaks[0] and "second loss" in verified.breaks[1]
    assert counts(record)["consents"] == 2
