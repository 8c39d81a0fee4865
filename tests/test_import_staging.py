"""Imports stage their rows in the record, not in Redis (issue 18): a worker killed mid-chunk, a failed import, the
set-based dedupe of the commit and Redis's share of a running import. Real redis-server, the record on SQLite and
PostgreSQL (`record`), real worker processes killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from dialer.contacts import jobs, staging
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.contacts.store import Keys, contacts_for_phone, get_contact, import_status, list_count
from tests.test_contacts_import import make_big

T = "acme"
ROOT = Path(__file__).resolve().parents[1]


def staged_rows(record, import_id: str) -> tuple[int, int]:
    contacts = record.query("SELECT COUNT(*) FROM import_contacts WHERE import_id = %s", (import_id,))[0][0]
    phones = record.query("SELECT COUNT(*) FROM import_phones WHERE import_id = %s", (import_id,))[0][0]
    return int(contacts), int(phones)


def started(client: redis.Redis, path: Path, list_id: str) -> tuple[str, jobs.Importer, int]:
    """An import planned and running, no chunk staged yet (what the coordinator does before staging)."""
    ticket = create_import(client, T, path, list_id, region="FR")
    importer = jobs.Importer(client, T, ticket.import_id)
    importer._set(status="running")
    return ticket.import_id, importer, len(importer._plan(importer._params()))


def test_a_worker_killed_mid_chunk_then_retried_leaves_no_doubled_rows(redis_url: str, redis_client: redis.Redis,
                                                                       tmp_path: Path, record,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 400_000)  # about 11,000 rows a chunk
    import_id, importer, chunks = started(redis_client, make_big(tmp_path / "k.csv", 30_000), "killed")
    assert chunks >= 2
    # A helper process claims the first chunk and writes it in batches of 500; it is killed once some are written.
    code = ("import redis; from dialer.contacts import jobs, staging; staging.RECORD_BATCH = 500; "
            f"jobs.Importer(redis.Redis.from_url({redis_url!r}), {T!r}, {import_id!r})._work(coordinator=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while staged_rows(record, import_id)[0] < 1000:
            assert proc.poll() is None, "the helper ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    keys = Keys(T, import_id)
    assert redis_client.hlen(keys.done) == 0  # killed mid-chunk: that chunk is not done
    half = staged_rows(record, import_id)[0]
    assert 1000 <= half < 30_000
    # The coordinator stages the other chunks, then takes the dead helper's chunk over once its lease is over.
    importer._work(coordinator=True)
    redis_client.zadd(keys.claims, {0: time.time() - 1})
    importer._wait_for_chunks(chunks)
    assert importer.field("takeovers") == "1"
    contacts, _phones = staged_rows(record, import_id)
    assert contacts == 30_000 + half  # the dead attempt's rows are still staged, never published
    importer.commit()
    status = import_status(redis_client, T, import_id)
    assert status["status"] == "committed" and status["summary"]["contacts_added"] == 30_000
    assert status["summary"]["duplicates"] == 0  # the dead attempt's rows are not taken for duplicates either
    assert list_count(T, "killed") == 30_000
    assert record.query("SELECT COUNT(*), COUNT(DISTINCT phone) FROM contacts WHERE import_id = %s",
                        (import_id,)) == [(30_000, 30_000)]
    assert record.query("SELECT COUNT(*) FROM contact_phones") == [(30_000,)]
    assert staged_rows(record, import_id) == (0, 0)
    assert record.query("SELECT COUNT(*) FROM import_outcomes") == [(0,)]


def test_a_failed_import_leaves_nothing_visible_and_no_staged_rows(redis_client: redis.Redis, tmp_path: Path,
                                                                   record, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)
    monkeypatch.setattr(staging, "RECORD_BATCH", 100)
    import_id, importer, _chunks = started(redis_client, make_big(tmp_path / "f.csv", 3000), "failed")
    params = importer._params()
    fmt, plan = importer._load_plan(params)
    first, second = (jobs.Chunk(**json.loads(redis_client.lpop(Keys(T, import_id).todo))) for _ in range(2))
    importer._stage_chunk(params, fmt, plan, first)
    assert staged_rows(record, import_id)[0] > 0
    # It fails (a cancelled job is failed the same way by its status poller: reconcile_import).
    importer.fail("abandoned", "the import's worker stopped before its commit: nothing was imported; retry")
    assert staged_rows(record, import_id) == (0, 0)
    assert not list(redis_client.scan_iter(match=Keys(T, import_id).stg + "*"))
    # A helper still staging another chunk sees the failure at its next batch and removes what it wrote after it.
    with pytest.raises(jobs.ImportStopped):
        importer._stage_chunk(params, fmt, plan, second)
    assert staged_rows(record, import_id) == (0, 0)
    assert list_count(T, "failed") == 0
    assert record.query("SELECT COUNT(*) FROM contacts") == [(0,)]
    assert import_status(redis_client, T, import_id)["status"] == "failed"


def test_the_commit_dedupes_in_sql_and_narrows_a_contact_whose_main_number_is_taken(redis_client: redis.Redis,
                                                                                     tmp_path: Path, record) -> None:
    first = tmp_path / "a.csv"
    first.write_text("phone\n0612345600\n0145678900\n")
    assert run_import_inline(redis_client, T, create_import(redis_client, T, first, "leads", region="FR",
                                                            campaign="spring").import_id)["status"] == "committed"
    text = ("nom,mobile,fixe\n"
            "A,06 12 34 56 78,01 45 67 89 02\n"  # row 2: both kept
            "B,06 12 34 56 00,01 45 67 89 03\n"  # row 3: its main number is in the list: the other becomes main
            "C,06 12 34 56 78,\n"                # row 4: a duplicate of row 2 only: dropped
            "D,01 45 67 89 00,06 12 34 56 78\n")  # row 5: both numbers taken (list, then file): dropped
    second = tmp_path / "b.csv"
    second.write_text(text)
    ticket = create_import(redis_client, T, second, "leads", region="FR")
    status = run_import_inline(redis_client, T, ticket.import_id)
    summary = status["summary"]
    assert (summary["contacts_added"], summary["duplicates"], summary["duplicate_phones"]) == (2, 2, 4)
    assert summary["duplicates_by_reason"] == {"duplicate_in_file": 2, "duplicate_in_list": 2}
    b = get_contact(redis_client, T, f"{ticket.import_id}-3")
    assert b["phone"] == "+33145678903" and [p["e164"] for p in b["phones"]] == ["+33145678903"]
    assert b["line_type"] == "fixed"
    assert contacts_for_phone(redis_client, T, "+33612345600") == [f"{_first_id(record)}-2"]
    assert record.query("SELECT phone FROM contacts WHERE id = %s", (f"{ticket.import_id}-3",)) == [("+33145678903",)]
    assert list_count(T, "leads") == 4
    report = [(int(e["row"]), e["reason"], e.get("first_row")) for e in jobs_errors(redis_client, ticket.import_id)]
    assert report == [(3, "duplicate_in_list", 3), (4, "duplicate_in_file", 2), (5, "duplicate_in_list", 5),
                      (5, "duplicate_in_file", 2)]
    assert staged_rows(record, ticket.import_id) == (0, 0)


def _first_id(record) -> str:
    return str(record.query("SELECT import_id FROM contacts WHERE phone = '+33612345600'")[0][0])


def jobs_errors(client: redis.Redis, import_id: str) -> list[dict]:
    from dialer.contacts.store import iter_errors

    return list(iter_errors(client, T, import_id))


def test_redis_holds_no_staged_row_while_an_import_runs(redis_client: redis.Redis, tmp_path: Path, record,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 200_000)
    rows = 40_000
    import_id, importer, chunks = started(redis_client, make_big(tmp_path / "m.csv", rows), "small")
    importer._work(coordinator=True)
    importer._wait_for_chunks(chunks)
    assert staged_rows(record, import_id) == (rows, rows)  # every row staged, in the record
    keys = Keys(T, import_id)
    owned = [*redis_client.scan_iter(match=keys.stg + "*"), *redis_client.scan_iter(match=keys.status + "*")]
    used = sum(int(redis_client.memory_usage(k) or 0) for k in owned)
    # status, counters, the chunk queue, leases and per-chunk counts: a few bytes a row at most (the Redis staging
    # it replaces held about 570 B a row)
    assert used < rows * 1, (used, sorted(k.decode() for k in owned))
    importer.commit()
    assert import_status(redis_client, T, import_id)["summary"]["contacts_added"] == rows
    assert staged_rows(record, import_id) == (0, 0)


def test_a_staged_row_is_the_row_contact_row_makes() -> None:
    # StagedRows.add builds the contacts row without contact_row's generic conversions (it runs for every row of
    # every import): both must agree, kept fields, priority and several numbers included.
    from dialer.contacts.columns import Mapping, plan_columns
    from dialer.contacts.rows import process_record
    from dialer.record.contacts import contact_row

    header = ["Téléphone", "Portable", "Prénom", "Code postal", "priority", "Ville"]
    cells = ["01 45 67 89 01", "+1 212 555 0100", "Zoé", "75011", "7", "Paris"]
    plan = plan_columns(header, Mapping(keep=["Ville", "priority"]), [cells])
    result = process_record(cells, 2, 2, plan, "FR")
    assert not result.rejected, result.errors
    contact = staging.contact_data(result, "imp-2", "leads", "spring", "imp", 2)
    rows = staging.StagedRows(None, T, "imp", "a1")  # type: ignore[arg-type]
    rows.add(dict(contact), 2, 3)
    assert rows.contacts[0] == (*contact_row(T, contact), "a1", 3)
    assert rows.phones == [(T, "imp", "a1", 2, 0, "imp-2", "+33145678901", "Téléphone"),
                           (T, "imp", "a1", 2, 1, "imp-2", "+12125550100", "Portable")]
    legacy, _ = staging.build_contact(result, "imp-2", "leads", "spring", "imp", 2)
    assert contact_row(T, legacy) == contact_row(T, contact)
