"""The registry import as an RQ job, run by our real RQ worker (burst mode, forked work horse) on real Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import redis
from rq import Queue

from dialer.jobs import DialerWorker
from dialer.registry.jobs import JOB_TIMEOUT, QUEUE, enqueue_import, import_registry_job
from dialer.registry.store import RegistryStore
from tests.registry_files import e164_fr, french_numbers, write_lines


def _run(client: redis.Redis, *args, **kwargs):
    queue = Queue(QUEUE, connection=client)
    job = queue.enqueue(import_registry_job, *args, **kwargs)
    DialerWorker([queue], connection=client).work(burst=True)
    job.refresh()
    return job


def test_import_job_through_a_worker(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    numbers = french_numbers(3000)
    path = write_lines(tmp_path / "upload-7f3a.tmp", [*numbers, "06 12 34 56 7"])  # one bad line
    job = _run(client, redis_url, "bloctel", str(path), False, file_name="bloctel-2026-11.txt",
               max_bad_share=0.01, obtained_at="2026-11-20T08:00:00+00:00")
    assert job.is_finished, job.latest_result()
    result = job.return_value()
    assert result["status"] == "committed" and result["version"] == 1 and result["rows"] == 3000
    assert result["invalid"] == 1 and [b["line"] for b in result["bad_lines"]] == [3001]
    assert job.meta["progress"]["stage"] == "commit"
    store = RegistryStore(client, refresh_interval=0.0)
    store.forget()
    assert store.status("bloctel").file_name == "bloctel-2026-11.txt"
    assert result["obtained_at"] == "2026-11-20T08:00:00+00:00"
    assert store.loaded_at("bloctel") == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # freshness from the download
    assert all(store.contains_many("bloctel", [e164_fr(n) for n in numbers]))

    changes = write_lines(tmp_path / "chg.tmp", [f"D,{numbers[0]}", "A,0999999999"])
    job = enqueue_import(client, redis_url, "bloctel", str(changes), delta=True, file_name="bloctel-changes.txt")
    assert job.timeout == JOB_TIMEOUT and job.origin == QUEUE
    DialerWorker([Queue(QUEUE, connection=client)], connection=client).work(burst=True)
    job.refresh()
    assert job.return_value()["status"] == "committed" and job.return_value()["kind"] == "delta"
    assert store.contains_many("bloctel", [e164_fr(numbers[0]), "+33999999999"]) == [False, True]


def test_refused_import_job_finishes_with_the_reason(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    path = write_lines(tmp_path / "bad.tmp", ["hello"] * 5 + french_numbers(10))
    job = _run(client, redis_url, "bloctel", str(path), False)
    assert job.is_finished
    result = job.return_value()
    assert result["status"] == "refused" and "malformed" in result["refused"]
    assert [b["line"] for b in result["bad_lines"]] == [1, 2, 3, 4, 5]
    assert RegistryStore(client).status("bloctel") is None
    # A download date without a time zone is refused, not guessed.
    job = _run(client, redis_url, "bloctel", str(write_lines(tmp_path / "ok.tmp", french_numbers(10))), False,
               obtained_at="2026-11-20T08:00:00")
    assert job.return_value()["status"] == "refused" and "time zone" in job.return_value()["refused"]
