"""Retention per tenant with a controlled clock, on a real redis-server: attempts, consent evidence (German
5-year rule from grant and from each use), error reports, exports, call data, the audit trail (trimmed and still
verifiable), the RQ job, and the contract-end offboarding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from dialer import privacy, retention
from dialer.audit import AuditLog
from dialer.audit_events import export_written
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.facts import FactStore, person_key
from dialer.gate import Gate, Reservation, consent_use_key
from dialer.jobs import RETENTION, InlineWorker, get_queue
from dialer.offboarding import OFFBOARDED, OffboardError, offboard
from dialer.record.contacts import tenant_count
from dialer.record.current import contact_record
from dialer.registry.store import RegistryStore
from dialer.suppression import Suppression, configure
from rules import load_packs
from rules.model import Attempt, Campaign, Consent, Contact

KEY = "retention-test-key"
T = "t1"
AT = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)  # Tuesday, 10:30 in Berlin and Paris
YEAR = timedelta(days=365)
FR = "+33145678901"
DE = "+49301234567"


@pytest.fixture(autouse=True)
def process_key():
    configure(KEY)
    yield
    configure(b"")


def consents(client: redis.Redis, e164: str) -> list[Consent]:
    return FactStore(client).consents(T, e164)


def test_consent_keep_rules_are_pure_and_never_unblock_a_withdrawn_person():
    given = Consent(given_at=AT - 6 * YEAR)
    withdrawn = Consent(given_at=None, withdrawn_at=AT - 5 * YEAR - timedelta(days=30))
    # Six years old, never used: gone under a 5-year policy; with a use last year, kept (German rule).
    assert retention.consent_keep([given], {}, AT, 1827, "FR") == [False]
    assert retention.consent_keep([given], {"telemarketing": AT - YEAR}, AT, 1827, "DE") == [True]
    # A withdrawal stays while the consent it cancels stays, whatever its own age.
    assert retention.consent_keep([given, withdrawn], {"telemarketing": AT - YEAR}, AT, 1827, "DE") == [True, True]
    assert retention.consent_keep([given, withdrawn], {}, AT, 1827, "FR") == [False, False]
    # A short tenant policy applies to French numbers but never goes below the German minimum.
    recent = Consent(given_at=AT - 2 * YEAR)
    assert retention.consent_keep([recent], {}, AT, 365, "FR") == [False]
    assert retention.consent_keep([recent], {}, AT, 365, "DE") == [True]
    # An expiry counts as a later date to keep from.
    expiring = Consent(given_at=AT - 7 * YEAR, expires_at=AT - YEAR)
    assert retention.consent_keep([expiring], {}, AT, 1827, "FR") == [True]


def test_attempts_are_kept_as_long_as_any_rule_pack_looks_back():
    """A cool-off or a cap reads past attempts: pruning them earlier would let the gate allow a call it must deny."""
    from rules import load_packs

    longest = max(rule.params[k] for pack in load_packs().packs for rule in pack.rules
                  for k in ("duration", "window") if k in rule.params)
    assert retention.minimum("attempts") >= longest.days + 1


def test_policy_defaults_changes_and_legal_floors(redis_client):
    assert retention.get_policy(redis_client, T) == retention.defaults()
    assert retention.set_policy(redis_client, T, {"attempts": 180}, actor="user:a", at=AT)["attempts"] == 180
    for change, words in [({"attempts": 10}, "legal minimum"), ({"audit": 30}, "legal minimum"),
                          ({"attempts": 45}, "legal minimum of 61 days"),  # FR refusals are read 60 days back
                          ({"consent_evidence": 365}, "legal minimum of 1827 days"),  # the strictest country's
                          ({"bogus": 3}, "unknown kind"), ({"exports": 0}, "positive")]:
        with pytest.raises(retention.PolicyError, match=words):
            retention.set_policy(redis_client, T, change, actor="user:a", at=AT)
    assert retention.get_policy(redis_client, T)["attempts"] == 180
    entry = list(AuditLog(redis_client).entries(T))[-1]
    assert entry.kind == "retention" and entry.payload == {"action": "policy", "changes": {"attempts": 180}}


def test_gate_records_each_use_of_a_german_consent(redis_client):
    FactStore(redis_client).add_consent(T, DE, Consent(given_at=AT - 30 * timedelta(days=1), written=True,
                                                       source="form"))
    gate = Gate(redis_client, load_packs(), RegistryStore(redis_client, refresh_interval=0.0), secret_key=KEY)
    campaign = Campaign(id="c1", tenant=T, caller_id="+33162000000")
    first = gate.check_and_reserve(Contact(DE, "DE"), campaign, AT)
    assert isinstance(first, Reservation), first
    later = AT + timedelta(days=7)
    assert isinstance(gate.check_and_reserve(Contact(DE, "DE"), campaign, later), Reservation)
    assert redis_client.zrange(consent_use_key(T, DE), 0, -1, withscores=True) == [
        (b"telemarketing", later.timestamp())]
    # French calls do not record uses (no such rule there).
    assert redis_client.zcard(consent_use_key(T, FR)) == 0


def test_run_applies_the_policy_at_the_given_instant(redis_client, tmp_path):
    facts = FactStore(redis_client)
    facts.record_attempt(T, FR, Attempt(at=AT - 2 * YEAR, campaign="c1", outcome="no_answer", call_id="old"))
    facts.record_attempt(T, FR, Attempt(at=AT - timedelta(days=10), campaign="c1", outcome="answered",
                                        call_id="new"))
    facts.add_consent(T, FR, Consent(given_at=AT - 6 * YEAR, source="form", ip="192.0.2.1"))
    facts.withdraw_consent(T, FR, AT - 5 * YEAR - timedelta(days=40), source="letter")
    facts.add_consent(T, FR, Consent(given_at=AT - YEAR, source="call", evidence="rec-1"))
    facts.add_consent(T, DE, Consent(given_at=AT - 6 * YEAR, written=True, source="form"))
    redis_client.zadd(consent_use_key(T, DE), {"telemarketing": (AT - 2 * YEAR).timestamp()})
    facts.add_optout(T, FR, at=AT - 9 * YEAR, source="sms")
    audit = AuditLog(redis_client, KEY)
    audit.append(T, "optout", "test", {"n": 1}, AT - 7 * YEAR)
    audit.append(T, "optout", "test", {"n": 2}, AT - 7 * YEAR)
    audit.append(T, "optout", "test", {"n": 3}, AT - 2 * YEAR)
    redis_client.hset(f"t:{{{T}}}:campaign:c1:hour:{(AT - YEAR).strftime('%Y%m%d%H')}", "attempts", 3)
    redis_client.hset(f"t:{{{T}}}:campaign:c1:hour:{(AT - timedelta(days=1)).strftime('%Y%m%d%H')}", "attempts", 5)
    old_export, new_export = tmp_path / "old.csv", tmp_path / "new.csv"
    for path, when in [(old_export, AT - timedelta(days=40)), (new_export, AT - timedelta(days=2))]:
        path.write_text("contact_id,phone\n")
        export_written(redis_client, T, "contacts", str(path), 0, when, actor="test")
    version = facts.version(T, FR)

    report = retention.run(redis_client, T, AT, secret_key=KEY)
    assert report.problems == []
    assert report.removed == {"attempts": 1, "consent_evidence": 2, "error_reports": 0, "exports": 1,
                              "call_data": 1, "audit": 2}
    assert [a.call_id for a in facts.attempts(T, FR)] == ["new"]
    assert [c.source for c in consents(redis_client, FR)] == ["call"]  # the old grant and its withdrawal went
    assert [c.source for c in consents(redis_client, DE)] == ["form"]  # used 2 years ago: 5 years from the use
    assert facts.version(T, FR) > version  # the gate re-reads what changed
    assert facts.optout(T, FR) is not None  # opt-outs are never removed by retention
    assert not old_export.exists() and new_export.exists()
    assert redis_client.keys(f"t:{{{T}}}:campaign:c1:hour:*") == [
        f"t:{{{T}}}:campaign:c1:hour:{(AT - timedelta(days=1)).strftime('%Y%m%d%H')}".encode()]
    result = audit.verify(T)
    assert result.ok, str(result)
    entries = list(audit.entries(T))
    assert entries[0].payload == {"n": 3} and entries[-1].kind == "retention"
    assert entries[-1].payload["removed"] == report.removed and entries[-1].seq == report.audit_seq
    # Run again at the same instant: nothing more to remove, the trail still verifies.
    again = retention.run(redis_client, T, AT, secret_key=KEY)
    assert sum(again.removed.values()) == 0 and audit.verify(T).ok


def test_error_reports_expire_and_the_job_runs_on_the_retention_queue(redis_client, tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("telephone\n0145678901\nnot a number\n")
    ticket = create_import(redis_client, T, path, "leads", region="FR")
    status = run_import_inline(redis_client, T, ticket.import_id)
    assert status["summary"]["invalid"] == 1
    errors_key = f"t:{{{T}}}:import:{ticket.import_id}:errors"
    assert redis_client.llen(errors_key) == 1
    redis_client.sadd("tenants", T)
    now = datetime.now(UTC)
    retention.enqueue_all(redis_client, now + timedelta(days=30))  # within the 90 days: kept
    assert InlineWorker([get_queue(redis_client, RETENTION)], connection=redis_client).work(burst=True)
    assert redis_client.llen(errors_key) == 1
    jobs = retention.enqueue_all(redis_client, now + timedelta(days=91))
    assert InlineWorker([get_queue(redis_client, RETENTION)], connection=redis_client).work(burst=True)
    assert redis_client.llen(errors_key) == 0
    job = get_queue(redis_client, RETENTION).fetch_job(jobs[0])
    assert job.return_value()["removed"]["error_reports"] == 1
    assert redis_client.hget(f"t:{{{T}}}:import:{ticket.import_id}", "summary") is not None  # counts stay


def test_offboarding_exports_everything_then_deletes_all_but_what_the_law_keeps(redis_client, tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("prenom;telephone\nZoé;0145678901\nLuc;0145678902\n", encoding="utf-8")
    run_import_inline(redis_client, T, create_import(redis_client, T, path, "leads", region="FR").import_id)
    facts = FactStore(redis_client, audit=AuditLog(redis_client, KEY))
    facts.add_consent(T, FR, Consent(given_at=AT - YEAR, source="form", evidence="f-1"))
    facts.add_optout(T, "+33145678902", at=AT, source="sms")
    privacy.erase(redis_client, T, phone="+33600000001", actor="user:dpo", at=AT, secret_key=KEY)
    redis_client.sadd("tenants", T)
    redis_client.hset("token:abc", mapping={"id": "tok", "tenant": T})
    redis_client.hset(f"t:{{{T}}}:tokens", "tok", "abc")
    stray = tmp_path / "export.csv"
    stray.write_text("x\n")
    export_written(redis_client, T, "contacts", str(stray), 1, AT, actor="test")
    redis_client.hset("t:{t2}:contact:x", "phone", "+33100000000")  # another tenant: untouched

    report = offboard(redis_client, T, tmp_path / "out.zip", AT + timedelta(days=1), actor="user:ops",
                      secret_key=KEY)
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        # the contacts live in the record (docs/record.md); contacts.jsonl holds those still in Redis (none here)
        contacts = [json.loads(line) for line in zf.read("record_contacts.jsonl").decode().splitlines()]
        assert zf.read("contacts.jsonl") == b""
        people = [json.loads(line) for line in zf.read("people.jsonl").decode().splitlines()]
    assert {"contacts.jsonl", "people.jsonl", "audit.jsonl", "lists.json", "suppression.json",
            "optouts.json", "manifest.json"} <= names
    assert sorted(c["first_name"] for c in contacts) == ["Luc", "Zoé"]
    assert [p["consents"][0]["evidence"] for p in people if p["phone"] == FR] == ["f-1"]
    assert manifest["files"]["record_contacts.jsonl"]["rows"] == 2
    assert tenant_count(contact_record(), T) == 0  # deleted from the record too
    assert manifest["audit_verify"].startswith("audit trail intact")
    left = sorted(k.decode() for k in redis_client.scan_iter(match=f"t:{{{T}}}:*"))
    assert left == sorted(report.kept_keys)
    assert set(left) <= {f"t:{{{T}}}:{s}" for s in ("suppression", "suppression:key", "audit", "audit:head",
                                                 "audit:base", "audit:anchors", "retention:policy")}
    assert Suppression(redis_client, KEY).contains(T, "+33600000001")
    assert not redis_client.exists("token:abc") and not stray.exists()
    assert redis_client.sismember(OFFBOARDED, T) and not redis_client.sismember("tenants", T)
    assert redis_client.exists("t:{t2}:contact:x")
    audit = AuditLog(redis_client, KEY)
    assert audit.verify(T).ok and list(audit.entries(T))[-1].payload["action"] == "offboard"
    assert T in retention.tenants(redis_client)  # the kept trail stays under retention
    with pytest.raises(OffboardError):
        offboard(redis_client, T, tmp_path / "out.zip", AT, actor="user:ops", secret_key=KEY)
    assert person_key(T, FR, "consent").encode() not in redis_client.keys("*")


def test_an_audit_trail_entirely_past_its_period_keeps_a_verifiable_start(redis_client):
    audit = AuditLog(redis_client, KEY)
    for n in range(4):
        audit.append(T, "optout", "test", {"n": n}, AT - 9 * YEAR + timedelta(days=n))
    report = retention.run(redis_client, T, AT, secret_key=KEY)
    assert report.removed["audit"] == 3  # the last old entry stays as the start, this run's entry follows it
    assert [e.payload.get("n") for e in audit.entries(T)] == [3, None]
    assert audit.verify(T).ok
    assert retention.run(redis_client, T, AT + timedelta(days=1), secret_key=KEY).removed["audit"] == 1
    assert audit.verify(T).ok and [e.kind for e in audit.entries(T)] == ["retention", "retention"]


def run_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "dialer", *args], cwd=Path(__file__).resolve().parents[1], env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_policy_run_and_offboard(redis_url, redis_client, tmp_path):
    done = run_cli(redis_url, "retention", "policy", "--tenant", T, "--set", "attempts=10")
    assert done.returncode == 1 and "legal minimum of 61 days" in done.stderr and "Traceback" not in done.stderr
    done = run_cli(redis_url, "retention", "policy", "--tenant", T, "--set", "exports=7")
    assert done.returncode == 0 and "exports" in done.stdout and "7 days" in done.stdout
    FactStore(redis_client).record_attempt(T, FR, Attempt(at=AT - 2 * YEAR, campaign="c1", outcome="busy",
                                                          call_id="x1"))
    done = run_cli(redis_url, "retention", "run", "--tenant", T, "--at", "2026-03-03T09:30:00Z")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"]["attempts"] == 1
    done = run_cli(redis_url, "retention", "run", "--tenant", T, "--at", "yesterday")
    assert done.returncode == 1 and "--at" in done.stderr
    out = tmp_path / "final"
    done = run_cli(redis_url, "tenant", "offboard", "--tenant", T, "--export", str(out), "--yes")
    assert done.returncode == 0, done.stderr
    assert (out / "manifest.json").exists() and "keys deleted" in done.stdout
    done = run_cli(redis_url, "tenant", "offboard", "--tenant", T, "--export", str(out), "--yes")
    assert done.returncode == 1 and "not empty" in done.stderr and "nothing was deleted" in done.stderr
