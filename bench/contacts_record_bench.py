"""Contacts in the record (issue 18): a generated N-row list parsed and written into PostgreSQL, then a campaign's
dial window filled from it into Redis.

    python bench/contacts_record_bench.py [--rows 1000000] [--processes 2] [--window 10000] [--spread 0]

Starts its own redis-server and PostgreSQL (initdb in a temp dir, loopback). Measures:
  1. the load, end to end from the file: format detection, chunk plan, parse and normalize every row exactly as
     the import job does (dialer.contacts.rows.process_record, dialer.contacts.jobs.build_contact), then
     dialer.record.contacts.store_contacts (COPY, 5,000 contacts a transaction) from --processes processes, one
     per share of the chunks: wall time, CPU seconds (the processes and the PostgreSQL server), peak RSS;
  2. PostgreSQL bytes per contact (contacts, list memberships, numbers: tables and indexes);
  3. Redis: used_memory before and after the load (contacts outside a window cost nothing), then after
     dialer.runtime.window.refill of a --window contacts window (bytes per window contact, per key), after one
     call each (half final, half waiting for a retry an hour later, or spread over --spread seconds more), after
     the finals moved to the record (archive_finals, what a refill does first), and after every contact left (what
     stays per contact: nothing).
The generator is bench/contacts_bench.py's (the same French list as the Redis import benchmark).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from contacts_bench import generate  # noqa: E402

from dialer.contacts.chunks import iter_records, plan_chunks  # noqa: E402
from dialer.contacts.columns import plan_columns  # noqa: E402
from dialer.contacts.jobs import build_contact  # noqa: E402
from dialer.contacts.rows import process_record  # noqa: E402
from dialer.contacts.sniff import sample_records, sniff  # noqa: E402
from dialer.record.contacts import store_contacts  # noqa: E402
from dialer.record.pgproc import PostgresProcess  # noqa: E402
from dialer.record.store import Record  # noqa: E402
from dialer.record.url import parse_record_url  # noqa: E402
from dialer.redisproc import RedisProcess  # noqa: E402
from dialer.runtime.queues import ContactQueue  # noqa: E402
from dialer.runtime.window import archive_finals, refill  # noqa: E402

TENANT, LIST, IMPORT = "acme", "leads", "imp1"


def load_share(url: str, path: str, chunks: list, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    fmt = sniff(path)
    sample = sample_records(path, fmt)
    plan = plan_columns(sample[0], None, sample[1:])
    record = Record(parse_record_url(url), pool_size=1, timeout=60)
    counts = {"rows": 0, "stored": 0}

    def contacts():
        for chunk in chunks:
            for rec in iter_records(path, fmt, chunk.start, chunk.end, chunk.first_row, chunk.first_line, chunk.skip):
                counts["rows"] += 1
                if rec.cells is None:
                    continue
                result = process_record(rec.cells, rec.row, rec.line, plan, "FR")
                if result.rejected or not result.phones:
                    continue
                yield build_contact(result, f"{IMPORT}-{rec.row}", LIST, "", IMPORT, rec.row)[0]

    counts["stored"] = store_contacts(record, TENANT, LIST, contacts())
    record.close()
    out.put((counts, resource.getrusage(resource.RUSAGE_SELF)))


def pg_cpu(pg: PostgresProcess) -> float:
    """CPU seconds of every PostgreSQL process (the server and its backends), from /proc."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    out = subprocess.run(["pgrep", "-f", pg.data], capture_output=True, text=True).stdout.split()
    for pid in out:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=0.0, help="retry due times spread over this many seconds more")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, RedisProcess() as server, PostgresProcess() as pg:
        pg.start()
        url = pg.create_database("record")
        record = Record(parse_record_url(url), pool_size=2, timeout=60)
        record.migrate()
        client = redis.Redis.from_url(server.url)
        path = Path(tmp) / "list.csv"
        generate(path, args.rows)
        redis_before = client.info("memory")["used_memory"]
        scripts_before = client.info("memory").get("used_memory_scripts", 0)
        fmt = sniff(path)
        sample = sample_records(path, fmt)
        chunks = plan_chunks(str(path), fmt, plan_columns(sample[0], None, sample[1:]).has_header)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        shares = [chunks[k::args.processes] for k in range(args.processes)]
        pg0, started = pg_cpu(pg), time.monotonic()
        procs = [ctx.Process(target=load_share, args=(url, str(path), share, out)) for share in shares]
        for p in procs:
            p.start()
        results = [out.get(timeout=3600) for _ in procs]
        for p in procs:
            p.join()
        wall = time.monotonic() - started
        pg_used = pg_cpu(pg) - pg0
        rows = sum(r[0]["rows"] for r in results)
        stored = sum(r[0]["stored"] for r in results)
        cpu = sum(r[1].ru_utime + r[1].ru_stime for r in results)
        rss = [r[1].ru_maxrss // 1024 for r in results]
        redis_after_load = client.info("memory")["used_memory"]
        sizes = {t: int(record.query("SELECT pg_total_relation_size(%s)", (t,))[0][0])
                 for t in ("contacts", "list_members", "contact_phones")}
        count = int(record.query("SELECT count(*) FROM contacts WHERE tenant = %s", (TENANT,))[0][0])
        print(f"load: {rows:,} rows read, {stored:,} contacts stored ({count:,} in the record) in {wall:.1f} s "
              f"= {rows / wall:,.0f} rows/s; CPU: loaders {cpu:.1f} s, PostgreSQL {pg_used:.1f} s; peak RSS per "
              f"loader {rss} MB", flush=True)
        print("PostgreSQL bytes per contact: " + ", ".join(f"{t} {b / count:.0f}" for t, b in sizes.items())
              + f"; total {sum(sizes.values()) / count:.0f} ({sum(sizes.values()) / 1e6:.0f} MB)", flush=True)
        print(f"Redis after the load: {redis_after_load - redis_before:+,} bytes "
              f"({(redis_after_load - redis_before) / count:.2f} per contact)", flush=True)

        queue = ContactQueue(client, TENANT, "c1")

        def per_key(n: int) -> str:
            sizes: dict[str, int] = {}
            for name, key in queue.keys.items():
                if client.exists(key):
                    wheel = name.startswith("wait:") and name != "wait:due"
                    group = "wait lists" if wheel else name  # the wait wheel's lists, summed
                    sizes[group] = sizes.get(group, 0) + int(client.memory_usage(key, samples=0) or 0)
            return ", ".join(f"{k} {v / max(1, n):.0f}" for k, v in sorted(sizes.items()))

        t0 = time.monotonic()
        filled = refill(record, queue, [LIST], at=time.time(), size=args.window)
        took = time.monotonic() - t0
        redis_window = client.info("memory")["used_memory"]
        n = filled["added"]
        print(f"window of {args.window:,}: {filled} in {took:.2f} s; Redis {redis_window - redis_after_load:,} bytes "
              f"= {(redis_window - redis_after_load) / n:.0f} per window contact (used_memory); per key, bytes per "
              "contact: " + per_key(n), flush=True)
        # every window contact is called: half answer (final), half are busy and wait for a retry
        now = time.time()
        spread = random.Random(18)
        done = waiting = 0
        while True:
            claims = queue.claim(500, owner="bench", now=now, lease_until=now + 60,
                                 call_ids=[f"c{done + waiting + i}" for i in range(500)], servers=["pbx"] * 500)
            if not claims:
                break
            for k, c in enumerate(claims):
                if k % 2:
                    due = now + 3600 + spread.uniform(0, args.spread)
                    queue.retry(c, due, reason="retry_busy", count_attempt=True, at=now)
                    waiting += 1
                else:
                    queue.finish(c, reason="answered", at=now, count_attempt=True, disposition="answered")
                    done += 1
        redis_mixed = client.info("memory")["used_memory"]
        print(f"after one call each: {waiting:,} waiting for a retry, {done:,} final (not yet moved to the record): "
              f"Redis {redis_mixed - redis_after_load:,} bytes; per key, bytes per contact of the window: "
              + per_key(n), flush=True)
        t0 = time.monotonic()
        moved = archive_finals(record, queue)
        took = time.monotonic() - t0
        redis_moved = client.info("memory")["used_memory"]
        print(f"the {moved:,} final contacts moved to the record in {took:.2f} s: Redis "
              f"{redis_moved - redis_after_load:,} bytes = {(redis_moved - redis_after_load) / max(1, waiting):.0f} "
              "per contact still waiting; per key, bytes per waiting contact: " + per_key(waiting), flush=True)
        # the retries are called too and leave: nothing stays per contact
        later = now + 7200 + args.spread
        while True:
            claims = queue.claim(500, owner="bench", now=later, lease_until=now + 60,
                                 call_ids=[f"r{done + i}" for i in range(500)], servers=["pbx"] * 500)
            if not claims:
                break
            for c in claims:
                queue.finish(c, reason="answered", at=later, count_attempt=True, disposition="answered")
                done += 1
        archive_finals(record, queue)
        redis_final = client.info("memory")["used_memory"]
        scripts = client.info("memory").get("used_memory_scripts", 0) - scripts_before
        finals_pg = int(record.query("SELECT pg_total_relation_size('campaign_finals')")[0][0])
        print(f"after all {done:,} left the window (finals moved): Redis {redis_final - redis_after_load:+,} bytes = "
              f"{(redis_final - redis_after_load) / max(1, done):.1f} per contact that left (keys left: "
              f"{per_key(1)}; the scripts' cache {scripts:+,} B); PostgreSQL campaign_finals "
              f"{finals_pg / max(1, done):.0f} B per contact", flush=True)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        record.close()


if __name__ == "__main__":
    main()
