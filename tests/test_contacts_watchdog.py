"""Issue 16, fault 4: killed import workers. Real `dialer worker` processes on a real redis-server: the worker
running an import's coordinator is SIGKILLed with its work horse; nobody polls the import. The surviving worker's
watchdog (dialer/contacts/watchdog.py) finds it by heartbeat, fails it before its commit point (its helper stops
staging and removes what it wrote) or finishes it after; contacts of an unfinished commit are never readable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from rq.job import Job

from dialer.contacts import jobs
from dialer.contacts.jobs import create_import, enqueue_import
from dialer.contacts.store import Keys, get_contact, list_count, list_member_ids
from dialer.contacts.watchdog import STALE_SECONDS, sweep
from tests.test_contacts_import import ROOT, T, _children, make_big


def start_worker(redis_url: str, name: str, chunk_bytes: int = 100_000) -> subprocess.Popen:
    """`dialer worker --queues imports` (not burst: it keeps watching), with small chunks so a helper has work."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_REDIS_URL": redis_url, "DIALER_LOG_LEVEL": "WARNING"}
    code = (f"from dialer.contacts import jobs; jobs.CHUNK_BYTES = {chunk_bytes}; from dialer.cli import main; "
            f"raise SystemExit(main(['worker', '--queues', 'imports', '--name', {name!r}]))")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)


def wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - start


def status_field(client: redis.Redis, import_id: str, name: str) -> str | None:
    value = client.hget(Keys(T, import_id).status, name)  # read directly: no poller reconciles anything
    return None if value is None else value.decode()


def staging_keys(client: redis.Redis, import_id: str) -> list[bytes]:
    return list(client.scan_iter(match=Keys(T, import_id).stg + "*", count=1000))


def test_a_killed_coordinator_is_failed_by_heartbeat_and_its_helper_stops(redis_url, redis_client, tmp_path):
    path = make_big(tmp_path / "big.csv", 120_000)
    workers = {name: start_worker(redis_url, name) for name in ("wa", "wb")}
    try:
        time.sleep(1.0)  # both idle on the queue
        ticket = enqueue_import(redis_client, T, path, "killed", region="FR", helpers=1)
        wait_for(lambda: int(status_field(redis_client, ticket.import_id, "rows_done") or 0) >= 5000, 60,
                 "staging under way")
        holder = Job.fetch(ticket.job_id, connection=redis_client).worker_name or ""
        name = holder.split(".", 1)[0]
        victim = workers[name]
        for pid in _children(victim.pid):
            os.kill(pid, signal.SIGKILL)  # the work horse running the coordinator
        os.kill(victim.pid, signal.SIGKILL)  # and its worker: nobody is left to report the job failed
        victim.wait(10)
        killed_at = time.monotonic()
        survivor = workers["wb" if name == "wa" else "wa"]
        wait_for(lambda: status_field(redis_client, ticket.import_id, "status") == "failed", 3 * STALE_SECONDS,
                 "abandoned import failed by the watchdog")
        detected = time.monotonic() - killed_at
        assert status_field(redis_client, ticket.import_id, "error_code") == "abandoned"
        # the helper (on the survivor) stops staging for the dead import and removes what it wrote
        wait_for(lambda: not staging_keys(redis_client, ticket.import_id), 30, "staging removed")
        time.sleep(1.0)
        assert not staging_keys(redis_client, ticket.import_id)
        assert survivor.poll() is None  # the surviving worker goes on
        assert not list(redis_client.scan_iter(match=f"t:{{{T}}}:contact:{ticket.import_id}-*", count=1000))
        assert list_count(T, "killed") == 0  # nothing in the record
        print(f"dead coordinator detected and failed {detected:.1f} s after the kill")
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                for pid in _children(proc.pid):
                    os.kill(pid, signal.SIGKILL)
                proc.kill()
                proc.wait(10)


def interrupted_after_commit_point(client: redis.Redis, tmp_path: Path, rows: int) -> str:
    """An import whose coordinator died after its commit point, in the middle of the record's transaction (so
    rolled back: dialer/contacts/publish.py)."""
    path = make_big(tmp_path / "c.csv", rows)
    ticket = create_import(client, T, path, "rolled", region="FR")
    importer = jobs.Importer(client, T, ticket.import_id)
    importer._set(status="running")
    importer._plan(importer._params())
    importer._work(coordinator=True)
    keys = Keys(T, ticket.import_id)
    client.hset(keys.status, mapping={"status": "committing", "commit_token": "t1",
                                      "alive_at": f"{time.time():.3f}"})
    return ticket.import_id


def test_contacts_of_an_unfinished_commit_are_not_readable(redis_client, tmp_path):
    import_id = interrupted_after_commit_point(redis_client, tmp_path, 300)
    assert get_contact(redis_client, T, f"{import_id}-2") is None  # not there for any reader
    assert list_count(T, "rolled") == 0
    assert sweep(redis_client) == []  # alive a moment ago: not taken
    redis_client.hset(Keys(T, import_id).status, "alive_at", f"{time.time() - 60:.3f}")
    assert sweep(redis_client) == [(import_id, "committed")]
    assert sweep(redis_client) == []  # once
    assert get_contact(redis_client, T, f"{import_id}-2")["phone"] == "+33600000000"
    assert len(list(list_member_ids(redis_client, T, "rolled"))) == 300


def test_a_commit_whose_coordinator_died_is_finished_without_a_poll(redis_url, redis_client, tmp_path):
    import_id = interrupted_after_commit_point(redis_client, tmp_path, 2000)
    worker = start_worker(redis_url, "wc")
    try:
        took = wait_for(lambda: status_field(redis_client, import_id, "status") == "committed",
                        3 * STALE_SECONDS + 10, "commit finished by the watchdog")
        assert list_count(T, "rolled") == 2000
        assert not staging_keys(redis_client, import_id)
        print(f"interrupted commit finished {took:.1f} s after its coordinator's last beat")
    finally:
        for pid in _children(worker.pid):
            os.kill(pid, signal.SIGKILL)
        worker.kill()
        worker.wait(10)
