"""Contact import benchmark: a generated N-row CSV end to end with 2 RQ workers, into the record.

    python bench/contacts_bench.py [--rows 1000000] [--workers 2] [--record postgresql|sqlite] [--keep]

The contacts go into the record (docs/record.md): a PostgreSQL the benchmark starts (initdb in a temp dir,
loopback), or an embedded SQLite file. Redis's growth is measured between before the import and after its
commit: what an imported contact costs Redis once committed (nothing, outside a campaign's window).

Generates a realistic French list (national formats with spaces, dots or +33, a few invalid
numbers and duplicates, quoted names), starts its own redis-server, starts `dialer worker --burst`
processes, enqueues the import (`enqueue_import`, one coordinator + helpers) and measures the wall
time from enqueue to commit. Peak memory is the high-water RSS (VmHWM) of every worker process and
of the work-horse processes RQ forks for each job, sampled from /proc every 0.2 s.

Prints, for the lead's 1 M-row run on a quiet machine: the wall time (and its phases: plan + stage, commit), the
CPU seconds of the workers (with their work horses) and of PostgreSQL (postmaster, ended and live backends), Redis's
growth peak while the import ran (sampled every 0.2 s: the import's status, counters and report; its rows are
staged in the record), the record's growth in bytes and the publish transaction's length.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dialer.contacts.jobs import enqueue_import  # noqa: E402
from dialer.contacts.store import import_status  # noqa: E402
from dialer.record.pgproc import PostgresProcess  # noqa: E402
from dialer.record.store import Record  # noqa: E402
from dialer.record.url import parse_record_url  # noqa: E402
from dialer.redisproc import RedisProcess  # noqa: E402


def generate(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    first = ["Zoé", "Jean", "Marie", "Luc", "Noël", "Anaïs", "Hélène", "Paul", "Léa", "Hugo"]
    last = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Lefèvre", "Moreau"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("Prénom;Nom;Téléphone;Code postal;Ville;Segment\r\n")
        for i in range(rows):
            n = rng.randrange(10**8)
            lead = rng.choice("1234567999")  # fixed, mobile, VoIP
            style = rng.random()
            if style < 0.5:
                phone = f"0{lead} {n // 10**6:02d} {n // 10**4 % 100:02d} {n // 100 % 100:02d} {n % 100:02d}"
            elif style < 0.8:
                phone = f"0{lead}{n:08d}"
            elif style < 0.95:
                phone = f"+33 {lead} {n:08d}"
            else:
                phone = f"0{lead}.{n // 10**6:02d}.{n // 10**4 % 100:02d}.{n // 100 % 100:02d}.{n % 100:02d}"
            if rng.random() < 0.002:
                phone = phone[:-3]  # too short: invalid
            name = rng.choice(last)
            if rng.random() < 0.05:
                name = f"\"{name}; {rng.choice(last)}\""
            fh.write(f"{rng.choice(first)};{name};{phone};{rng.randrange(1000, 96000):05d};Ville {i % 977};"
                     f"s{i % 5}\r\n")


def tree_peaks(pids: list[int], peaks: dict[int, int]) -> None:
    """Record VmHWM (kB) of the given processes and of their direct children (RQ work horses)."""
    wanted = set(pids)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if int(entry) not in wanted and ppid not in wanted:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[int(entry)] = max(peaks.get(int(entry), 0), int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue


def proc_cpu(pid: int, children: bool = True) -> float:
    """CPU seconds of a process (and of its children it has reaped: a postmaster's ended backends)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def pg_cpu(pg: PostgresProcess | None) -> float:
    """PostgreSQL's CPU seconds so far: the postmaster, its ended backends and the live ones."""
    if pg is None or pg.proc is None:
        return 0.0
    total = proc_cpu(pg.proc.pid)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pg.proc.pid:
                total += proc_cpu(int(entry), children=False)
    return total


def record_bytes(record: Record, args: argparse.Namespace, tmp: Path) -> tuple[int, int]:
    """(the contact tables with their indexes, the staging tables: empty but not shrunk once an import committed);
    SQLite: (the file with its WAL, 0)."""
    if args.record == "postgresql":
        def size(tables: str) -> int:
            return int(record.query(f"SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY[{tables}]) AS c")[0][0])
        return (size("'contacts', 'list_members', 'contact_phones'"),
                size("'import_contacts', 'import_phones', 'import_outcomes'"))
    return sum(p.stat().st_size for p in tmp.glob("record.db*")), 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--record", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--pg", action="append", default=[], metavar="NAME=VALUE",
                        help="a PostgreSQL setting (repeat), e.g. shared_buffers=1GB max_wal_size=4GB: the server is "
                             "otherwise the tests' small one (64 MB of shared buffers)")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.pg)
    pg = PostgresProcess(settings=settings) if args.record == "postgresql" else None
    if settings:
        print("postgresql settings:", settings)
    try:
        run(args, pg)
    finally:
        if pg is not None:
            pg.cleanup()


def run(args: argparse.Namespace, pg: PostgresProcess | None) -> None:
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="contacts-bench-"))
    path = tmp / "list.csv"
    t0 = time.perf_counter()
    generate(path, args.rows)
    print(f"generated {args.rows} rows ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    if pg is not None:
        pg.start()
        record_url = pg.create_database("record")
    else:
        record_url = f"sqlite:///{tmp / 'record.db'}"
    record = Record(parse_record_url(record_url), pool_size=1, timeout=60)
    record.migrate()
    with RedisProcess() as server:
        client = redis.Redis.from_url(server.url)
        env = {**os.environ, "DIALER_REDIS_URL": server.url, "DIALER_LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT), "DIALER_RECORD_URL": record_url}
        redis_before = client.info("memory")["used_memory"]
        record_before = record_bytes(record, args, tmp)
        pg_before = pg_cpu(pg)
        redis_peak = 0
        started = time.perf_counter()
        ticket = enqueue_import(client, "bench", path, "bench", region="FR", helpers=args.workers - 1)
        workers = [subprocess.Popen([sys.executable, "-m", "dialer", "worker", "--burst", "--queues", "imports"],
                                    cwd=ROOT, env=env) for _ in range(args.workers)]
        peaks: dict[int, int] = {}
        status: dict = {}
        while True:
            tree_peaks([w.pid for w in workers], peaks)
            redis_peak = max(redis_peak, client.info("memory")["used_memory"] - redis_before)
            status = import_status(client, "bench", ticket.import_id) or {}
            if status.get("status") in ("committed", "failed"):
                break
            if all(w.poll() is not None for w in workers):
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        for w in workers:
            w.wait(60)
        children = os.times()
        worker_cpu = children.children_user + children.children_system
        redis_cpu = client.info("cpu")
        info = client.info("memory")
        print(f"status: {status.get('status')} {status.get('error', '')}")
        print(f"summary: {status.get('summary')}")
        print(f"chunks: {status.get('chunks')}")
        stamps = {k: datetime.fromisoformat(status[k]) for k in ("created_at", "started_at", "committing_at",
                                                                   "finished_at") if status.get(k)}
        if len(stamps) == 4:
            print(f"phases: queued {(stamps['started_at'] - stamps['created_at']).total_seconds():.1f} s, "
                  f"plan + stage {(stamps['committing_at'] - stamps['started_at']).total_seconds():.1f} s, "
                  f"publish + commit {(stamps['finished_at'] - stamps['committing_at']).total_seconds():.1f} s")
        print(f"wall time enqueue -> committed: {elapsed:.1f} s ({args.rows / elapsed:,.0f} rows/s)")
        print(f"peak RSS per process (MB): {sorted(round(v / 1024) for v in peaks.values())}")
        pg_used = pg_cpu(pg) - pg_before
        print(f"redis: growth peak while the import ran {redis_peak:,} bytes (sampled every 0.2 s; used_memory_peak "
              f"{info['used_memory_peak_human']}, {redis_before:,} bytes before the import)")
        stored = int(record.query("SELECT count(*) FROM contacts WHERE tenant = 'bench'")[0][0])
        after = record_bytes(record, args, tmp)
        grown_record, grown_staging = after[0] - record_before[0], after[1] - record_before[1]
        print(f"record ({args.record}): {grown_record:,} bytes more ({grown_record / max(stored, 1):.0f} per contact: "
              f"contacts, list members, numbers, their indexes); staging tables {grown_staging:,} bytes more (empty "
              "now, their space reused by the next import)")
        print(f"publish (the commit's record transaction; on SQLite its write-lock hold): "
              f"{status.get('publish_seconds', '?')} s")
        grown = info["used_memory"] - redis_before
        print(f"record ({args.record}): {stored:,} contacts; Redis after the commit: {grown:+,} bytes "
              f"({grown / max(stored, 1):.2f} per contact: the import's status and report, no contact)")
        print(f"CPU seconds: workers and their work horses {worker_cpu:.1f}, PostgreSQL "
              f"{pg_used:.1f}, redis-server {redis_cpu['used_cpu_user'] + redis_cpu['used_cpu_sys']:.1f}")
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"load average before: {load_before}, after: {os.getloadavg()}")
    record.close()
    if not args.keep:
        path.unlink()
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
