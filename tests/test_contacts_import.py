"""Imports end to end against a real redis-server: staging, commit, dedupe, consents, error report,
RQ workers, a killed import, exports and the scrub report. Fixture files are written by the tests."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.registry import FinishedJobRegistry

from dialer.contacts import jobs
from dialer.contacts.columns import Mapping
from dialer.contacts.export import export
from dialer.contacts.jobs import create_import, enqueue_import, resume_imports, run_import_inline
from dialer.contacts.report import write_error_report
from dialer.contacts.scrub import scrub_list
from dialer.contacts.store import Keys, contacts_for_phone, get_contact, import_status, list_count, list_member_ids
from dialer.facts import FactStore
from dialer.jobs import InlineWorker
from dialer.record.contacts import campaign_count, member_ids
from dialer.record.current import contact_record
from rules.model import Attempt, Decision, Reason

T = "acme"
ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def run(client: redis.Redis, path: Path, list_id: str = "leads", **kw: object) -> dict:
    ticket = create_import(client, T, path, list_id, **kw)  # type: ignore[arg-type]
    assert ticket.duplicate_of is None
    return run_import_inline(client, T, ticket.import_id)


def error_rows(client: redis.Redis, import_id: str) -> list[dict[str, str]]:
    out = io.StringIO()
    write_error_report(client, T, import_id, out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def tenant_keys(client: redis.Redis, tenant: str = T) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=f"t:{{{tenant}}}:*", count=1000)}


def test_import_commits_contacts_with_normalized_phones(redis_client: redis.Redis, tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", "Prénom;Nom;Téléphone;Portable;Code postal;Salaire\n"
                 "Zoé;Lefèvre;01 45 67 89 01;06 12 34 56 78;75011;5000\n"
                 "Luc;Martin;+1 212 555 0100;;10001;1\n", "cp1252")
    status = run(redis_client, path)
    assert status["status"] == "committed"
    assert status["summary"]["contacts_added"] == 2
    assert status["format"]["encoding"] == "cp1252" and status["format"]["delimiter"] == ";"
    members = sorted(list_member_ids(redis_client, T, "leads"))
    assert len(members) == 2
    zoe = get_contact(redis_client, T, contacts_for_phone(redis_client, T, "+33612345678")[0])
    assert zoe is not None
    assert (zoe["first_name"], zoe["last_name"], zoe["postal_code"]) == ("Zoé", "Lefèvre", "75011")
    assert zoe["phone"] == "+33145678901" and zoe["line_type"] == "fixed"
    assert [p["e164"] for p in zoe["phones"]] == ["+33145678901", "+33612345678"]
    assert zoe["phones"][1]["line_type"] == "mobile" and zoe["timezones"] == ["Europe/Paris"]
    assert "Salaire" not in json.dumps(zoe) and "5000" not in json.dumps(zoe)  # data minimization
    luc = get_contact(redis_client, T, contacts_for_phone(redis_client, T, "+12125550100")[0])
    assert luc is not None
    assert (luc["phone_country"], luc["phone_subdivision"], luc["timezones"]) == ("US", "NY", ["America/New_York"])


@pytest.mark.parametrize(("encoding", "bom", "delimiter"), [
    ("utf-8", "", ","), ("utf-8", "\ufeff", ";"), ("utf-16-le", "\ufeff", "\t"), ("utf-16-be", "\ufeff", ","),
    ("cp1252", "", ";"), ("latin-1", "", "|"),
])
def test_every_encoding_imports_the_same_contacts(redis_client: redis.Redis, tmp_path: Path, encoding: str,
                                                   bom: str, delimiter: str) -> None:
    d = delimiter
    text = (f"{bom}nom{d}téléphone{d}ville\r\nBéatrice{d}06 11 22 33 44{d}\"Aix{d} en\r\nProvence\"\r\n"
            f"Noël{d}01.45.67.89.01{d}Sète\r\n")
    status = run(redis_client, write(tmp_path / "e.csv", text, encoding))
    assert status["summary"]["contacts_added"] == 2, status
    names = {get_contact(redis_client, T, cid)["last_name"] for cid in list_member_ids(redis_client, T, "leads")}
    assert names == {"Béatrice", "Noël"}
    city = get_contact(redis_client, T, contacts_for_phone(redis_client, T, "+33611223344")[0])["city"]
    assert city == f"Aix{d} en\r\nProvence"


def test_cr_only_line_ends(redis_client: redis.Redis, tmp_path: Path) -> None:
    status = run(redis_client, write(tmp_path / "mac.csv", "phone;nom\r0612345678;a\r0612345679;\"b\rc\"\r"))
    assert status["format"]["newline"] == "\r"
    assert status["summary"]["contacts_added"] == 2
    contact = get_contact(redis_client, T, contacts_for_phone(redis_client, T, "+33612345679")[0])
    assert contact["last_name"] == "b\rc"


def test_a_chunk_held_by_a_dead_worker_is_taken_over(redis_client: redis.Redis, tmp_path: Path, record,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 5_000)
    path = make_big(tmp_path / "lease.csv", 1000)
    ticket = create_import(redis_client, T, path, "leased", region="FR")
    importer = jobs.Importer(redis_client, T, ticket.import_id)
    importer._set(status="running")
    chunks = importer._plan(importer._params())
    keys = Keys(T, ticket.import_id)
    # Another worker claimed chunk 0, then died: its lease is already over.
    assert importer.scripts.claim(keys=[keys.todo, keys.claims], args=[time.time() - 1])
    importer._work(coordinator=True)
    assert redis_client.hlen(keys.done) == len(chunks) - 1
    importer._wait_for_chunks(len(chunks))
    importer.commit()
    status = import_status(redis_client, T, ticket.import_id)
    assert status["status"] == "committed" and status["summary"]["contacts_added"] == 1000


def test_headerless_file(redis_client: redis.Redis, tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", "Dupont,06 12 34 56 78\nMartin,06 12 34 56 79\n")
    status = run(redis_client, path)
    assert status["summary"]["rows_read"] == 2 and status["summary"]["contacts_added"] == 2
    assert status["columns"]["has_header"] is False


def test_broken_row_in_the_middle_is_reported_and_the_rest_imported(redis_client: redis.Redis,
                                                                     tmp_path: Path) -> None:
    lines = ["phone,name,city"] + [f"06123456{i:02d},n{i},c" for i in range(10)]
    lines.insert(6, "0612999999,too,many,cells,here")
    lines.insert(8, '0612888888,"unbalanced ' + "x" * 200_000)  # a quote never closed, then a huge field
    lines.append("0612777777,after,c")
    status = run(redis_client, write(tmp_path / "b.csv", "\n".join(lines) + "\n"))
    summary = status["summary"]
    assert summary["invalid_by_reason"].get("field_count") == 1
    rows = error_rows(redis_client, status["id"])
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["field_count"]["row"] == "7"
    assert contacts_for_phone(redis_client, T, "+33612777777")  # the rows after the damage are imported
    assert contacts_for_phone(redis_client, T, "+33612345604")
    assert summary["invalid"] >= 2  # the field_count row and the unreadable record
    assert summary["rows_read"] == summary["valid"] + summary["invalid"]


def test_error_report_content_and_summary(redis_client: redis.Redis, tmp_path: Path) -> None:
    text = ("phone,first name,consent_given_at,consent_source\n"
            "06 12 34 56 78,A,2024-03-01T10:00:00Z,web form\n"  # row 2: fine, consent
            "06 12 AB 56 78,B,,\n"  # row 3: letters
            "=1+2,C,,\n"  # row 4: a formula, refused
            ",D,,\n"  # row 5: no number
            "0612345678,E,,\n"  # row 6: duplicate of row 2
            "01 45 67 89 01 poste 12,F,yesterday,web\n")  # row 7: extension kept apart, bad consent date
    status = run(redis_client, write(tmp_path / "r.csv", text))
    s = status["summary"]
    assert (s["rows_read"], s["valid"], s["invalid"], s["duplicates"], s["contacts_added"]) == (6, 3, 3, 1, 2)
    assert s["invalid_by_reason"] == {"missing_phone": 1, "phone_has_letters": 1, "phone_unparseable": 1}
    assert s["duplicates_by_reason"] == {"duplicate_in_file": 1}
    rows = error_rows(redis_client, status["id"])
    got = [(r["row"], r["column"], r["value"], r["reason"], r["severity"]) for r in rows]
    assert got == [
        ("3", "phone", "06 12 AB 56 78", "phone_has_letters", "error"),
        ("4", "phone", "'=1+2", "phone_unparseable", "error"),  # the raw value, made formula-safe
        ("5", "phone", "", "missing_phone", "error"),
        ("7", "phone", "01 45 67 89 01 poste 12", "phone_extension", "warning"),
        ("7", "consent_given_at", "yesterday", "consent_bad_date", "error"),
        ("6", "phone", "'+33612345678", "duplicate_in_file", "duplicate"),
    ]
    assert "row 2" in rows[-1]["message"]
    consents = FactStore(redis_client).consents(T, "+33612345678")
    assert len(consents) == 1
    assert consents[0].given_at == datetime(2024, 3, 1, 10, tzinfo=UTC) and consents[0].source == "web form"
    assert FactStore(redis_client).consents(T, "+33145678901") == []  # bad date: no consent invented


def test_second_import_of_the_same_file_answers_the_first(redis_client: redis.Redis, tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "phone\n0612345678\n0612345679\n")
    first = run(redis_client, path)
    again = create_import(redis_client, T, path, "leads", region="FR")
    assert again.duplicate_of == first["id"]
    assert len(list(list_member_ids(redis_client, T, "leads"))) == 2
    # The same numbers in another file: imported as a new file, every row a duplicate of the list.
    other = run(redis_client, write(tmp_path / "s2.csv", "tel;nom\n06 12 34 56 78;x\n06 12 34 56 79;y\n"))
    assert other["summary"]["duplicates_by_reason"] == {"duplicate_in_list": 2}
    assert other["summary"]["contacts_added"] == 0
    assert len(list(list_member_ids(redis_client, T, "leads"))) == 2
    # Another tenant uploading the same file is not told about the first tenant's import.
    elsewhere = create_import(redis_client, "other", path, "leads", region="FR")
    assert elsewhere.duplicate_of is None


def test_dedupe_against_the_campaign_across_lists(redis_client: redis.Redis, tmp_path: Path, record) -> None:
    run(redis_client, write(tmp_path / "a.csv", "phone\n0612345678\n"), "list-a", campaign="spring")
    status = run(redis_client, write(tmp_path / "b.csv", "phone\n0612345678\n0612345600\n"), "list-b",
                 campaign="spring")
    assert status["summary"]["duplicates_by_reason"] == {"duplicate_in_campaign": 1}
    assert campaign_count(contact_record(), T, "spring") == 2  # in the record, not in Redis
    assert list_count(T, "list-b") == 1


def test_file_level_errors_fail_the_import_with_a_reason(redis_client: redis.Redis, tmp_path: Path) -> None:
    cases = {
        "empty_file": b"",
        "binary_file": b"PK\x03\x04" + bytes(range(256)) * 4,
        "duplicate_header": b"phone,name,Phone\n0612345678,a,0612345679\n",
        "no_phone_column": b"nom,prenom\na,b\n",
        "no_rows": b"phone,name\n",
    }
    for code, content in cases.items():
        path = tmp_path / f"{code}.csv"
        path.write_bytes(content)
        status = run(redis_client, path, list_id=code.replace("_", "-"))
        assert (status["status"], status["error_code"]) == ("failed", code)
        assert status["error"]
        assert list_count(T, code.replace("_", "-")) == 0


def test_mapping_file_and_kept_columns(redis_client: redis.Redis, tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "Ref client,Contact,Numéro,Segment,Notes\nC1,Ann,06 12 34 56 78,gold,secret\n")
    mapping = Mapping(columns={"Numéro": "phone", "Contact": "full_name", "Ref client": "external_id"},
                      keep=["Segment"])
    status = run(redis_client, path, mapping=mapping)
    contact = get_contact(redis_client, T, next(iter(list_member_ids(redis_client, T, "leads"))))
    assert contact["external_id"] == "C1" and contact["full_name"] == "Ann" and contact["x.Segment"] == "gold"
    assert "secret" not in json.dumps(contact)
    assert status["columns"]["dropped"] == ["Notes"]


def make_big(path: Path, rows: int, start: int = 0) -> Path:
    with path.open("w") as fh:
        fh.write("phone,first_name,note\n")
        for i in range(start, start + rows):
            fh.write(f"+336{i:08d},n{i},\"a note, quoted\"\n")
    return path


def test_rq_workers_import_in_parallel_chunks(redis_client: redis.Redis, tmp_path: Path, record,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CHUNK_BYTES", 20_000)  # many chunks from a small file
    path = make_big(tmp_path / "big.csv", 3000)
    with path.open("a") as fh:
        fh.write("+33600000007,dup,x\n")  # a duplicate of row 9, at the very end
    ticket = enqueue_import(redis_client, T, path, "big", region="FR", helpers=2)
    queue = Queue("imports", connection=redis_client)
    assert queue.count == 3  # the coordinator, then two helpers
    InlineWorker([queue], connection=redis_client).work(burst=True)  # one worker: helpers find it done
    status = import_status(redis_client, T, ticket.import_id)
    assert status["status"] == "committed", status
    assert int(status["chunks"]) > 5
    assert status["rows_done"] == status["rows_total"] == 3001
    assert status["summary"]["contacts_added"] == 3000 and status["summary"]["duplicates"] == 1
    dup = error_rows(redis_client, ticket.import_id)[-1]
    assert (dup["row"], dup["reason"]) == ("3002", "duplicate_in_file")
    job = queue.fetch_job(status["job_id"])
    assert job.meta["rows_done"] == job.meta["rows_total"] == 3001
    assert not [k for k in tenant_keys(redis_client) if ":staging:" in k]


def test_two_worker_processes_share_the_chunks(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    path = make_big(tmp_path / "par.csv", 40_000)
    ticket = enqueue_import(redis_client, T, path, "par", region="FR", helpers=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_REDIS_URL": redis_url, "DIALER_LOG_LEVEL": "WARNING"}
    code = ("import sys, redis; from dialer.jobs import DialerWorker; from dialer.contacts import jobs; "
            "jobs.CHUNK_BYTES = 100_000; "
            f"DialerWorker(['imports'], connection=redis.Redis.from_url({redis_url!r})).work(burst=True)")
    workers = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env) for _ in range(2)]
    for worker in workers:
        assert worker.wait(180) == 0
    status = import_status(redis_client, T, ticket.import_id)
    assert status["status"] == "committed" and status["summary"]["contacts_added"] == 40_000
    assert int(status["chunks"]) > 10
    helper = [Queue("imports", connection=redis_client).fetch_job(j) for j in
              FinishedJobRegistry("imports", connection=redis_client).get_job_ids()]
    staged_by_helper = [j.return_value() for j in helper if j.func_name.endswith("import_chunk_job")]
    assert len(staged_by_helper) == 1 and staged_by_helper[0] >= 1  # the second process did stage chunks


def test_killed_import_leaves_nothing_visible(redis_url: str, redis_client: redis.Redis, tmp_path: Path,
                                              record) -> None:
    path = make_big(tmp_path / "kill.csv", 60_000)
    ticket = create_import(redis_client, T, path, "killed", region="FR")
    before = tenant_keys(redis_client)
    code = ("import redis, sys; from dialer.contacts.jobs import run_import_inline; "
            f"run_import_inline(redis.Redis.from_url({redis_url!r}), {T!r}, {ticket.import_id!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = int(redis_client.hget(Keys(T, ticket.import_id).status, "rows_done") or 0)
            if done >= 5000:
                break
            assert proc.poll() is None, "the import ended before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert import_status(redis_client, T, ticket.import_id)["status"] == "running"
    visible = {k for k in tenant_keys(redis_client) - before if ":staging:" not in k}
    assert visible == set(), visible  # staged rows only: no contact, no phone index, no list
    assert list_count(T, "killed") == 0  # nothing in the record either
    # A worker starting later closes the abandoned import and removes its staging keys.
    assert resume_imports(redis_client, stale_after=0) == [ticket.import_id]
    status = import_status(redis_client, T, ticket.import_id)
    assert (status["status"], status["error_code"]) == ("failed", "abandoned")
    assert {k for k in tenant_keys(redis_client) if ":staging:" in k} == set()
    assert record.query("SELECT COUNT(*) FROM import_contacts") == [(0,)]  # and its staged rows in the record
    assert record.query("SELECT COUNT(*) FROM import_phones") == [(0,)]
    # The same file may then be imported again, completely.
    again = create_import(redis_client, T, path, "killed", region="FR")
    assert again.duplicate_of is None
    assert run_import_inline(redis_client, T, again.import_id)["summary"]["contacts_added"] == 60_000


def test_import_interrupted_after_its_commit_point_is_finished_by_resume(redis_client: redis.Redis,
                                                                          tmp_path: Path) -> None:
    path = make_big(tmp_path / "c.csv", 2000)
    ticket = create_import(redis_client, T, path, "rolled", region="FR")
    importer = jobs.Importer(redis_client, T, ticket.import_id)
    importer._set(status="running")
    chunks = importer._plan(importer._params())
    importer._work(coordinator=True)
    assert redis_client.hlen(Keys(T, ticket.import_id).done) == len(chunks)
    # The commit point, then the coordinator "dies" before the record's transaction: nothing is visible.
    redis_client.hset(Keys(T, ticket.import_id).status, mapping={"status": "committing", "commit_token": "t1"})
    assert list_count(T, "rolled") == 0  # the list appears only at the end
    assert resume_imports(redis_client) == []  # its heartbeat is fresh: the coordinator may be alive
    assert resume_imports(redis_client, stale_after=0) == [ticket.import_id]
    status = import_status(redis_client, T, ticket.import_id)
    assert status["status"] == "committed" and status["summary"]["contacts_added"] == 2000
    assert list_count(T, "rolled") == 2000


def test_a_commit_that_dies_after_the_records_transaction_counts_once(redis_client: redis.Redis,
                                                                      tmp_path: Path, record) -> None:
    from dialer.contacts.publish import publish

    path = make_big(tmp_path / "c.csv", 1500)
    with path.open("a") as fh:
        fh.write("+33600000007,dup,x\n")  # a duplicate of row 9
    run(redis_client, write(tmp_path / "before.csv", "phone\n+33600000011\n"), "rolled")  # already in the list
    ticket = create_import(redis_client, T, path, "rolled", region="FR")
    importer = jobs.Importer(redis_client, T, ticket.import_id)
    importer._set(status="running")
    importer._plan(importer._params())
    importer._work(coordinator=True)
    redis_client.hset(Keys(T, ticket.import_id).status, mapping={"status": "committing", "commit_token": "t1"})
    # The record's transaction commits, then the coordinator dies before Redis's counters were written.
    outcome = publish(contact_record(), T, ticket.import_id, [], "rolled", "")
    assert outcome.contacts == 1499 and outcome.duplicate_rows == 2
    assert list_count(T, "rolled") == 1500  # the whole list at once
    assert resume_imports(redis_client, stale_after=0) == [ticket.import_id]
    status = import_status(redis_client, T, ticket.import_id)
    assert status["status"] == "committed"
    summary = status["summary"]
    assert (summary["contacts_added"], summary["duplicates"]) == (1499, 2)  # the retry found the same, once
    assert summary["duplicates_by_reason"] == {"duplicate_in_file": 1, "duplicate_in_list": 1}
    assert [r["reason"] for r in error_rows(redis_client, ticket.import_id)] == ["duplicate_in_list",
                                                                                "duplicate_in_file"]
    assert list_count(T, "rolled") == 1500
    assert not [k for k in tenant_keys(redis_client) if ":staging:" in k or ":contact:" in k]


# ---- exports and scrub ---------------------------------------------------------------------------------

def test_exports_are_formula_safe(redis_client: redis.Redis, tmp_path: Path) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["phone", "first_name", "last_name", "city"],
                                  ["0612345678", '=HYPERLINK("http://x")', "@SUM(A1)", "-2+3"],
                                  ["0612345679", "\tTab", "\rCR", "+cmd"]])
    status = run(redis_client, write(tmp_path / "x.csv", buffer.getvalue()))
    assert status["summary"]["contacts_added"] == 2
    out = io.StringIO()
    assert export(redis_client, T, "contacts", out, list_id="leads") == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    for row in rows:
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", value
    first = next(r for r in rows if r["phone"] == "'+33612345678")
    assert (first["first_name"], first["last_name"], first["city"]) == \
        ("'=HYPERLINK(\"http://x\")", "'@SUM(A1)", "'-2+3")
    # An export can be imported again: the apostrophe in front of + is understood.
    again = tmp_path / "again.csv"
    again.write_text(out.getvalue())
    status = run(redis_client, again, "reimported")
    assert status["summary"]["contacts_added"] == 2


def test_attempt_and_outcome_exports_come_from_the_facts_history(redis_client: redis.Redis,
                                                                 tmp_path: Path) -> None:
    run(redis_client, write(tmp_path / "a.csv", "phone\n0612345678\n0612345679\n"))
    facts = FactStore(redis_client)
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    facts.record_attempt(T, "+33612345678", Attempt(at=t0, campaign="spring", outcome="no_answer", call_id="c1"))
    facts.record_attempt(T, "+33612345678", Attempt(at=t0 + timedelta(days=1), campaign="spring", outcome="answered",
                                                    call_id="c2"))
    out = io.StringIO()
    assert export(redis_client, T, "attempts", out, list_id="leads") == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["phone"], r["call_id"], r["outcome"]) for r in rows] == [
        ("'+33612345678", "c1", "no_answer"), ("'+33612345678", "c2", "answered")]
    out = io.StringIO()
    export(redis_client, T, "outcomes", out, list_id="leads")
    rows = {r["phone"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert (rows["'+33612345678"]["attempts"], rows["'+33612345678"]["last_outcome"]) == ("2", "answered")
    assert rows["'+33612345679"]["attempts"] == "0"


def test_scrub_report_sorts_contacts_into_now_later_never(redis_client: redis.Redis, tmp_path: Path) -> None:
    run(redis_client, write(tmp_path / "s.csv", "phone\n0612345601\n0612345602\n0612345603\n0612345604\n"))
    at = datetime(2026, 3, 2, 21, tzinfo=UTC)
    tomorrow = datetime(2026, 3, 3, 8, tzinfo=UTC)

    def decide(items: list[tuple[dict, str]], when: datetime) -> list[Decision]:
        # A decision function over facts a test can control: the last digit picks the answer.
        out = []
        for _, e164 in items:
            last = e164[-1]
            if last == "1":
                out.append(Decision(True, when))
            elif last == "2":
                out.append(Decision(False, when, (Reason("OUTSIDE_CALLING_HOURS", "too late", "fr/hours", "",
                                                         tomorrow),), tomorrow))
            elif last == "3":
                out.append(Decision(False, when, (Reason("NATIONAL_REGISTRY", "on Bloctel", "fr/bloctel", ""),)))
            else:
                out.append(Decision(False, when, (Reason("COMPANY_DNC", "opted out", "dnc", ""),)))
        return out

    out = io.StringIO()
    summary = scrub_list(redis_client, T, "leads", decide, at, out)
    assert (summary["now"], summary["later"], summary["never"]) == (1, 1, 2)
    assert summary["earliest_later"] == tomorrow.isoformat()
    assert summary["never_by_reason"] == {"NATIONAL_REGISTRY": 1, "COMPANY_DNC": 1}
    rows = {r["phone"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows["'+33612345602"]["verdict"] == "later" and rows["'+33612345602"]["earliest"] == tomorrow.isoformat()
    assert rows["'+33612345603"]["reasons"] == "NATIONAL_REGISTRY"


def test_export_runs_as_an_rq_job(redis_client: redis.Redis, tmp_path: Path) -> None:
    from dialer.contacts.export import enqueue_export

    run(redis_client, write(tmp_path / "e.csv", "phone,nom\n0612345678,a\n0612345679,b\n"))
    target = tmp_path / "out.csv"
    job_id = enqueue_export(redis_client, T, "contacts", str(target), list_id="leads")
    InlineWorker([Queue("exports", connection=redis_client)], connection=redis_client).work(burst=True)
    job = Queue("exports", connection=redis_client).fetch_job(job_id)
    assert job.return_value() == 2 and job.meta["rows"] == 2
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")  # a byte-order mark: Excel reads accents right
    rows = csv.DictReader(target.open(encoding="utf-8-sig"))
    assert sorted(r["phone"] for r in rows) == ["'+33612345678", "'+33612345679"]
    assert not Path(f"{target}.part").exists()


def test_a_row_keeps_its_numbers_that_are_not_duplicates(redis_client: redis.Redis, tmp_path: Path, record) -> None:
    text = "nom,mobile,fixe\nA,06 12 34 56 78,\nB,01 45 67 89 01,06 12 34 56 78\n"
    status = run(redis_client, write(tmp_path / "p.csv", text))
    assert status["summary"]["contacts_added"] == 2 and status["summary"]["duplicate_phones"] == 1
    b = get_contact(redis_client, T, contacts_for_phone(redis_client, T, "+33145678901")[0])
    assert [p["e164"] for p in b["phones"]] == ["+33145678901"] and b["phone"] == "+33145678901"
    assert contacts_for_phone(redis_client, T, "+33612345678") == [f"{status['id']}-2"]
    dup = error_rows(redis_client, status["id"])[-1]
    assert (dup["row"], dup["column"], dup["reason"]) == ("3", "fixe", "duplicate_in_file")


def test_scrub_through_the_real_gate(redis_client: redis.Redis, tmp_path: Path) -> None:
    """The stateful gate (dialer/gate.py) with the real packs, a real Bloctel load and a real opt-out."""
    from dialer.contacts.scrub import gate_decider
    from dialer.gate import Gate
    from dialer.registry.loader import load_registry
    from dialer.registry.store import RegistryStore
    from rules import load_packs
    from rules.model import Campaign

    tuesday_1030_paris = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
    tuesday_2130_paris = datetime(2026, 3, 3, 20, 30, tzinfo=UTC)
    bloctel = tmp_path / "bloctel.txt"
    bloctel.write_text("0145678999\n")
    load_registry(redis_client, "bloctel", bloctel, loaded_at=tuesday_1030_paris - timedelta(days=2))
    run(redis_client, write(tmp_path / "l.csv", "téléphone;code postal;pays\n01 45 67 89 01;75011;FR\n"
                            "01 45 67 89 99;75011;FR\n01 45 67 89 02;75011;FR\n"))
    FactStore(redis_client).add_optout(T, "+33145678902", at=tuesday_1030_paris - timedelta(days=9), source="api")
    gate = Gate(redis_client, load_packs(), RegistryStore(redis_client, refresh_interval=0.0), secret_key="k")
    decide = gate_decider(gate, Campaign(id="spring", tenant=T, purpose="telemarketing", caller_id="+33162000000"))

    out = io.StringIO()
    morning = scrub_list(redis_client, T, "leads", decide, tuesday_1030_paris, out)
    verdicts = {r["phone"]: (r["verdict"], r["reasons"]) for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert verdicts["'+33145678901"] == ("now", "")
    assert verdicts["'+33145678999"][0] == "never" and "REGISTRY" in verdicts["'+33145678999"][1]
    assert verdicts["'+33145678902"][0] == "never" and "DNC" in verdicts["'+33145678902"][1]
    assert (morning["now"], morning["later"], morning["never"]) == (1, 0, 2)

    evening = scrub_list(redis_client, T, "leads", decide, tuesday_2130_paris)
    assert (evening["now"], evening["later"], evening["never"]) == (0, 1, 2)
    earliest = datetime.fromisoformat(evening["earliest_later"])
    assert earliest == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Paris


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_a_killed_work_horse_is_reconciled_by_the_status_poller(redis_url: str, redis_client: redis.Redis,
                                                                tmp_path: Path) -> None:
    from dialer.contacts.jobs import reconcile_import

    path = make_big(tmp_path / "horse.csv", 80_000)
    ticket = enqueue_import(redis_client, T, path, "horse", region="FR", helpers=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_REDIS_URL": redis_url, "DIALER_LOG_LEVEL": "WARNING"}
    worker = subprocess.Popen([sys.executable, "-m", "dialer", "worker", "--burst", "--queues", "imports"],
                              cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while int(redis_client.hget(Keys(T, ticket.import_id).status, "rows_done") or 0) < 5000:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.01)
        [horse] = _children(worker.pid)  # RQ runs each job in a forked work horse
        os.kill(horse, signal.SIGKILL)
        assert worker.wait(60) == 0  # the worker survives, marks the job failed, and (burst) exits
    finally:
        if worker.poll() is None:
            worker.kill()
    assert import_status(redis_client, T, ticket.import_id)["status"] == "running"  # nobody told it yet
    status = reconcile_import(redis_client, T, ticket.import_id)
    assert (status["status"], status["error_code"]) == ("failed", "abandoned")
    assert not [k for k in tenant_keys(redis_client) if ":staging:" in k or ":contact:" in k]


def test_erasure_request_removes_every_trace_of_the_contact_but_not_the_facts(redis_client: redis.Redis,
                                                                               tmp_path: Path) -> None:
    from dialer.contacts.store import erase_phone

    text = ("nom,mobile,fixe,consent_given_at\nA,06 12 34 56 78,01 45 67 89 01,2024-01-01\n"
            "B,06 12 34 56 79,,\n")
    status = run(redis_client, write(tmp_path / "g.csv", text), campaign="spring")
    assert erase_phone(redis_client, T, "+33145678901") == [f"{status['id']}-2"]  # by its second number
    assert get_contact(redis_client, T, f"{status['id']}-2") is None
    assert contacts_for_phone(redis_client, T, "+33612345678") == []  # its other number too
    assert sorted(list_member_ids(redis_client, T, "leads")) == [f"{status['id']}-3"]
    assert list(member_ids(contact_record(), T, campaign="spring")) == [f"{status['id']}-3"]
    assert list_count(T, "leads") == 1
    assert len(FactStore(redis_client).consents(T, "+33612345678")) == 1  # evidence stays
    assert erase_phone(redis_client, T, "+33145678901") == []


def test_concurrent_imports_into_one_list_never_duplicate_a_number(redis_url: str, redis_client: redis.Redis,
                                                                   tmp_path: Path, record) -> None:
    a = make_big(tmp_path / "a.csv", 20_000)  # numbers 0 .. 19,999
    b = make_big(tmp_path / "b.csv", 20_000, start=10_000)  # numbers 10,000 .. 29,999: half shared
    first = enqueue_import(redis_client, T, a, "shared", region="FR", helpers=0)
    second = enqueue_import(redis_client, T, b, "shared", region="FR", helpers=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_REDIS_URL": redis_url, "DIALER_LOG_LEVEL": "WARNING"}
    workers = [subprocess.Popen([sys.executable, "-m", "dialer", "worker", "--burst", "--queues", "imports"],
                                cwd=ROOT, env=env) for _ in range(2)]
    for worker in workers:
        assert worker.wait(180) == 0
    s1, s2 = (import_status(redis_client, T, t.import_id) for t in (first, second))
    assert s1["status"] == s2["status"] == "committed"
    assert s1["summary"]["contacts_added"] + s2["summary"]["contacts_added"] == 30_000
    assert s1["summary"]["duplicates"] + s2["summary"]["duplicates"] == 10_000
    assert list_count(T, "shared") == 30_000
    assert contact_record().query("SELECT COUNT(DISTINCT p.phone) FROM contact_phones p JOIN list_members m ON "
                                  "m.tenant = p.tenant AND m.contact_id = p.contact_id WHERE m.list_id = 'shared'"
                                  ) == [(30_000,)]
    assert redis_client.hget(Keys(T).list("shared"), "contacts") == b"30000"
    assert all(len(contacts_for_phone(redis_client, T, f"+336{i:08d}")) == 1 for i in range(0, 30_000, 997))


def test_short_quote_left_open_in_a_dropped_column_is_reported_not_swallowed(redis_client: redis.Redis,
                                                                             tmp_path: Path) -> None:
    # The lenient csv parser closes an open quote at the end of the file without a word: the rows after it
    # became the dropped "note" cell and vanished from the summary. They must be named as not imported.
    text = ('phone,name,note\n0612345693,"A\nB",x\n0612345694,C,"open quote\n'
            "0612345695,D,y\n0612345696,E,z\n")
    status = run(redis_client, write(tmp_path / "q.csv", text))
    s = status["summary"]
    assert s["invalid_by_reason"] == {"malformed_record": 1}
    assert (s["rows_read"], s["valid"], s["invalid"]) == (2, 1, 1)
    [entry] = error_rows(redis_client, status["id"])
    assert (entry["row"], entry["line"], entry["reason"]) == ("3", "4", "malformed_record")
    assert "never closed" in entry["message"] and "3 lines from line 4" in entry["message"]
    assert not contacts_for_phone(redis_client, T, "+33612345694")  # refused whole, not half-read
    assert contacts_for_phone(redis_client, T, "+33612345693")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_blank_lines_above_the_header_are_skipped(redis_client: redis.Redis, tmp_path: Path, encoding: str) -> None:
    # The header was detected below the blank lines but the chunk planner skipped only the first record,
    # so the header itself was imported as a data row (phone_has_letters on "phone").
    status = run(redis_client, write(tmp_path / "b.csv", "\n\nphone,name\n\n0612345610,A\n\n", encoding))
    s = status["summary"]
    assert (s["rows_read"], s["valid"], s["invalid"]) == (1, 1, 0), s
    assert error_rows(redis_client, status["id"]) == []
    assert get_contact(redis_client, T, contacts_for_phone(redis_client, T, "+33612345610")[0])["row"] == "5"


@pytest.mark.parametrize("value", ["=1+2", "+1+2", "-1+2", "@SUM(A1)", "\t=1+2", "\r=1+2"])
def test_every_dangerous_first_character_is_escaped(value: str) -> None:
    from dialer.contacts.csvsafe import protect

    assert protect(value) == "'" + value
    assert protect("a" + value) == "a" + value


def test_error_report_escapes_raw_values_starting_with_tab_or_cr(redis_client: redis.Redis, tmp_path: Path) -> None:
    # Imported fields are stripped, so only the error report (raw values) can carry a leading tab or CR.
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["phone", "name"], ["\t=1+2", "a"], ["\r@SUM(A1)", "b"], ["0612345678", "c"]])
    status = run(redis_client, write(tmp_path / "t.csv", buffer.getvalue()))
    values = [r["value"] for r in error_rows(redis_client, status["id"])]
    assert values == ["'\t=1+2", "'\r@SUM(A1)"]


def test_safe_writer_quotes_a_bare_carriage_return() -> None:
    # csv.writer(lineterminator="\n") left "a\rb" unquoted: readers then split the row in two.
    from dialer.contacts.csvsafe import SafeWriter

    out = io.StringIO()
    writer = SafeWriter(out)
    writer.row(["a\rb", "c"])
    writer.row(["d", "e"])
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [["a\rb", "c"], ["d", "e"]]
    assert out.getvalue().endswith('c\nd,e\n')


def test_consent_dated_after_the_import_is_recorded_and_reported(redis_client: redis.Redis, tmp_path: Path) -> None:
    # "2099-01-01" (a typo for a past date) was recorded silently; the gate ignores a consent until its date,
    # so the client believed the person could be called. It is kept (evidence) and reported as a warning.
    text = "tel;date_consentement;consent_source\n0612340003;2099-01-01;web\n0612340004;2024-05-01;web\n"
    status = run(redis_client, write(tmp_path / "c.csv", text))
    assert status["summary"]["consents"] == 2 and status["summary"]["warnings"] == 1
    [entry] = error_rows(redis_client, status["id"])
    assert (entry["row"], entry["column"], entry["value"], entry["reason"], entry["severity"]) == \
        ("2", "date_consentement", "2099-01-01", "consent_future_date", "warning")
    assert FactStore(redis_client).consents(T, "+33612340003")[0].given_at.year == 2099


def test_file_changed_after_registration_is_not_imported(redis_client: redis.Redis, tmp_path: Path) -> None:
    # The content hash (duplicate uploads) is taken at registration; the workers read the file later. A file
    # rewritten in between was imported with the old hash: the next upload of the old bytes was then
    # "already imported" although they never were.
    path = write(tmp_path / "l.csv", "phone\n0612345678\n")
    ticket = create_import(redis_client, T, path, "leads")
    write(path, "phone\n0612345678\n0612345679\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    status = run_import_inline(redis_client, T, ticket.import_id)
    assert (status["status"], status["error_code"]) == ("failed", "file_changed")
    assert not list(list_member_ids(redis_client, T, "leads"))
    assert run(redis_client, path)["summary"]["contacts_added"] == 2  # the new content imports normally
