"""Issue 8 coverage gaps found in review: campaign moves audited whoever makes them (the engine's own included),
keypress opt-outs heard by the runtime audited, an erased number in a running campaign's queue never originated
and its queue entry gone (and reported by access requests), finished campaigns' queues pruned by retention, the
retention scheduler enqueuing rounds on its own."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from dialer import privacy, retention
from dialer.audit import AuditLog, head_key
from dialer.campaigns import CampaignStore
from dialer.cli import main
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.contacts.store import contacts_for_phone
from dialer.facts import FactStore
from dialer.jobs import RETENTION, InlineWorker, get_queue
from dialer.offboarding import offboard
from dialer.runtime.engine import offset_clock
from dialer.runtime.loader import load_campaign
from dialer.runtime.queues import ContactQueue, QueuedContact
from dialer.suppression import configure
from tests.runtime_support import AT, SECRET_KEY, OriginateObserver, numbers, setup_campaign
from tests.test_runtime_engine import run_until_completed, start_pbx

T = "acme"
CONFIG = {"name": "spring", "caller_id": "+33162000000", "seller_name": "Acme", "lists": ["l1"], "queue": "q"}


@pytest.fixture(autouse=True)
def restore_process_state():
    """dialer.cli.main configures logging (on the test's captured stream) and the process's suppression key:
    put both back so that later tests see neither."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    configure(b"")


def everything(client: redis.Redis) -> dict[str, str]:
    """Every key in Redis with its whole value as text."""
    out = {}
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        kind = client.type(key).decode()
        read = {"string": client.get, "hash": client.hgetall, "list": lambda k: client.lrange(k, 0, -1),
                "set": client.smembers, "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
                "stream": client.xrange}[kind]
        out[key] = repr(read(key))
    return out


def control_entries(client: redis.Redis) -> list[tuple[str, str, str, str, str]]:
    return [(e.actor, e.payload["campaign"], e.payload["action"], e.payload["from"], e.payload["to"])
            for e in AuditLog(client).entries(T) if e.kind == "campaign_control"]


def test_every_campaign_change_is_audited_whoever_makes_it(redis_client):
    store = CampaignStore(redis_client)
    at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    c = store.create(T, CONFIG, by="user:sue", at=at).id
    store.update(T, c, {"pacing_ratio": 3.5}, by="user:sue", at=at)
    store.control(T, c, "start", by="cli:ops", at=at)
    store.control(T, c, "complete", by="engine", at=at)  # the engine's own move
    assert control_entries(redis_client) == [
        ("user:sue", c, "create", "", "draft"), ("user:sue", c, "configure", "draft", "draft"),
        ("cli:ops", c, "start", "draft", "running"), ("engine", c, "complete", "running", "completed")]
    [configure] = [e for e in AuditLog(redis_client).entries(T) if e.payload.get("action") == "configure"]
    assert configure.payload["changed"] == ["pacing_ratio"]  # names, not values
    assert AuditLog(redis_client).verify(T).ok
    # A move that cannot be audited (head lost) is not applied: the trail never misses a move that happened.
    redis_client.delete(head_key(T))
    with pytest.raises(redis.ResponseError, match="AUDIT head missing"):
        store.control(T, c, "archive", by="engine", at=at)
    assert store.get(T, c).status == "completed"


async def test_runtime_audits_keypress_optouts_and_engine_moves_and_never_calls_an_erased_number(
        redis_url, redis_client, tmp_path):
    phones = numbers(10, base="+331456720")  # last digits 0-9: ...7 opts out by keypress, ...5 answers
    campaign = setup_campaign(redis_client, tmp_path, phones, recording=True)  # ...7 presses during the notice
    facts = FactStore(redis_client)
    erased_optout, erased = phones[5], phones[6]
    facts.add_optout(T, erased_optout, at=AT, source="api", campaign=campaign, scope="campaign")
    queue = ContactQueue(redis_client, T, campaign)
    load_campaign(redis_client, queue, ["leads"], at=AT.timestamp())  # queued before the erasure, as in a running one
    assert redis_client.hget(queue.keys["phones"], erased) is not None
    held = privacy.access(redis_client, T, phone=erased, at=AT, secret_key=SECRET_KEY)  # the queue is data we hold
    [entry] = held["people"][0]["campaign_queues"]
    assert entry["campaign"] == campaign and entry["state"] == "ready" and entry["data"]["phone"] == erased
    text = privacy.access_csv(redis_client, T, phone=erased, at=AT, secret_key=SECRET_KEY)
    assert f"people,1,campaign_queues[0].data.phone,'{erased}" in text  # formula-safe quote
    for number in (erased_optout, erased):
        report = privacy.erase(redis_client, T, phone=number, actor="user:dpo", at=AT, secret_key=SECRET_KEY)
        assert report.removed["campaign_queue_entries"] == 1
    for number in (erased_optout, erased):  # the queue no longer holds the number
        assert redis_client.hget(queue.keys["phones"], number) is None
        assert [h.state for h in queue.find(e164=number)] == []
        assert not [h for h in queue.held_entries() if h.entry and h.entry.contact.phone == number]
    pbx = await start_pbx()
    try:
        async with OriginateObserver(pbx.port) as observer:
            await run_until_completed(redis_url, redis_client, T, campaign, pbx, offset_clock(AT, 60.0))
            await asyncio.sleep(0.3)
    finally:
        await pbx.stop()
    assert observer.by_number[erased_optout] == 0 and observer.by_number[erased] == 0
    assert observer.by_number[phones[5 - 1]] == 1  # the others were called
    finals = queue.final_states()
    assert sorted(f["reason"] for f in finals.values()).count("erased") == 2
    assert erased not in json.dumps(finals)
    # Nothing in Redis names the erased numbers any more, whatever the runtime wrote while the campaign ran
    # (the version counters expire within minutes: privacy.ERASED_VERSION_TTL).
    for number in (erased_optout, erased):
        left = [k for k, v in everything(redis_client).items() if number[3:] in k or number[3:] in v]
        assert left == [f"t:{{{T}}}:p:{number}:ver"], left
    audit = AuditLog(redis_client, SECRET_KEY)
    entries = list(audit.entries(T))
    assert facts.optout(T, phones[7]).source == "keypress"
    keypress = [e for e in entries if e.kind == "optout" and e.payload["source"] == "keypress"]
    assert [e.payload["person"] for e in keypress] == [audit.person_ref(phones[7])]
    engine_moves = [e.payload["action"] for e in entries if e.kind == "campaign_control" and e.actor == "engine"]
    assert engine_moves == ["complete"]
    assert audit.verify(T).ok


def test_retention_schedule_enqueues_a_round_every_period_for_the_worker(redis_url, redis_client):
    redis_client.sadd("tenants", T, "globex")
    proc = subprocess.Popen([sys.executable, "-m", "dialer", "retention", "schedule", "--every", "1"],
                            env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY, "PATH": ""},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    queue = get_queue(redis_client, RETENTION)
    try:
        deadline = time.monotonic() + 20
        while queue.count < 9 and time.monotonic() < deadline:  # three rounds of two tenants and the record
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    assert queue.count >= 9, proc.stderr.read().decode()[-2000:]
    instants = {job.args for job in queue.jobs}
    assert len({args[-1] for args in instants}) >= 3  # each round carries its own instant
    assert sum(job.func_name.endswith("record_retention_job") for job in queue.jobs) >= 3  # one per round
    assert InlineWorker([queue], connection=redis_client).work(burst=True)
    assert queue.count == 0


def test_retention_removes_the_numbers_from_a_finished_campaigns_queue(redis_client):
    store = CampaignStore(redis_client)
    at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    done, live = (store.create(T, CONFIG, by="user:sue", at=at).id for _ in range(2))
    for c in (done, live):
        ContactQueue(redis_client, T, c).add([QueuedContact(f"{c}-1", "+33145672101", "FR", "75011")],
                                            at=at.timestamp())
        store.control(T, c, "start", by="user:sue", at=at)
    store.control(T, done, "stop", by="user:sue", at=at)
    store.control(T, done, "complete", by="engine", at=at)
    # completed with its contact still ready (stopped): the loader's dedupe stays with it until retention
    # (dialer.campaigns.forget_loader_index: an erasure meanwhile files the final by `known`)
    assert redis_client.exists(f"t:{{{T}}}:campaign:{done}:q:phones")
    ContactQueue(redis_client, T, done).finalize_unqueued("x", "answered", "", at.timestamp())

    within = retention.run(redis_client, T, at + timedelta(days=89), secret_key=SECRET_KEY)
    assert within.removed["call_data"] == 0 and ContactQueue(redis_client, T, done).counts()["ready"] == 1
    report = retention.run(redis_client, T, at + timedelta(days=91), secret_key=SECRET_KEY)
    assert report.removed["call_data"] == 2  # its ready entry and its number in the loader's dedupe
    assert not redis_client.exists(f"t:{{{T}}}:campaign:{done}:q:ready:0", f"t:{{{T}}}:campaign:{done}:q:phones")
    assert ContactQueue(redis_client, T, done).final_states()  # reasons stay (no number in them)
    assert not [k for k, v in everything(redis_client).items() if f"campaign:{done}:" in k and "45672101" in v]
    assert ContactQueue(redis_client, T, live).counts()["ready"] == 1  # a running campaign keeps its queue


def test_offboarding_exports_the_campaign_queues_then_deletes_them(redis_client, tmp_path):
    store = CampaignStore(redis_client)
    at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    c = store.create(T, CONFIG, by="user:sue", at=at).id
    queue = ContactQueue(redis_client, T, c)
    queue.add([QueuedContact("k1", "+33145672101", "FR", "75011")], at=at.timestamp())
    queue.finalize_unqueued("k2", "no_valid_number", "", at.timestamp())
    offboard(redis_client, T, tmp_path / "out", at, actor="user:ops", secret_key=SECRET_KEY)
    rows = [json.loads(line) for line in (tmp_path / "out" / "campaign_queues.jsonl").read_text().splitlines()]
    by_id = {r["contact_id"]: r for r in rows}
    assert by_id["k1"]["campaign"] == c and by_id["k1"]["data"]["phone"] == "+33145672101"
    assert by_id["k2"]["final"]["reason"] == "no_valid_number"
    assert not list(redis_client.scan_iter(match=f"t:{{{T}}}:campaign:*"))


def run_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY}
    return subprocess.run([sys.executable, "-m", "dialer", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_rectification_by_phone_number_or_contact_id(redis_url, redis_client, tmp_path):
    for list_id, rows in (("a", "Zoé;+33145672301\nLuc;+33145672302\n"), ("b", "Zoé B;+33145672301\n")):
        path = tmp_path / f"{list_id}.csv"
        path.write_text("prenom;telephone\n" + rows, encoding="utf-8")
        assert run_import_inline(redis_client, T, create_import(redis_client, T, path, list_id,
                                                                region="FR").import_id)["status"] == "committed"
    done = run_cli(redis_url, "subject", "rectify", "--tenant", T, "--phone", "01 45 67 23 02", "--country", "FR",
                   "--set", "city=Lyon", "--actor", "user:dpo")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["city"] == "Lyon"
    [entry] = [e for e in AuditLog(redis_client).entries(T) if e.kind == "rectification"]
    assert entry.actor == "user:dpo" and "Lyon" not in json.dumps(entry.payload)
    # A number two contacts hold: refused, naming both, nothing changed.
    done = run_cli(redis_url, "subject", "rectify", "--tenant", T, "--phone", "+33145672301", "--set", "city=Nice")
    shared = contacts_for_phone(redis_client, T, "+33145672301")
    assert done.returncode == 1 and "ambiguous" in done.stderr and all(c in done.stderr for c in shared)
    assert len(shared) == 2 and "Traceback" not in done.stderr
    done = run_cli(redis_url, "subject", "rectify", "--tenant", T, "--contact", shared[0], "--set", "city=Nice")
    assert done.returncode == 0 and json.loads(done.stdout)["city"] == "Nice"
    assert json.loads(run_cli(redis_url, "subject", "access", "--tenant", T, "--contact", shared[1]).stdout)[
        "contacts"][0].get("city") in (None, "")
    done = run_cli(redis_url, "subject", "rectify", "--tenant", T, "--phone", "+33145672399", "--set", "city=Nice")
    assert done.returncode == 1 and "not_found" in done.stderr


def test_token_changes_made_from_the_shell_are_audited(redis_url, redis_client, monkeypatch, capsys):
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    assert main(["tenant", "create", T]) == 0
    assert main(["token", "create", "--tenant", T, "--user", "ann", "--role", "admin"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    token_id = token.split("_")[1]
    assert main(["token", "revoke", "--tenant", T, token_id]) == 0
    entries = [(e.kind, e.payload["action"]) for e in AuditLog(redis_client).entries(T)]
    assert entries == [("token_use", "user.create"), ("token_use", "token.create"), ("token_use", "token.revoke")]
    assert {e.payload.get("created") or e.payload.get("revoked") for e in AuditLog(redis_client).entries(T)} >= {
        token_id}
    assert token not in json.dumps([e.payload for e in AuditLog(redis_client).entries(T)])
    assert AuditLog(redis_client).verify(T).ok


def test_files_written_by_the_lists_commands_are_audited_registered_and_erased(redis_url, redis_client, tmp_path,
                                                                              monkeypatch, capsys):
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.setenv("DIALER_SECRET_KEY", SECRET_KEY)
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    path = tmp_path / "l.csv"
    path.write_text("phone,pays\n+33145672401,FR\n+33145672402,FR\nnot a number,FR\n")
    if not redis_client.sismember("tenants", T):
        assert main(["tenant", "create", T]) == 0  # the import refuses a tenant that does not exist
    assert main(["lists", "import", str(path), "--list", "leads", "--tenant", T, "--inline"]) == 0
    import_id = capsys.readouterr().out.split("dialer lists errors ")[1].split()[0]
    scrub, errors = tmp_path / "scrub.csv", tmp_path / "errors.csv"
    assert main(["lists", "scrub", "--list", "leads", "--tenant", T, "--campaign", "spring",
                 "--at", "2026-03-03T10:30:00+01:00", "-o", str(scrub)]) == 0
    assert main(["lists", "errors", import_id, "--tenant", T, "-o", str(errors)]) == 0
    assert main(["lists", "export", "contacts", "--tenant", T, "--list", "leads"]) == 0  # to standard output
    exports = [e.payload for e in AuditLog(redis_client).entries(T) if e.kind == "export"]
    assert [(p["kind"], p["path"]) for p in exports] == [
        ("scrub", str(scrub)), ("import_errors", str(errors)), ("contacts", None)]
    assert exports[0]["rows"] == 2 and exports[2]["to"] == "stdout"
    assert {k.decode() for k in redis_client.hkeys(f"t:{{{T}}}:exports")} == {str(scrub), str(errors)}
    assert "+33145672401" in scrub.read_text()
    privacy.erase(redis_client, T, phone="+33145672401", actor="user:dpo", at=AT, secret_key=SECRET_KEY)
    assert "+33145672401" not in scrub.read_text() and "+33145672402" in scrub.read_text()


def test_erasing_a_number_whose_call_is_in_progress_warns_and_a_second_erasure_finishes(redis_client):
    store = CampaignStore(redis_client)
    at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    c = store.create(T, CONFIG, by="user:sue", at=at).id
    queue = ContactQueue(redis_client, T, c)
    number = "+33145672501"
    queue.add([QueuedContact("k1", number, "FR", "75011")], at=at.timestamp())
    [claim] = queue.claim(1, owner="p1", now=at.timestamp(), lease_until=time.time() + 60, call_ids=["call-1"],
                          servers=["sbx"])
    report = privacy.erase(redis_client, T, phone=number, actor="user:dpo", at=at, secret_key=SECRET_KEY)
    assert "in progress" in report.warnings[0] and "campaign_queue_entries" not in report.removed
    assert queue.state_of("k1") == "inflight"  # the call under way keeps what it settles with
    assert queue.finish(claim, reason="answered", at=at.timestamp(), count_attempt=True)  # the call ended
    again = privacy.erase(redis_client, T, phone=number, actor="user:dpo", at=at, secret_key=SECRET_KEY)
    assert again.removed["campaign_queue_entries"] == 1 and not again.warnings
    assert [h.state for h in queue.held_entries()] == ["final"]  # no entry holds the number any more
    assert queue.final_state("k1")["reason"] == "answered"  # its outcome stays (no number in it)
    assert queue.find(e164=number) == []
