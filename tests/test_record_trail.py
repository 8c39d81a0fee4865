"""The audit trail read as one sequence, the part archived in the record and the Redis tail (dialer/record/trail.py):
what `GET /v1/audit`, `dialer audit show` and the gate-check "why" read. On SQLite and on the PostgreSQL the tests
start, with a real redis-server; the archiver trims Redis so the oldest entries are in the record only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import redis

from dialer.audit import AuditLog
from dialer.cli import main
from dialer.record.archiver import Archiver
from dialer.record.relink import confirm
from dialer.record.store import Record
from dialer.record.trail import newest_first, oldest_first
from gateway.api.audit import read_page
from gateway.api.gatecheck import last_decision
from tests.test_record_relink import KEY, T, events

OTHER = "globex"


def archived_and_trimmed(client: redis.Redis, record: Record) -> tuple[list[tuple[int, str]], Archiver]:
    """T: 15 entries archived and trimmed from Redis (it keeps the last archived one to link to), 5 more in Redis
    only; OTHER: 10 entries archived. Returns T's (seq, hash) as Redis had them, oldest first."""
    audit = AuditLog(client, KEY)
    audit.append_many(T, events("old", 3))
    audit.append_many(OTHER, events("else", 2))
    service = Archiver(client, record, secret_key=KEY, tail=timedelta(0), batch=7)
    service.run_once([T, OTHER])
    audit.append_many(T, events("new", 1))
    whole = [(e.seq, e.hash) for e in audit.entries(T)]
    assert whole[0][0] == 15  # 1..14 are in the record only
    everything = [(seq, h) for seq, h in record.query(
        "SELECT seq, hash FROM audit_archive WHERE tenant = %s AND seq < 15 ORDER BY seq", (T,))] + whole
    return [(int(s), str(h)) for s, h in everything], service


def test_one_sequence_newest_and_oldest_first_tenant_by_tenant(redis_client: redis.Redis, record: Record) -> None:
    expected, _ = archived_and_trimmed(redis_client, record)
    assert [s for s, _ in expected] == list(range(1, 21))
    newest = [(e.seq, e.hash) for e in newest_first(redis_client, record, T, chunk=4)]
    assert newest == expected[::-1]  # each once, the record's and Redis's parts joined at seq 15
    assert [(e.seq, e.hash) for e in oldest_first(redis_client, record, T, first=3, chunk=4)] == expected[2:]
    assert [e.seq for e in newest_first(redis_client, record, T, before=16, chunk=4)] == list(range(15, 0, -1))
    theirs = {e.hash for e in newest_first(redis_client, record, OTHER)}
    assert len(theirs) == 10 and not theirs & {h for _, h in expected}  # another tenant's trail is its own
    assert [e.seq for e in newest_first(redis_client, None, T)] == list(range(20, 14, -1))  # Redis only


def test_the_api_pages_through_both_parts(redis_client: redis.Redis, record: Record) -> None:
    expected, _ = archived_and_trimmed(redis_client, record)
    seen, before = [], None
    while True:
        page = read_page(redis_client, record, T, {"limit": 6, **({"before": before} if before else {})})
        seen += [(item["seq"], item["hash"]) for item in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == expected[::-1]
    outcomes = read_page(redis_client, record, T, {"kind": "call_outcome", "limit": 100})["items"]
    assert [i["seq"] for i in outcomes] == [17, 12, 7, 2]  # one per call, in both parts
    assert outcomes[-1]["payload"]["call_id"] == "old-call0"


def test_after_a_confirmed_break_the_sequence_goes_on(redis_client: redis.Redis, record: Record) -> None:
    _, service = archived_and_trimmed(redis_client, record)
    service.run_once([T])  # the 5 new entries archived too: 20 in the record
    redis_client.flushall()  # a data loss: Redis's trail restarts at 1
    audit = AuditLog(redis_client, KEY)
    audit.append_many(T, events("after", 1))
    confirm(audit, record, T, by="cli:ops", reason="test", at=datetime.now(UTC))  # appends the resume entry
    seqs = [e.seq for e in newest_first(redis_client, record, T, chunk=3)]
    assert seqs == list(range(26, 0, -1))  # 20 archived, then Redis's 6 numbered from 21 on, not from 1
    assert [e.seq for e in oldest_first(redis_client, record, T, first=19)] == list(range(19, 27))


def test_the_why_finds_a_decision_only_the_record_holds(redis_client: redis.Redis, record: Record) -> None:
    archived_and_trimmed(redis_client, record)
    newest = last_decision(redis_client, T, "c1", "p0", "", record)
    assert newest is not None and newest["seq"] == 16 and newest["call_id"] == "new-call0"  # Redis's, newest first
    found = last_decision(redis_client, T, "c1", "nobody", "old2", record)
    assert found is not None and found["seq"] == 11 and found["call_id"] == "old-call2"
    assert found["at"] == "2026-11-30T09:02:00Z" and found["allowed"] is True
    assert last_decision(redis_client, T, "c1", "nobody", "old2") is None  # Redis alone no longer has it


def test_dialer_audit_show_prints_the_archived_part(redis_client: redis.Redis, record: Record, redis_url: str,
                                                    monkeypatch, capsys) -> None:
    expected, _ = archived_and_trimmed(redis_client, record)
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.setenv("DIALER_SECRET_KEY", KEY)
    capsys.readouterr()
    assert main(["audit", "show", "--tenant", T, "--from", "2", "--limit", "16"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["seq"], x["hash"]) for x in lines] == expected[1:17]
    assert main(["audit", "show", "--tenant", T, "--redis-only"]) == 0
    assert [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()] == list(range(15, 21))
