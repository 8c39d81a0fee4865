"""Benchmark of data subject requests and retention on a populated tenant.

Starts its own redis-server, imports a contact list of N French numbers (the real importer), writes one
consent and a few attempts per number and an audit trail of M entries, then times:
  - access by phone (JSON), the whole trail scanned for mentions;
  - erasure by phone (one transaction + suppression entry);
  - an import of K rows checked against a suppression list of S erased numbers (vs. the same import with an
    empty suppression list);
  - a retention run over the tenant (SCAN of every person, attempts and consents pruned).

    python bench/privacy_bench.py [--contacts 100000] [--audit 200000] [--erase 100] [--suppressed 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer import privacy, retention
from dialer.audit import AuditEvent, AuditLog
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.facts import person_key
from dialer.redisproc import RedisProcess
from dialer.suppression import Suppression, configure

KEY = "bench-key"
T = "bench"
AT = datetime.now(UTC)  # the importer stamps real time: the trail is in time order


def number(n: int) -> str:
    return f"+3314{n:07d}"


def write_csv(path: Path, first: int, count: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("prenom;nom;telephone;email\n")
        for n in range(first, first + count):
            fh.write(f"P{n};N{n};0{number(n)[3:]};p{n}@example.org\n")


def populate(client: redis.Redis, contacts: int, audit_entries: int, tmp: Path) -> float:
    """An old audit trail (7 to 8 years), then the import, consents and attempts."""
    audit = AuditLog(client, KEY)
    batch = []
    for n in range(audit_entries):
        e164 = number(n % contacts)
        batch.append(AuditEvent("gate_decision", "gate", {"person": audit.person_ref(e164), "allowed": True,
                                                          "contact_id": None, "phone": audit.mask(e164)},
                                AT - timedelta(days=3000) + timedelta(seconds=n * 1000)))
        if len(batch) == 1000:
            audit.append_many(T, batch)
            batch = []
    audit.append_many(T, batch)
    path = tmp / "list.csv"
    write_csv(path, 0, contacts)
    started = time.perf_counter()
    status = run_import_inline(client, T, create_import(client, T, path, "leads", region="FR").import_id)
    took = time.perf_counter() - started
    assert status["status"] == "committed", status
    pipe = client.pipeline(transaction=False)
    for n in range(contacts):
        e164 = number(n)
        pipe.rpush(person_key(T, e164, "consent"), json.dumps({
            "given_at": (AT - timedelta(days=n % 3000)).isoformat(), "purpose": "telemarketing", "written": False,
            "expires_at": None, "withdrawn_at": None, "source": "form", "evidence": f"f-{n}", "channel": "phone",
            "campaign": None, "ip": "192.0.2.1", "text": None}))
        for k in range(3):
            at = AT - timedelta(days=(n + k * 200) % 900)
            pipe.hset(person_key(T, e164, "att"), f"c{n}-{k}", json.dumps(
                {"at": at.isoformat().replace("+00:00", "Z"), "call_id": f"c{n}-{k}", "campaign": "c1",
                 "outcome": "no_answer"}, sort_keys=True))
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()
    return took


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--audit", type=int, default=200_000)
    parser.add_argument("--access", type=int, default=5)
    parser.add_argument("--erase", type=int, default=100)
    parser.add_argument("--suppressed", type=int, default=10_000)
    parser.add_argument("--import-rows", type=int, default=50_000)
    args = parser.parse_args()
    configure(KEY)
    server = RedisProcess().start()
    client = redis.Redis.from_url(server.url)
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                  f"load average {os.getloadavg()[0]:.1f}; {args.contacts} contacts, {args.audit} audit entries")
            took = populate(client, args.contacts, args.audit, tmp)
            print(f"import of {args.contacts} contacts: {took:.1f} s")
            access = timed(lambda: privacy.access(client, T, phone=number(7), at=AT, secret_key=KEY,
                                                  audit_request=False), args.access)
            print(f"access by phone (trail of {args.audit} scanned): median {statistics.median(access) * 1000:.0f} ms")
            erase = [0.0] * args.erase
            for i in range(args.erase):
                started = time.perf_counter()
                privacy.erase(client, T, phone=number(1000 + i), actor="bench", at=AT, secret_key=KEY)
                erase[i] = time.perf_counter() - started
            print(f"erasure by phone: median {statistics.median(erase) * 1000:.1f} ms, "
                  f"p99 {sorted(erase)[int(len(erase) * 0.99) - 1] * 1000:.1f} ms over {args.erase}")
            # suppression list of S entries, then imports of the same rows with and without it
            store = Suppression(client, KEY)
            pipe = client.pipeline(transaction=False)
            for n in range(args.suppressed):
                store.queue_add(pipe, "bench2", number(5_000_000 + n), AT, reason="erased", actor="bench")
            pipe.execute()
            rows = tmp / "again.csv"
            write_csv(rows, 5_000_000, args.import_rows)
            for tenant, label in (("bench3", "empty suppression list"),
                                  ("bench2", f"suppression list of {args.suppressed}")):
                started = time.perf_counter()
                status = run_import_inline(client, tenant, create_import(client, tenant, rows, "again",
                                                                         region="FR").import_id)
                print(f"import of {args.import_rows} rows, {label}: {time.perf_counter() - started:.1f} s "
                      f"(rejected SUPPRESSED: {status['summary']['invalid_by_reason'].get('SUPPRESSED', 0)})")
            started = time.perf_counter()
            report = retention.run(client, T, AT, secret_key=KEY)
            print(f"retention run over {args.contacts} numbers: {time.perf_counter() - started:.1f} s, "
                  f"removed {report.removed}")
    finally:
        client.close()
        server.stop()


if __name__ == "__main__":
    main()
