"""An erasure or an opt-out recorded while an import runs (issue 18): the erased number is never published from the
import's staging tables, its staged consents never reach the fact store, and an opt-out binds the imported contacts
at the gate. Real redis-server, the record on SQLite and PostgreSQL (`record`), the real importer, gate and rule
packs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import redis

from dialer import privacy
from dialer.audit import AuditLog
from dialer.contacts import jobs, staging
from dialer.contacts.store import contacts_for_phone, import_status
from dialer.facts import FactStore
from dialer.gate import Reservation
from dialer.suppression import configure
from rules.model import Contact
from tests.test_import_staging import staged_rows, started
from tests.test_privacy import AT, KEY, SALES, load_bloctel, make_gate

T = "acme"
ERASED = "+33600000007"  # row 9 of make_big's file
KEPT = "+33600000008"
CAMPAIGN = dataclasses.replace(SALES, tenant=T)


@pytest.fixture(autouse=True)
def process_key():
    configure(KEY)  # what `dialer worker` does at start with security.secret_key
    yield
    configure(b"")


def consent_file(path: Path, rows: int) -> Path:
    with path.open("w") as fh:
        fh.write("phone,first_name,consent_given_at,consent_source,consent_evidence\n")
        for i in range(rows):
            fh.write(f"+336{i:08d},n{i},2026-01-0{1 + i % 9},web form,form-{i}\n")
    return path


def erase(client: redis.Redis, number: str = ERASED) -> privacy.ErasureReport:
    return privacy.erase(client, T, phone=number, actor="user:dpo", at=AT, secret_key=KEY)


def published(record, number: str) -> list[tuple]:
    return record.query("SELECT id FROM contacts WHERE tenant = %s AND phone = %s", (T, number))


def test_an_erasure_while_an_import_stages_is_not_undone_by_its_commit(redis_client: redis.Redis, tmp_path: Path,
                                                                       record,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)
    import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "e.csv", 2000), "during")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    assert staged_rows(record, import_id) == (2000, 2000)
    report = erase(redis_client)  # every row is staged, nothing published yet
    assert report.warnings == []
    assert staged_rows(record, import_id) == (1999, 1999)  # the erasure took the staged row with it
    importer.commit()
    status = import_status(redis_client, T, import_id)
    assert status["status"] == "committed" and status["summary"]["contacts_added"] == 1999
    assert published(record, ERASED) == [] and contacts_for_phone(redis_client, T, ERASED) == []
    assert published(record, KEPT) == [(f"{import_id}-10",)]
    facts = FactStore(redis_client)
    assert facts.consents(T, ERASED) == []  # its staged consent was not written either
    assert len(facts.consents(T, KEPT)) == 1
    assert staged_rows(record, import_id) == (0, 0)


def test_a_chunk_that_read_the_suppression_list_before_an_erasure_drops_the_number(
        redis_client: redis.Redis, tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worst order: the worker read the suppression list before the erasure, the erasure ran (nothing staged
    # yet, so nothing in the record to delete), then the worker staged the row. Its next batch sees the list moved.
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)
    monkeypatch.setattr(staging, "BATCH", 100)
    import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "r.csv", 2000), "race")
    read = staging.suppressed_numbers
    calls = []

    def then_erase(client: redis.Redis, tenant: str) -> tuple[frozenset[str], bytes]:
        snapshot = read(client, tenant)
        if not calls:
            calls.append(erase(redis_client))
        return snapshot

    monkeypatch.setattr(staging, "suppressed_numbers", then_erase)
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    assert calls and staged_rows(record, import_id) == (1999, 1999)
    importer.commit()
    assert import_status(redis_client, T, import_id)["summary"]["contacts_added"] == 1999
    assert published(record, ERASED) == []
    assert FactStore(redis_client).consents(T, ERASED) == []


def test_an_erasure_after_the_publish_removes_what_it_published(redis_client: redis.Redis, tmp_path: Path, record,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The erasure comes between the record's publish and the rest of the commit (its consents, FINALIZE).
    from dialer.contacts import commit

    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)
    import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "p.csv", 500), "after")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    forget = commit.ImportCommit._record_consents
    erased = []

    def erase_first(self, *args, **kwargs):
        if not erased:
            erased.append(erase(redis_client))
        return forget(self, *args, **kwargs)

    monkeypatch.setattr(commit.ImportCommit, "_record_consents", erase_first)
    importer.commit()
    assert erased and erased[0].removed.get("record_contacts") == 1
    assert published(record, ERASED) == []
    assert FactStore(redis_client).consents(T, ERASED) == []
    assert len(FactStore(redis_client).consents(T, KEPT)) == 1
    assert import_status(redis_client, T, import_id)["status"] == "committed"


def test_an_optout_recorded_while_an_import_runs_binds_its_contacts_at_the_gate(
        redis_client: redis.Redis, tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch) -> None:
    load_bloctel(redis_client, tmp_path)
    path = tmp_path / "o.csv"
    path.write_text("phone,postal_code\n0145678901,75011\n0145678902,75011\n")
    ticket = jobs.create_import(redis_client, T, path, "leads", region="FR", campaign="c1")
    importer = jobs.Importer(redis_client, T, ticket.import_id)
    importer._set(status="running")
    chunks = len(importer._plan(importer._params()))
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    facts = FactStore(redis_client, audit=AuditLog(redis_client, KEY))
    facts.add_optout(T, "+33145678901", at=AT, source="phone call", actor="user:agent")  # while it is staged
    importer.commit()
    assert import_status(redis_client, T, ticket.import_id)["summary"]["contacts_added"] == 2
    gate = make_gate(redis_client)
    denied = gate.check_and_reserve(Contact("+33145678901", "FR", "75011"), CAMPAIGN, AT,
                                    contact_id=f"{ticket.import_id}-2")
    assert not isinstance(denied, Reservation) and "COMPANY_DNC" in denied.codes(), denied
    allowed = gate.check_and_reserve(Contact("+33145678902", "FR", "75011"), CAMPAIGN, AT,
                                     contact_id=f"{ticket.import_id}-3")
    assert isinstance(allowed, Reservation), allowed


def test_an_erasure_during_the_publish_transaction_waits_for_it_then_deletes_what_it_published(
        redis_client: redis.Redis, tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch) -> None:
    # The erasure comes while the publish's transaction is open, its contacts inserted but not committed (an
    # erasure reading then would see nothing to delete): it waits for the publish, then finds the contact.
    import threading
    import time

    from dialer.contacts import publish

    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)
    _import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "w.csv", 300), "waits")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    to_json = publish.Outcome.to_json
    reports: list[privacy.ErasureReport] = []
    eraser = threading.Thread(target=lambda: reports.append(erase(redis_client)))

    def erase_meanwhile(self: publish.Outcome) -> str:  # inside the publish's transaction, before its commit
        eraser.start()
        time.sleep(1.0)  # time for the erasure to reach the record (it must wait there)
        assert not reports, "the erasure finished while the publish's transaction was open"
        return to_json(self)

    monkeypatch.setattr(publish.Outcome, "to_json", erase_meanwhile)
    importer.commit()
    eraser.join(60)
    assert reports and reports[0].removed.get("record_contacts") == 1
    assert published(record, ERASED) == [] and len(record.query("SELECT id FROM contacts")) == 299
    assert FactStore(redis_client).consents(T, ERASED) == []


def test_an_erasure_waits_for_a_publish_holding_sqlites_write_lock(redis_client: redis.Redis, tmp_path: Path,
                                                                   record) -> None:
    # The erasure's passes over the record are write transactions (the read it replaced was not): on SQLite, one
    # that meets a publish holding the write lock past the record's busy timeout tries again instead of failing.
    import sqlite3
    import threading

    if record.dialect != "sqlite":
        pytest.skip("PostgreSQL: the erasure waits on the tenant's advisory lock (the test above)")
    record.query("SELECT 1")  # the file in WAL mode, as a record in use is (readers do not wait for a writer)
    record.timeout = 0.2
    writer = sqlite3.connect(record.url.path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # what a publish's transaction holds
    released = threading.Event()

    def release() -> None:
        writer.execute("ROLLBACK")
        released.set()

    timer = threading.Timer(1.0, release)
    timer.start()
    try:
        report = erase(redis_client)
    finally:
        timer.join()
        writer.close()
    assert released.is_set() and report.suppressed == 1 and report.warnings == []


def test_an_erasure_between_the_publish_and_the_report_leaves_no_duplicate_entry_naming_the_number(
        redis_client: redis.Redis, tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch) -> None:
    # The number is twice in the file: the publish reports the second row as a duplicate (its entry names the
    # number); the erasure comes after the publish, before the commit writes that entry into the import's report.
    from dialer.contacts import publish
    from dialer.contacts.store import iter_errors

    path = consent_file(tmp_path / "d.csv", 300)
    with path.open("a") as fh:
        fh.write(f"{ERASED},again,2026-01-02,web form,form-x\n")
    import_id, importer, chunks = started(redis_client, path, "dups")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    real = publish.publish
    erased = []

    def then_erase(*args, **kwargs):
        outcome = real(*args, **kwargs)
        assert [d["value"] for d in outcome.duplicates] == [ERASED]
        erased.append(erase(redis_client))
        return outcome

    monkeypatch.setattr(publish, "publish", then_erase)
    importer.commit()
    assert erased and erased[0].removed.get("record_contacts") == 1
    status = import_status(redis_client, T, import_id)
    assert status["summary"]["duplicates"] == 1  # counted (no number in a count), not listed
    assert [e for e in iter_errors(redis_client, T, import_id) if ERASED in json.dumps(e)] == []
    assert published(record, ERASED) == []


def test_an_erasure_meeting_a_publish_that_keeps_the_tenants_lock_fails_in_time_with_nothing_erased(
        redis_client: redis.Redis, record, monkeypatch: pytest.MonkeyPatch) -> None:
    # PostgreSQL: an import's publish holds the tenant's advisory lock for its whole transaction (a whole list).
    # The erasure's first pass gives up after FIRST_PASS_WAIT (RecordUnavailable: the API's 503) with nothing
    # erased, instead of waiting as long as the publish runs (it had no lock_timeout: the request hung).
    import threading

    from dialer.record.contacts import lock_erasures
    from dialer.record.store import RecordUnavailable
    from dialer.suppression import Suppression

    if record.dialect != "postgresql":
        pytest.skip("SQLite: the busy timeout bounds the wait (test_an_erasure_waits_for_a_publish_holding_...)")
    monkeypatch.setattr(privacy, "FIRST_PASS_WAIT", 0.5)
    record.timeout = 0.5
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(erase(redis_client))
        except RecordUnavailable as exc:
            outcome.append(exc)

    eraser = threading.Thread(target=run, daemon=True)
    with record.transaction() as tx:
        lock_erasures(tx, T)  # what a publish holds
        eraser.start()
        eraser.join(60)  # a bound for the test only: the erasure is expected back long before
        returned = not eraser.is_alive()
    eraser.join(60)
    assert returned, "the erasure waited for the publish's lock with no bound"
    assert len(outcome) == 1 and isinstance(outcome[0], RecordUnavailable), outcome
    assert not Suppression(redis_client, KEY).contains(T, ERASED)  # nothing erased: the caller tries again


def test_an_erasure_after_the_publish_leaves_no_staged_consent_naming_the_number(
        redis_client: redis.Redis, tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch) -> None:
    # After the publish the commit deletes the staged rows (import_phones, where the erasure finds an import's
    # staged rows), then writes the staged consents: an erasure between the two must not leave the number in
    # import_consents (a commit that stops there keeps them until it runs again).
    from dialer.contacts.commit import ImportCommit

    _import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "c.csv", 300), "consents")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    real = ImportCommit._record_consents
    left: list[int] = []

    def erase_first(self, done):
        erase(redis_client)
        left.append(len(record.query("SELECT row_no FROM import_consents WHERE tenant = %s AND phone = %s",
                                     (T, ERASED))))
        return real(self, done)

    monkeypatch.setattr(ImportCommit, "_record_consents", erase_first)
    importer.commit()
    assert left == [0]
    assert FactStore(redis_client).consents(T, ERASED) == [] and published(record, ERASED) == []
