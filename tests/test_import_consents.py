"""A consent-column file's consents are staged in the record with their rows (import_consents, issue 18), not in
Redis: Redis stays near 0 B per staged row, the commit writes each consent once through the fact store (its ledger
and audit entry) even after a retried chunk or a crashed commit, and a failed import leaves none. Real
redis-server, the record on SQLite and PostgreSQL (`record`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from dialer.audit import AuditLog
from dialer.contacts import jobs, staging
from dialer.contacts.store import Keys, import_status
from dialer.facts import FactStore
from dialer.suppression import configure
from tests.test_import_erasure import consent_file
from tests.test_import_staging import staged_rows, started

T = "acme"
KEY = "consent-test-key"


@pytest.fixture(autouse=True)
def process_key():
    configure(KEY)
    yield
    configure(b"")


def staged_consents(record, import_id: str) -> int:
    return int(record.query("SELECT COUNT(*) FROM import_consents WHERE import_id = %s", (import_id,))[0][0])


def consents_of(client: redis.Redis, rows: int) -> list[int]:
    facts = FactStore(client)
    return [len(facts.consents(T, f"+336{i:08d}")) for i in range(rows)]


def consent_audit(client: redis.Redis) -> int:
    return sum(1 for e in AuditLog(client, KEY).entries(T) if e.kind == "consent")


def test_staged_consents_take_no_redis_memory(redis_client: redis.Redis, tmp_path: Path, record,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 200_000)
    rows = 10_000
    import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "c.csv", rows), "consents")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    assert staged_rows(record, import_id) == (rows, rows) and staged_consents(record, import_id) == rows
    keys = Keys(T, import_id)
    owned = [*redis_client.scan_iter(match=keys.stg + "*"), *redis_client.scan_iter(match=keys.status + "*")]
    used = sum(int(redis_client.memory_usage(k) or 0) for k in owned)
    # status, counters, the chunk queue, leases, per-chunk counts (Redis held about 150 B a row of consents before)
    assert used < rows * 1, (used, sorted(k.decode() for k in owned))
    importer.commit()
    status = import_status(redis_client, T, import_id)
    assert status["summary"]["consents"] == rows and status["summary"]["contacts_added"] == rows
    assert staged_consents(record, import_id) == 0
    consent = FactStore(redis_client).consents(T, "+33600000007")
    assert [(c.given_at, c.source, c.evidence, c.purpose, c.written) for c in consent] == [
        (datetime(2026, 1, 8, tzinfo=UTC), "web form", "form-7", "telemarketing", False)]
    assert consent_audit(redis_client) == rows  # the ledger's audit entries, one per consent


def test_a_chunk_staged_twice_and_a_commit_run_twice_write_each_consent_once(
        redis_client: redis.Redis, tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)
    rows = 1500
    import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "t.csv", rows), "twice")
    params = importer._params()
    fmt, plan = importer._load_plan(params)
    first = jobs.Chunk(**json.loads(redis_client.lindex(Keys(T, import_id).todo, 0)))
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    # A worker thought dead staged the first chunk again and lost; it died before deleting its rows.
    monkeypatch.setattr(staging.StagedRows, "drop", lambda self: None)
    importer._stage_chunk(params, fmt, plan, first)
    assert staged_consents(record, import_id) > rows
    # The commit dies after writing some consents, then runs again.
    write = FactStore.add_consents_unless_erased
    written = []

    def dies_at_700(self, tenant, items, *args, **kwargs):
        if len(written) + len(items) > 700:
            raise redis.ConnectionError("killed")
        written.extend(items)
        return write(self, tenant, items, *args, **kwargs)

    monkeypatch.setattr(FactStore, "add_consents_unless_erased", dies_at_700)
    with pytest.raises(redis.ConnectionError):
        importer.commit()
    assert import_status(redis_client, T, import_id)["status"] == "committing"
    assert 0 < consent_audit(redis_client) == len(written) < rows
    monkeypatch.setattr(FactStore, "add_consents_unless_erased", write)
    importer.commit()
    assert import_status(redis_client, T, import_id)["status"] == "committed"
    assert consents_of(redis_client, rows) == [1] * rows
    assert consent_audit(redis_client) == rows
    assert staged_consents(record, import_id) == 0 and staged_rows(record, import_id) == (0, 0)


def test_a_failed_import_leaves_no_consent(redis_client: redis.Redis, tmp_path: Path, record,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)
    import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "f.csv", 1000), "failed")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    assert staged_consents(record, import_id) == 1000
    importer.fail("abandoned", "the import's worker stopped before its commit: nothing was imported; retry")
    assert staged_consents(record, import_id) == 0
    assert consents_of(redis_client, 1000) == [0] * 1000 and consent_audit(redis_client) == 0


def test_two_commits_of_one_import_at_once_write_each_consent_once(
        redis_client: redis.Redis, tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch) -> None:
    # A committer that looked dead (no beat for STALE_SECONDS: a pause, a stalled connection) while it writes
    # consents: a sweeper takes the import over (same commit token, so the commit lock lets it in) and writes them
    # all; the first one then goes on. Its group must not be written again.
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)
    rows = 600
    import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "two.csv", rows), "two")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    write = FactStore.add_consents_unless_erased
    took_over = []

    def sweeper_meanwhile(self, tenant, items, *args, **kwargs):
        if not took_over:  # the first group, its cursor read: the other commit runs now, to the end
            took_over.append(True)
            monkeypatch.setattr(FactStore, "add_consents_unless_erased", write)
            done = {int(k): json.loads(v) for k, v in redis_client.hgetall(Keys(T, import_id).done).items()}
            importer._record_consents(done)
        return write(self, tenant, items, *args, **kwargs)

    monkeypatch.setattr(FactStore, "add_consents_unless_erased", sweeper_meanwhile)
    importer.commit()
    assert took_over and import_status(redis_client, T, import_id)["status"] == "committed"
    assert consents_of(redis_client, rows) == [1] * rows
    assert consent_audit(redis_client) == rows


def test_a_commit_without_the_suppression_lists_key_writes_no_consent(
        redis_client: redis.Redis, tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch) -> None:
    # The commit may run in another process (a sweeper, a worker's start) than the one that staged. Without the
    # key its refs match nothing on the list: it must fail closed (the import stays committing, finished by a
    # process with the key), not write a consent for an erased number.
    from dialer.contacts.commit import ConsentsDeferred
    from dialer.suppression import Suppression

    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)
    import_id, importer, chunks = started(redis_client, consent_file(tmp_path / "k.csv", 300), "nokey")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    pipe = redis_client.pipeline(transaction=True)  # an erasure's suppression entry, written after the staging
    Suppression(redis_client, KEY).queue_add(pipe, T, "+33600000007", datetime.now(UTC), reason="erased",
                                             actor="user:dpo")
    pipe.execute()
    configure(b"")
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    monkeypatch.delenv("DIALER_SECRET_KEY", raising=False)
    with pytest.raises(ConsentsDeferred):  # a RecordUnavailable: every caller leaves the import committing
        importer.commit()
    assert import_status(redis_client, T, import_id)["status"] == "committing"
    assert FactStore(redis_client).consents(T, "+33600000007") == []
    configure(KEY)
    importer.commit()
    assert import_status(redis_client, T, import_id)["status"] == "committed"
    assert FactStore(redis_client).consents(T, "+33600000007") == []
    assert consents_of(redis_client, 10)[8] == 1
