"""The import worker's per-row CPU, in one process: parse (dialer.contacts.chunks.iter_records), judge
(rows.process_record), build (StagedRows.add_result) and, with --copy, the COPY into a PostgreSQL
started for the run (StagedRows.flush, RECORD_BATCH rows a transaction). No Redis, no RQ: what a worker spends on
its rows, stage by stage, so a change can be measured without the whole import around it.

    nice -n 19 python3 bench/contacts_worker_profile.py --rows 100000 [--copy] [--profile]

Prints CPU seconds (this process; with --copy also PostgreSQL's) for each stage run alone over the same file.
--profile prints cProfile's top functions (cumulative) of the whole path instead.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.contacts_bench import generate, pg_cpu  # noqa: E402
from dialer.contacts.chunks import iter_records, plan_chunks  # noqa: E402
from dialer.contacts.columns import plan_columns  # noqa: E402
from dialer.contacts.rows import process_record  # noqa: E402
from dialer.contacts.sniff import sample_records, sniff  # noqa: E402
from dialer.contacts.staging import StagedRows  # noqa: E402


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def run(path: Path, copy_record: object | None, stages: str) -> int:
    fmt = sniff(path)
    sample = sample_records(path, fmt)
    plan = plan_columns(sample[0], None, sample[1:])
    chunks = plan_chunks(str(path), fmt, True)
    staged = StagedRows(copy_record, "bench", "imp", "att1")  # type: ignore[arg-type]
    count = 0
    for chunk in chunks:
        for record in iter_records(str(path), fmt, chunk.start, chunk.end, chunk.first_row, chunk.first_line,
                                   chunk.skip):
            if stages == "parse" or record.cells is None:
                continue
            result = process_record(record.cells, record.row, record.line, plan, "FR", None)
            if stages == "judge" or result.rejected:
                continue
            count += 1
            staged.add_result(result, f"imp-{record.row}", "list", "", record.row, record.line)
            if len(staged) >= 5000:
                if copy_record is None:  # build only: the rows are dropped where COPY would send them
                    staged.contacts.clear()
                    staged.phones.clear()
                else:
                    staged.flush()
    if copy_record is not None:
        staged.flush()
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--copy", action="store_true", help="also COPY into a PostgreSQL started for the run")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each stage; the least CPU is printed")
    parser.add_argument("--stages", default="parse,judge,build,stage")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="worker-profile-"))
    path = tmp / "list.csv"
    generate(path, args.rows)
    pg = record = None
    if args.copy:
        from dialer.record.pgproc import PostgresProcess
        from dialer.record.store import Record
        from dialer.record.url import parse_record_url

        pg = PostgresProcess()
        pg.start()
        record = Record(parse_record_url(pg.create_database("record")), pool_size=1, timeout=60)
        record.migrate()
    try:
        print(f"load average before: {os.getloadavg()}")
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            run(path, record, "stage")
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            return
        for stages in args.stages.split(","):
            if stages == "stage" and record is None:
                continue
            runs = []
            for _ in range(args.repeat):  # the least of a few runs: other sessions' load only ever adds
                if record is not None:
                    with record.transaction() as tx:
                        tx.execute("TRUNCATE import_contacts, import_phones")
                pg_before, before, wall = pg_cpu(pg), cpu(), time.perf_counter()
                n = run(path, record if stages == "stage" else None, stages)
                runs.append((cpu() - before, pg_cpu(pg) - pg_before, time.perf_counter() - wall))
            used, pg_used, wall = min(runs)
            print(f"{stages:6s} {used:6.2f} CPU-s ({used / args.rows * 1e6:5.1f} us a row; runs "
                  f"{', '.join(f'{r[0]:.2f}' for r in runs)}), PostgreSQL {pg_used:5.2f} CPU-s, wall {wall:5.1f} s, "
                  f"{n} contacts")
        print(f"load average after: {os.getloadavg()}")
    finally:
        if record is not None:
            record.close()
        if pg is not None:
            pg.cleanup()
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
