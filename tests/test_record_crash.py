"""No lost write between Redis and the record (issue 18): kill the archiver process mid-copy, then stop PostgreSQL
mid-copy; at the end every audit entry is in the record exactly once, the derived rows match, the chain verifies
across the record and Redis, and Redis was trimmed only below what the record holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from dialer.audit import AuditEvent, AuditLog
from dialer.record.pgproc import PostgresProcess
from dialer.record.store import Record, RecordUnavailable
from dialer.record.url import parse_record_url
from dialer.record.verify import verify_chain

ROOT = Path(__file__).resolve().parents[1]
KEY = "crash-test-secret-key"
N = 3000  # decisions per tenant (every third one a call with its outcome)
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def fill(audit: AuditLog, tenant: str) -> int:
    events = []
    for i in range(N):
        allowed = i % 3 == 0
        events.append(AuditEvent("gate_decision", "gate", {
            "mode": "reserve", "campaign": "c1", "contact_id": f"k{i}", "person": f"p{i}", "allowed": allowed,
            "reasons": [] if allowed else [["QUIET_HOURS", "r", None]], "call_id": f"call{i}" if allowed else None},
            T0 + timedelta(seconds=i)))
        if allowed:
            events.append(AuditEvent("call_outcome", "engine", {"call_id": f"call{i}", "outcome": "answered",
                                                                 "person": f"p{i}", "call": {"talk_s": 1.0}},
                                     T0 + timedelta(seconds=i)))
    for start in range(0, len(events), 1000):
        audit.append_many(tenant, events[start:start + 1000])
    return len(events)


def archived(record: Record) -> int:
    for _ in range(50):
        try:
            rows = record.query("SELECT coalesce(sum(seq), 0) FROM archive_progress")
            return int(rows[0][0])
        except RecordUnavailable:
            time.sleep(0.2)
    raise AssertionError("record unreachable")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_archiver(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "dialer", "archiver", "--batch", "250", "--interval", "0.05"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.timeout(280)
def test_kill_archiver_and_postgres_mid_copy_loses_and_doubles_nothing(redis_url: str,
                                                                        redis_client: redis.Redis) -> None:
    pg = PostgresProcess().start()
    archiver = None
    try:
        url = pg.create_database("record")
        record = Record(parse_record_url(url), pool_size=2, timeout=2.0)
        record.migrate()
        audit = AuditLog(redis_client, KEY)
        total = fill(audit, "t1") + fill(audit, "t2")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_REDIS_URL": redis_url, "DIALER_RECORD_URL": url,
               "DIALER_SECRET_KEY": KEY, "DIALER_RECORD_REDIS_TAIL_HOURS": "0", "DIALER_LOG_LEVEL": "WARNING"}

        # 1. the archiver is killed (SIGKILL: no clean-up at all) in the middle of the copy
        archiver = start_archiver(env)
        wait_for(lambda: archived(record) >= total // 5, 120, "a fifth archived")
        archiver.send_signal(signal.SIGKILL)
        archiver.wait()
        killed_at = archived(record)
        assert killed_at < total, "the archiver finished before it was killed: make N larger"

        # 2. a new archiver carries on; PostgreSQL stops (immediate: as a crash) in the middle of its copy
        archiver = start_archiver(env)
        wait_for(lambda: archived(record) >= killed_at + total // 5, 120, "more archived")
        pg.stop("immediate")
        time.sleep(1.5)  # the archiver meets a dead record: it must trim nothing and retry
        pg.start()
        wait_for(lambda: archived(record) == total, 180, "everything archived")
        archiver.send_signal(signal.SIGTERM)
        assert archiver.wait(timeout=30) == 0, archiver.stderr.read().decode()[-2000:]
        archiver = None

        for tenant, expected in (("t1", total // 2), ("t2", total // 2)):
            rows = record.query("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM audit_archive "
                                "WHERE tenant = %s", (tenant,))[0]
            assert tuple(rows) == (expected, expected, 1, expected)  # nothing lost, nothing doubled
            assert record.query("SELECT count(*) FROM gate_decisions WHERE tenant = %s", (tenant,))[0][0] == N
            assert record.query("SELECT count(*) FROM call_records WHERE tenant = %s", (tenant,))[0][0] == N // 3
            assert record.query("SELECT count(*) FROM gate_denials WHERE tenant = %s", (tenant,))[0][0] == N - N // 3
            result = verify_chain(audit, record, tenant)
            assert result.ok and result.checked == expected and result.head_seq == expected, str(result)
            assert redis_client.xlen(f"t:{{{tenant}}}:audit") == 1  # trimmed to the last archived entry
        record.close()
    finally:
        if archiver is not None:
            archiver.kill()
            archiver.wait()
        pg.cleanup()
