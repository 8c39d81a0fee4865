"""The hash-chained audit trail against a real redis-server: appends, tampering, concurrency, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import redis

from dialer.audit import AuditEvent, AuditLog, link_hash, stream_key
from tests.race_support import race_context

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
KEY = "test-secret-key"


def fill(log: AuditLog, tenant: str, n: int) -> None:
    log.append_many(tenant, [
        AuditEvent("gate_decision", "gate", {"n": i, "allowed": i % 2 == 0, "reasons": ["FREQUENCY_CAP"]},
                   T0 + timedelta(seconds=i))
        for i in range(n)
    ])


def rewrite(client: redis.Redis, tenant: str, change) -> None:
    """Tamper as someone with write access to Redis would: rebuild the stream with `change` applied
    to the list of (id, fields)."""
    key = stream_key(tenant)
    entries = [(i.decode(), {k.decode(): v.decode() for k, v in f.items()}) for i, f in client.xrange(key)]
    entries = change(entries)
    client.delete(key)
    for entry_id, fields in entries:
        client.xadd(key, fields, id=entry_id)


def test_appends_form_a_chain_that_verifies(redis_client):
    log = AuditLog(redis_client, KEY)
    first = log.append("t1", "optout", "api:key-1", {"person": log.person_ref("+33145678901")}, T0)
    assert first.seq == 1
    fill(log, "t1", 9)
    assert log.head("t1").seq == 10
    entries = list(log.entries("t1"))
    assert [e.seq for e in entries] == list(range(1, 11))
    assert entries[0].kind == "optout" and entries[0].at == T0 and entries[1].payload["n"] == 0
    result = log.verify("t1")
    assert result.ok and result.checked == 10 and result.head_seq == 10
    assert log.verify("other").ok and log.verify("other").checked == 0  # tenants are separate chains
    assert redis_client.xlen(stream_key("other")) == 0


def test_unknown_kind_is_refused(redis_client):
    with pytest.raises(ValueError, match="audit kind"):
        AuditLog(redis_client).append("t1", "whatever", "x", {}, T0)


def test_person_ref_is_keyed_and_needs_the_key(redis_client):
    a, b = AuditLog(redis_client, KEY), AuditLog(redis_client, "other-key")
    assert a.person_ref("+33145678901") == a.person_ref("+33145678901") != b.person_ref("+33145678901")
    assert "45678901" not in a.person_ref("+33145678901")
    assert AuditLog.mask("+33145678901") == "+33*******01"
    with pytest.raises(ValueError, match="secret_key"):
        AuditLog(redis_client).person_ref("+33145678901")


def test_edited_entry_is_named(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 10)

    def edit(entries):
        payload = json.loads(entries[4][1]["payload"])
        payload["allowed"] = not payload["allowed"]
        entries[4][1]["payload"] = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return entries

    rewrite(redis_client, "t1", edit)
    result = log.verify("t1")
    assert not result.ok and result.bad_seq == 5 and "altered" in result.problem


def test_edit_with_recomputed_hashes_is_caught_at_the_next_link_or_head(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 6)

    def edit(entries):  # the forger fixes body and hash of entry 3, but cannot fix the rest without rewriting all
        f = entries[2][1]
        f["actor"] = "someone-else"
        from dialer.audit import body_hash
        f["body"] = body_hash(f["at"], f["kind"], f["actor"], f["payload"])
        f["hash"] = link_hash(f["prev"], f["seq"], f["written"], f["body"])
        return entries

    rewrite(redis_client, "t1", edit)
    result = log.verify("t1")
    assert not result.ok and result.bad_seq == 4


def test_deleted_entry_is_named(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 10)
    redis_client.xdel(stream_key("t1"), "7-0")
    result = log.verify("t1")
    assert not result.ok and result.bad_seq == 7 and "missing" in result.problem


def test_reordered_entries_are_named(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 10)

    def swap_contents(entries):  # keep the ids in order, swap what they hold
        entries[3], entries[4] = (entries[3][0], entries[4][1]), (entries[4][0], entries[3][1])
        return entries

    rewrite(redis_client, "t1", swap_contents)
    result = log.verify("t1")
    assert not result.ok and result.bad_seq == 4


def test_reordered_and_renumbered_entries_are_named(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 10)

    def swap_and_renumber(entries):
        a, b = dict(entries[3][1]), dict(entries[4][1])
        a["seq"], b["seq"] = b["seq"], a["seq"]
        entries[3], entries[4] = (entries[3][0], b), (entries[4][0], a)
        return entries

    rewrite(redis_client, "t1", swap_and_renumber)
    result = log.verify("t1")
    assert not result.ok and result.bad_seq == 4 and "previous entry" in result.problem


def test_truncation_is_named(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 10)
    redis_client.xtrim(stream_key("t1"), maxlen=7, approximate=False)  # XTRIM keeps the newest: cuts the start
    result = log.verify("t1")
    assert not result.ok and result.bad_seq == 1
    log2 = AuditLog(redis_client, KEY)
    fill(log2, "t2", 10)
    redis_client.xdel(stream_key("t2"), "9-0", "10-0")  # cut the end
    result = log2.verify("t2")
    assert not result.ok and result.bad_seq == 9 and "truncated" in result.problem


def test_truncation_with_head_rewound_is_caught_by_an_anchor(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 10)
    log.anchor("t1")
    redis_client.xdel(stream_key("t1"), "9-0", "10-0")
    last = redis_client.xrange(stream_key("t1"), "8-0", "8-0")[0][1]
    redis_client.hset("t:{t1}:audit:head", mapping={"seq": "8", "hash": last[b"hash"]})  # forger rewinds the head
    result = log.verify("t1")
    assert not result.ok and result.bad_seq == 9 and "anchored" in result.problem


def test_whole_chain_rewrite_is_caught_by_an_anchor(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 5)
    log.anchor("t1")

    def recompute_all(entries):  # a consistent forgery: every body and hash recomputed
        from dialer.audit import GENESIS, body_hash
        prev = GENESIS
        entries[1][1]["actor"] = "forger"
        for _, f in entries:
            f["prev"] = prev
            f["body"] = body_hash(f["at"], f["kind"], f["actor"], f["payload"])
            f["hash"] = prev = link_hash(prev, f["seq"], f["written"], f["body"])
        return entries

    rewrite(redis_client, "t1", recompute_all)
    new_head = redis_client.xrange(stream_key("t1"))[-1][1][b"hash"].decode()
    redis_client.hset("t:{t1}:audit:head", "hash", new_head)
    result = log.verify("t1")  # the chain is consistent, the keyed anchor is not
    assert not result.ok and result.bad_seq == 5 and "anchored" in result.problem
    redis_client.hset("t:{t1}:audit:anchors", "5", f"{new_head}:{'0' * 64}")  # the forger cannot sign
    result = log.verify("t1")
    assert not result.ok and result.bad_seq == 5 and "signature" in result.problem


def test_lost_head_refuses_to_fork_the_chain(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 3)
    redis_client.delete("t:{t1}:audit:head")
    with pytest.raises(redis.ResponseError, match="head missing"):
        fill(log, "t1", 1)
    assert redis_client.xlen(stream_key("t1")) == 3


def test_retention_trim_keeps_the_rest_verifiable(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 10)
    log.anchor("t1")
    assert log.trim_before("t1", 6) == 5
    fill(log, "t1", 2)
    result = log.verify("t1")
    assert result.ok and result.checked == 7 and result.head_seq == 12
    redis_client.xdel(stream_key("t1"), "6-0")
    assert log.verify("t1").bad_seq == 6


def test_start_cut_off_and_disguised_as_retention_is_caught(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 10)
    log.anchor("t1")
    seventh = {k.decode(): v.decode() for k, v in redis_client.xrange(stream_key("t1"), "7-0", "7-0")[0][1].items()}
    redis_client.xtrim(stream_key("t1"), minid="7-0", approximate=False)
    redis_client.hset("t:{t1}:audit:base", mapping={"seq": "6", "hash": seventh["prev"]})  # forged, unsigned
    result = log.verify("t1")
    assert not result.ok and result.bad_seq == 7 and "not signed" in result.problem
    with pytest.raises(ValueError, match="no entry 3"):
        log.trim_before("t1", 3)


def _append_worker(url: str, tenant: str, worker: int, n: int) -> None:
    client = redis.Redis.from_url(url)
    log = AuditLog(client, KEY)
    for i in range(n):
        if i % 5 == 0:
            log.append_many(tenant, [AuditEvent("import", f"w{worker}", {"i": i, "j": j}, T0) for j in range(3)])
        else:
            log.append(tenant, "gate_decision", f"w{worker}", {"i": i}, T0)
    client.close()


def test_concurrent_appends_from_processes_form_one_chain(redis_url, redis_client):
    ctx = race_context()
    workers = [ctx.Process(target=_append_worker, args=(redis_url, "t1", w, 60)) for w in range(6)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    log = AuditLog(redis_client, KEY)
    per_worker = 48 + 12 * 3
    result = log.verify("t1")
    assert result.ok and result.checked == 6 * per_worker
    entries = list(log.entries("t1"))
    expected = [(i, j) for i in range(60) for j in ((0, 1, 2) if i % 5 == 0 else (None,))]
    for w in range(6):  # each process's entries kept the order it appended them in
        mine = [(e.payload["i"], e.payload.get("j")) for e in entries if e.actor == f"w{w}"]
        assert mine == expected
    batches = [i for i, e in enumerate(entries) if e.kind == "import" and e.payload["j"] == 0]
    for start in batches:
        assert [entries[start + k].payload["j"] for k in range(3)] == [0, 1, 2]
        assert len({entries[start + k].actor for k in range(3)}) == 1


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DIALER_REDIS_URL": url, "DIALER_SECRET_KEY": KEY}
    env.pop("DIALER_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "dialer", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_verify_exit_status_names_the_seq(redis_url, redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 8)
    ok = run_cli(redis_url, "audit", "verify", "--tenant", "t1")
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout and "8 entries" in ok.stdout
    assert run_cli(redis_url, "audit", "anchor", "--tenant", "t1").returncode == 0
    redis_client.xdel(stream_key("t1"), "3-0")
    bad = run_cli(redis_url, "audit", "verify", "--tenant", "t1")
    assert bad.returncode == 1
    assert "seq 3" in bad.stdout
    shown = run_cli(redis_url, "audit", "show", "--tenant", "t1", "--limit", "2")
    lines = [json.loads(x) for x in shown.stdout.splitlines()]
    assert [x["seq"] for x in lines] == [1, 2]


def test_damaged_entries_can_still_be_listed(redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "t1", 3)

    def damage(entries):
        entries[1][1]["payload"] = "{not json"
        entries[1][1]["at"] = "yesterday"
        return entries

    rewrite(redis_client, "t1", damage)
    listed = list(log.entries("t1"))
    assert [e.seq for e in listed] == [1, 2, 3] and listed[1].payload == {"_raw": "{not json"}
    assert log.verify("t1").bad_seq == 2


def test_cli_verify_all_tenants(redis_url, redis_client):
    log = AuditLog(redis_client, KEY)
    fill(log, "acme", 3)
    fill(log, "zeta", 4)
    ok = run_cli(redis_url, "audit", "verify", "--all")
    assert ok.returncode == 0 and "acme: audit trail intact: 3 entries" in ok.stdout and "zeta:" in ok.stdout
    redis_client.xdel(stream_key("zeta"), "4-0")
    bad = run_cli(redis_url, "audit", "verify", "--all")
    assert bad.returncode == 1 and "zeta: audit trail BROKEN at seq 4" in bad.stdout


async def test_gateway_trail_events_join_the_same_chain(redis_url, redis_client):
    import redis.asyncio as aioredis

    from dialer.audit import trail_sink
    from gateway import trail

    client = aioredis.Redis.from_url(redis_url)
    previous = trail.set_sink(trail_sink)
    try:
        await trail.record(client, "t1", "token.use", actor="user:7", token_id="tok-1", at=T0, route="/api/x")
        AuditLog(redis_client, KEY).append("t1", "consent", "api:tok-1", {"evidence": "ref-1"}, T0)
        await client.script_flush()  # the next append has to load the script again
        await trail.record(client, "t1", "campaign.pause", actor="user:7", at=T0, campaign="c1")
        await trail.record(client, "t1", "users.create", actor="user:1", at=T0)
    finally:
        trail.set_sink(previous)
        await client.aclose()
    log = AuditLog(redis_client, KEY)
    entries = list(log.entries("t1"))
    assert [(e.kind, e.payload.get("action")) for e in entries] == [
        ("token_use", "token.use"), ("consent", None), ("campaign_control", "campaign.pause"), ("api", "users.create")]
    assert entries[0].payload == {"action": "token.use", "token": "tok-1", "route": "/api/x"}
    assert entries[0].actor == "user:7" and entries[0].at == T0
    assert log.verify("t1").ok
