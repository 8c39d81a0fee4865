"""Benchmark of the archiver (issue 18): audit entries copied from Redis into the record per second, and how far
the record lags behind while the gate writes 2,000 decisions a second.

Starts its own redis-server and (for postgresql) its own PostgreSQL (initdb in a temp dir, free loopback port),
never the system ones. Two measurements per store:
  1. throughput: --backlog gate-decision entries (realistic payloads, a call outcome for every third) appended
     first, then one `dialer archiver` process drains them (record transaction per --batch entries; Redis trimmed
     behind it): entries/s;
  2. lag: a writer appends gate decisions at --rate per second (batches of 100 every 50 ms, the gate's own audit
     append script) for --seconds while the archiver runs; every 0.5 s the lag is sampled (entries and seconds
     between the newest entry in Redis and the record's cursor): p50, p95, max.

    python bench/archiver_bench.py [--store postgresql|sqlite|both] [--backlog 100000] [--rate 2000] [--seconds 60]
        [--keys 100000] [--idle 35]

Also: redis-server CPU per entry drained, and per second while the caught-up archiver only polls (its keyspace
SCAN for tenants included: --idle should span a rescan period, 30 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialer.audit import AuditEvent, AuditLog  # noqa: E402
from dialer.record.pgproc import PostgresProcess  # noqa: E402
from dialer.record.store import Record  # noqa: E402
from dialer.record.url import parse_record_url  # noqa: E402
from dialer.redisproc import RedisProcess  # noqa: E402

KEY = "bench-secret-key"
TENANTS = ("t1", "t2")


def events(audit: AuditLog, start: int, n: int, at: datetime) -> list[AuditEvent]:
    out = []
    for i in range(start, start + n):
        allowed = i % 3 == 0
        ref = audit.person_ref(f"+3314567{i % 10000:04d}")
        payload = {"mode": "reserve", "campaign": "c1", "contact_id": f"imp-{i}", "person": ref,
                   "phone": "+33*******01", "allowed": allowed,
                   "reasons": [] if allowed else [["QUIET_HOURS", "fr.hours", "2026-12-07T08:00:00Z"]],
                   "next_allowed_at": None, "packs": ["fr@2026.11", "eu@2026.10"], "jurisdictions": ["FR"],
                   "version": 3, "registries": {"bloctel": "2026-12-01T00:00:00Z"}}
        if allowed:
            payload["call_id"] = f"call-{i}"
        out.append(AuditEvent("gate_decision", "gate", payload, at))
        if allowed and i % 6 == 0:
            out.append(AuditEvent("call_outcome", "engine", {
                "call_id": f"call-{i}", "outcome": "answered", "person": ref, "phone": "+33*******01",
                "call": {"ring_s": 11.2, "talk_s": 74.5, "wrapup_s": 5.0, "cause": 16, "endpoint": "queue:sales",
                         "live": True, "abandoned": False}}, at))
    return out


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def archived(record: Record) -> int:
    return int(record.query("SELECT coalesce(sum(seq), 0) FROM archive_progress")[0][0])


def heads(client: redis.Redis) -> int:
    return sum(int(client.hget(f"t:{{{t}}}:audit:head", "seq") or 0) for t in TENANTS)


def archiver(env: dict[str, str], batch: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "dialer", "archiver", "--batch", str(batch), "--interval", "0.1"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def run_store(name: str, url: str, redis_url: str, args: argparse.Namespace) -> dict[str, object]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    audit = AuditLog(client, KEY)
    record = Record(parse_record_url(url), pool_size=2)
    record.migrate()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_REDIS_URL": redis_url, "DIALER_RECORD_URL": url,
           "DIALER_SECRET_KEY": KEY, "DIALER_RECORD_REDIS_TAIL_HOURS": "0", "DIALER_LOG_LEVEL": "WARNING"}
    # 1. throughput on a backlog
    now = datetime.now(UTC)
    for t in TENANTS:
        for start in range(0, args.backlog // len(TENANTS), 1000):
            audit.append_many(t, events(audit, start, 1000, now))
    # other keys, as a tenant's contacts and facts would be (what a keyspace SCAN walks through)
    for start in range(0, args.keys, 10_000):
        pipe = client.pipeline(transaction=False)
        for k in range(start, min(args.keys, start + 10_000)):
            pipe.set(f"t:{{t1}}:p:+3314{k:07d}:ver", 1)
        pipe.execute()
    total = heads(client)
    memory_before = client.info("memory")["used_memory"]
    proc = archiver(env, args.batch)
    first = 0
    while first == 0:  # the archiver's start-up (Python, imports, migration check) is not counted
        first = archived(record)
        time.sleep(0.01)
    started, cpu0 = time.monotonic(), redis_cpu(client)
    while archived(record) < total:
        time.sleep(0.05)
    drain = time.monotonic() - started
    drain_cpu = redis_cpu(client) - cpu0
    memory_after = client.info("memory")["used_memory"]
    # 2. lag under a steady rate of decisions
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        w = redis.Redis.from_url(redis_url)
        wa = AuditLog(w, KEY)
        i, tick = 10_000_000, time.monotonic()
        per_tick = max(1, int(args.rate * 0.05))
        while not stop.is_set():
            t = TENANTS[i % len(TENANTS)]
            wa.append_many(t, events(wa, i, per_tick, datetime.now(UTC))[:per_tick])
            i += per_tick
            written[0] += per_tick
            tick += 0.05
            time.sleep(max(0.0, tick - time.monotonic()))

    thread = threading.Thread(target=writer, daemon=True)
    t0 = time.monotonic()
    thread.start()
    lags, lag_seconds = [], []
    while time.monotonic() - t0 < args.seconds:
        time.sleep(0.5)
        head, done = heads(client), archived(record)
        lags.append(head - done)
        oldest = []
        for t in TENANTS:
            seq = record.query("SELECT seq FROM archive_progress WHERE tenant = %s", (t,))
            nxt = client.xrange(f"t:{{{t}}}:audit", f"{int(seq[0][0]) + 1 if seq else 1}-0", "+", count=1)
            if nxt:
                oldest.append(time.time() - int(nxt[0][1][b"written"]) / 1000)
        lag_seconds.append(max(oldest, default=0.0))
    stop.set()
    thread.join()
    elapsed = time.monotonic() - t0
    while archived(record) < heads(client):  # caught up: now the archiver only polls
        time.sleep(0.1)
    idle_cpu0, idle_t0 = redis_cpu(client), time.monotonic()
    time.sleep(args.idle)
    idle_cpu = (redis_cpu(client) - idle_cpu0) / (time.monotonic() - idle_t0)
    proc.terminate()
    proc.wait()
    record.close()
    q = statistics.quantiles(lag_seconds, n=20)
    return {"store": name, "backlog": total, "drain_s": round(drain, 1),
            "entries_per_s": round((total - first) / drain),
            "redis_cpu_us_per_entry_drained": round(drain_cpu / max(1, total - first) * 1e6, 2),
            "redis_cpu_ms_per_s_idle": round(idle_cpu * 1e3, 2), "other_keys": args.keys,
            "redis_mb_before": round(memory_before / 1e6, 1), "redis_mb_after": round(memory_after / 1e6, 1),
            "rate": round(written[0] / elapsed), "lag_entries_p50": int(statistics.median(lags)),
            "lag_entries_max": max(lags), "lag_s_p50": round(statistics.median(lag_seconds), 2),
            "lag_s_p95": round(q[18], 2), "lag_s_max": round(max(lag_seconds), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=100_000, help="other keys in Redis (a keyspace to SCAN)")
    parser.add_argument("--idle", type=float, default=35.0, help="seconds of a caught-up archiver measured")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    with RedisProcess() as server:
        if args.store in ("sqlite", "both"):
            with tempfile.TemporaryDirectory() as tmp:
                print(run_store("sqlite", f"sqlite:///{tmp}/record.db", server.url, args), flush=True)
        if args.store in ("postgresql", "both"):
            with PostgresProcess() as pg:
                print(run_store("postgresql", pg.create_database("record"), server.url, args), flush=True)


if __name__ == "__main__":
    main()
