"""Data subject rights against a real redis-server, the real importer, gate, rule packs and audit trail:
access (JSON, CSV), rectification, erasure (then a re-import of the same number, and the gate), suppression."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from dialer import privacy
from dialer.audit import AuditLog
from dialer.audit_events import export_written
from dialer.contacts.export import export
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.contacts.report import write_error_report
from dialer.contacts.store import Keys, contacts_for_phone, get_contact, list_member_ids
from dialer.facts import FactStore
from dialer.gate import Gate, Reservation
from dialer.registry.loader import load_registry
from dialer.registry.store import RegistryStore
from dialer.suppression import Suppression, configure
from rules import load_packs
from rules.model import Campaign, Consent, Contact, Relationship

KEY = "privacy-test-key"
T = "t1"
PACKS = load_packs()
AT = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)  # Tuesday 10:30 in Paris: inside the French calling hours
NUMBER = "+33145678901"
NATIONAL = "0145678901"
OTHER = "+33145678902"
SALES = Campaign(id="c1", tenant=T, purpose="telemarketing", audience="consumer", voice="human",
                 caller_id="+33162000000")
ROOT = Path(__file__).resolve().parents[1]

CSV_TEXT = ("prenom;nom;telephone;email\n"
            f"Zoé;Lefèvre;{NATIONAL};zoe@example.org\n"
            f"Luc;Martin;{OTHER};luc@example.org\n"
            f"Zoé bis;Lefèvre;{NUMBER};\n")  # same number again: a duplicate entry in the error report


@pytest.fixture(autouse=True)
def process_key():
    configure(KEY)  # what `dialer worker` does at start with security.secret_key
    yield
    configure(b"")


def load_bloctel(client: redis.Redis, directory: Path) -> None:
    path = directory / "bloctel.txt"
    path.write_text("0145678999\n")
    load_registry(client, "bloctel", path, loaded_at=AT - timedelta(days=2))


def make_gate(client: redis.Redis) -> Gate:
    return Gate(client, PACKS, RegistryStore(client, refresh_interval=0.0), secret_key=KEY)


def import_file(client: redis.Redis, path: Path, list_id: str = "leads", campaign: str | None = "c1") -> dict:
    ticket = create_import(client, T, path, list_id, region="FR", campaign=campaign)
    return run_import_inline(client, T, ticket.import_id)


def tenant_dump(client: redis.Redis, tenant: str = T) -> dict[str, str]:
    """Every key of the tenant with its whole value as text."""
    out = {}
    for raw in client.scan_iter(match=f"t:{{{tenant}}}:*", count=1000):
        key = raw.decode()
        kind = client.type(key).decode()
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = client.xrange(key)
        out[key] = repr(value)
    return out


def traces(client: redis.Redis, digits: str = "145678901") -> list[str]:
    return [k for k, v in tenant_dump(client).items() if digits in k or digits in v]


@pytest.fixture
def world(redis_client, tmp_path):
    """A tenant with a list, a campaign import, a call, consent, a relationship, an opt-out and an export."""
    load_bloctel(redis_client, tmp_path)
    path = tmp_path / "leads.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    status = import_file(redis_client, path)
    assert status["status"] == "committed" and status["summary"]["contacts_added"] == 2
    facts = FactStore(redis_client, audit=AuditLog(redis_client, KEY))
    facts.add_consent(T, NUMBER, Consent(given_at=AT - timedelta(days=30), source="web form", evidence="form-77",
                                         ip="198.51.100.7", text="I agree to be called by Acme"), actor="user:alice")
    facts.add_relationship(T, NUMBER, Relationship(kind="purchase", at=AT - timedelta(days=60)))
    gate = make_gate(redis_client)
    cid = contacts_for_phone(redis_client, T, NUMBER)[0]
    outcome = gate.check_and_reserve(Contact(NUMBER, "FR", "75011"), SALES, AT, contact_id=cid)
    assert isinstance(outcome, Reservation), outcome
    gate.record_outcome(T, outcome.call_id, "answered", AT + timedelta(minutes=2))
    facts.add_optout(T, NUMBER, at=AT + timedelta(minutes=2), source="keypress", call_id=outcome.call_id,
                     campaign="c1", actor="ami")
    export_path = tmp_path / "contacts.csv"
    with open(export_path, "w", newline="", encoding="utf-8") as out:
        rows = export(redis_client, T, "contacts", out, list_id="leads")
    export_written(redis_client, T, "contacts", str(export_path), rows, AT, actor="test")
    return {"path": path, "export": export_path, "contact_id": cid, "gate": gate, "call_id": outcome.call_id}


def test_access_returns_everything_held_as_json_and_csv(redis_client, world):
    data = privacy.access(redis_client, T, phone=NATIONAL, country="FR", actor="user:dpo", at=AT, secret_key=KEY)
    assert data["phones"] == [NUMBER] and data["contact_ids"] == [world["contact_id"]]
    assert data["contacts"][0]["first_name"] == "Zoé" and data["contacts"][0]["email"] == "zoe@example.org"
    assert data["memberships"] == [{"contact_id": world["contact_id"], "lists": ["leads"], "campaigns": ["c1"]}]
    person = data["people"][0]
    consent = person["consents"][0]
    assert (consent["source"], consent["evidence"], consent["ip"], consent["text"]) == (
        "web form", "form-77", "198.51.100.7", "I agree to be called by Acme")
    assert person["relationships"][0]["kind"] == "purchase"
    assert [(a["call_id"], a["outcome"]) for a in person["attempts"]] == [(world["call_id"], "answered")]
    assert person["optouts"]["company"]["source"] == "keypress"
    assert len(person["optout_log"]) == 1
    assert [e["reason"] for e in data["import_errors"]] == ["duplicate_in_file"]
    assert data["exports"][0]["rows"] == 1
    kinds = [e["kind"] for e in data["audit"]]
    assert {"consent", "gate_decision", "call_outcome", "optout"} <= set(kinds)
    assert all(e["payload"].get("person") == AuditLog(redis_client, KEY).person_ref(NUMBER)
               or e["payload"].get("contact_id") == world["contact_id"] for e in data["audit"])
    last = list(AuditLog(redis_client, KEY).entries(T))[-1]
    assert last.kind == "access" and last.actor == "user:dpo" and NUMBER not in json.dumps(last.payload)
    # The same by contact id, as CSV: one row per value, formula-safe.
    text = privacy.access_csv(redis_client, T, contact_id=world["contact_id"], actor="user:dpo", at=AT,
                              secret_key=KEY)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {"section", "item", "field", "value"} == set(rows[0])
    assert {"contacts", "people", "audit", "memberships", "import_errors"} <= {r["section"] for r in rows}
    assert any(r["field"] == "consents[0].ip" and r["value"] == "198.51.100.7" for r in rows)
    assert any(r["field"] == "phone" and r["value"] == "'" + NUMBER for r in rows)  # formula guard


def test_rectification_changes_fields_and_audits_names_only(redis_client, world):
    cid = world["contact_id"]
    contact = privacy.rectify(redis_client, T, cid, {"last_name": "Lefebvre", "email": "", "city": "Paris"},
                              "user:dpo", AT)
    assert contact["last_name"] == "Lefebvre" and contact["city"] == "Paris" and "email" not in contact
    entry = list(AuditLog(redis_client, KEY).entries(T))[-1]
    assert entry.kind == "rectification" and entry.payload == {"contact_id": cid,
                                                                "fields": ["city", "email", "last_name"]}
    for changes, code in [({"phone": "+33600000000"}, "bad_field"), ({"email": "nope"}, "bad_value"),
                          ({"country": "France"}, "bad_value"), ({}, "bad_request")]:
        with pytest.raises(privacy.PrivacyError) as err:
            privacy.rectify(redis_client, T, cid, changes, "user:dpo", AT)
        assert err.value.code == code
    with pytest.raises(privacy.PrivacyError) as err:
        privacy.rectify(redis_client, T, "nope-1", {"city": "Lyon"}, "user:dpo", AT)
    assert err.value.code == "not_found"
    assert get_contact(redis_client, T, cid)["last_name"] == "Lefebvre"


def test_erasure_removes_the_person_everywhere_and_keeps_a_suppression_hash(redis_client, world):
    assert traces(redis_client)  # before: the number is in many places
    other_cid = contacts_for_phone(redis_client, T, OTHER)[0]
    report = privacy.erase(redis_client, T, phone=NUMBER, actor="user:dpo", at=AT + timedelta(days=1),
                           secret_key=KEY)
    assert report.contact_ids == [world["contact_id"]] and report.suppressed == 1 and not report.warnings
    assert report.removed["contacts"] == 1 and report.removed["consent_records"] == 1
    assert report.removed["attempt_records"] == 1 and report.removed["export_rows"] == 1
    assert report.removed["import_error_entries"] == 1 and report.removed["optouts"] == 1
    # No key or value of the tenant holds the number any more, except the version counter that expires soon.
    left = traces(redis_client)
    assert left == [f"t:{{{T}}}:p:{NUMBER}:ver"] and 0 < redis_client.ttl(left[0]) <= privacy.ERASED_VERSION_TTL
    assert NATIONAL not in world["export"].read_text() and "145678901" not in world["export"].read_text()
    assert OTHER in world["export"].read_text()  # other people untouched
    assert sorted(list_member_ids(redis_client, T, "leads")) == [other_cid]
    assert redis_client.hget(Keys(T).list("leads"), "contacts") == b"1"
    # The suppression entry: a keyed hash with the opt-out evidence, no number.
    entry = Suppression(redis_client, KEY).entry(T, NUMBER)
    assert entry["reason"] == "erased_optout" and entry["optouts"][0]["source"] == "keypress"
    assert entry["optouts"][0]["at"] == "2026-03-03T09:32:00Z"
    # The audit trail still verifies and records the erasure by reference.
    audit = AuditLog(redis_client, KEY)
    assert audit.verify(T).ok
    last = list(audit.entries(T))[-1]
    assert last.kind == "erasure" and last.payload["people"] == [audit.person_ref(NUMBER)]
    assert last.seq == report.audit_seq
    # Erasing again is harmless; access now shows only the suppression entry.
    privacy.erase(redis_client, T, phone=NUMBER, actor="user:dpo", at=AT + timedelta(days=2), secret_key=KEY)
    data = privacy.access(redis_client, T, phone=NUMBER, actor="user:dpo", at=AT + timedelta(days=2),
                          secret_key=KEY)
    assert data["contacts"] == [] and data["people"][0]["consents"] == [] and len(data["suppressed"]) == 1


def test_erased_number_is_rejected_at_reimport_and_denied_by_the_gate(redis_client, world, tmp_path):
    privacy.erase(redis_client, T, contact_id=world["contact_id"], actor="user:dpo", at=AT, secret_key=KEY)
    again = tmp_path / "again.csv"  # the same people, another file (and another list)
    again.write_text(CSV_TEXT + "Zoé ter;L;+33 1 45 67 89 01;\n", encoding="utf-8")
    status = import_file(redis_client, again, list_id="spring", campaign="c2")
    assert status["status"] == "committed"
    assert status["summary"]["contacts_added"] == 1 and status["summary"]["invalid_by_reason"] == {"SUPPRESSED": 3}
    assert contacts_for_phone(redis_client, T, NUMBER) == []
    out = io.StringIO()
    write_error_report(redis_client, T, status["id"], out)
    rows = [r for r in csv.DictReader(io.StringIO(out.getvalue())) if r["reason"] == "SUPPRESSED"]
    assert [r["row"] for r in rows] == ["2", "4", "5"]
    assert all("145678901" not in r["value"] and r["value"].endswith("01") for r in rows)  # masked in the report
    # The gate denies the number, whatever the campaign, and says why.
    decision = world["gate"].check(Contact(NUMBER, "FR", "75011"), SALES, AT + timedelta(days=1))
    assert not decision.allowed and decision.codes()[0] == "ERASED_SUPPRESSED"
    outcome = world["gate"].check_and_reserve(Contact(NATIONAL, "FR", "75011"),
                                              dataclasses.replace(SALES, id="c2"), AT + timedelta(days=1))
    assert not isinstance(outcome, Reservation) and "ERASED_SUPPRESSED" in outcome.codes()
    allowed = world["gate"].check(Contact(OTHER, "FR", "75011"), SALES, AT + timedelta(days=1))
    assert "ERASED_SUPPRESSED" not in allowed.codes()


def test_erasure_without_the_key_is_refused_and_changes_nothing(redis_client, world):
    before = tenant_dump(redis_client)
    with pytest.raises(privacy.PrivacyError) as err:
        privacy.erase(redis_client, T, phone=NUMBER, actor="user:dpo", at=AT, secret_key="")
    assert err.value.code == "no_secret_key" and "security.secret_key" in str(err.value)
    assert tenant_dump(redis_client) == before


def test_suppression_written_with_another_key_fails_closed(redis_client, world, tmp_path):
    privacy.erase(redis_client, T, phone=NUMBER, actor="user:dpo", at=AT, secret_key=KEY)
    configure("another-key")
    status = import_file(redis_client, world["path"], list_id="other")
    assert status["status"] == "failed" and status["error_code"] == "suppression_unavailable"
    configure(b"")
    status = import_file(redis_client, world["path"], list_id="third")
    assert status["status"] == "failed" and "security.secret_key is required" in status["error"]
    with pytest.raises(privacy.PrivacyError) as err:  # entries made with another key would break the list
        privacy.erase(redis_client, T, phone=OTHER, actor="user:dpo", at=AT, secret_key="another-key")
    assert err.value.code == "suppression_key_mismatch"
    gate = Gate(redis_client, PACKS, RegistryStore(redis_client, refresh_interval=0.0), secret_key="another-key")
    decision = gate.check(Contact(OTHER, "FR", "75011"), SALES, AT)
    assert decision.codes()[0] == "SUPPRESSION_UNVERIFIABLE"


def test_unknown_subjects_and_bad_requests_are_named(redis_client):
    with pytest.raises(privacy.PrivacyError) as err:
        privacy.access(redis_client, T, contact_id="nope-2", at=AT)
    assert err.value.code == "not_found"
    with pytest.raises(privacy.PrivacyError) as err:
        privacy.access(redis_client, T, phone="hello", at=AT)
    assert err.value.code == "bad_phone"
    with pytest.raises(privacy.PrivacyError):
        privacy.access(redis_client, T, phone=NUMBER, contact_id="x", at=AT)
    # A number we never held can still be erased: it is suppressed from now on.
    report = privacy.erase(redis_client, T, phone="+4915123456789", actor="user:dpo", at=AT, secret_key=KEY)
    assert report.contact_ids == [] and Suppression(redis_client, KEY).contains(T, "+4915123456789")


def run_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "dialer", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_access_and_erase(redis_url, redis_client, world):
    done = run_cli(redis_url, "subject", "access", "--tenant", T, "--phone", NUMBER, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert "zoe@example.org" in done.stdout
    done = run_cli(redis_url, "subject", "erase", "--tenant", T, "--contact", world["contact_id"],
                   "--actor", "user:dpo")
    assert done.returncode == 0, done.stderr
    assert "erased: 1 contact(s)" in done.stdout
    done = run_cli(redis_url, "subject", "access", "--tenant", T, "--contact", world["contact_id"])
    assert done.returncode == 1 and "not_found" in done.stderr and "Traceback" not in done.stderr
    done = run_cli(redis_url, "subject", "rectify", "--tenant", T, "--phone", OTHER, "--set", "city=Lyon")
    assert done.returncode == 0 and json.loads(done.stdout)["city"] == "Lyon"  # the one contact with that number


def test_tenant_and_contact_ids_cannot_reach_other_keys(redis_client):
    for call in (lambda: privacy.access(redis_client, "t1:x", phone=NUMBER, at=AT),
                 lambda: privacy.erase(redis_client, "t1:x", phone=NUMBER, actor="a", at=AT, secret_key=KEY),
                 lambda: privacy.rectify(redis_client, "t1:x", "c-1", {"city": "Lyon"}, "a", AT)):
        with pytest.raises(privacy.PrivacyError) as err:
            call()
        assert err.value.code == "bad_tenant"
    redis_client.hset(f"t:{{{T}}}:contact:a:b", "phone", NUMBER)
    with pytest.raises(privacy.PrivacyError) as err:
        privacy.access(redis_client, T, contact_id="a:b", at=AT)
    assert err.value.code == "bad_request"
