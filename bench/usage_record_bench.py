"""What making metered usage durable costs (issue 19): the `usage` audit entry in the outcome's transaction, the
archiver's copy into usage_records, and a month's report read from the record instead of Redis.

Starts its own redis-server, and uses an SQLite record and (when Debian's PostgreSQL is installed) a PostgreSQL one
started by the script on loopback. CPU per operation is given besides wall time: the machine is shared.

    python bench/usage_record_bench.py [--calls 5000]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.facts import FactStore
from dialer.record.archiver import Archiver
from dialer.record.store import Record
from dialer.record.url import parse_record_url
from dialer.redisproc import RedisProcess
from dialer.usage import archived, meter, report

DAY = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
FIRST, LAST = date(2026, 11, 1), date(2026, 11, 30)  # the month reported


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def meter_calls(client: redis.Redis, tenant: str, n: int, durable: bool) -> tuple[float, float, float]:
    """n calls metered through FactStore.record_outcome over 30 days and 20 campaigns; (wall, own CPU, Redis CPU)
    per call in microseconds. durable=False: the transaction without its `usage` entry (the code before)."""
    store = FactStore(client)
    if not durable:
        store._meter_audit = None  # the baseline: the counters alone
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        at = DAY + timedelta(days=i % 30)
        pipe.hset(f"t:{{{tenant}}}:p:+3314{i:07d}:att", f"c{i}",
                  f'{{"at":"{at.isoformat().replace("+00:00", "Z")}","campaign":"k{i % 20}","outcome":"reserved"}}')
    pipe.execute()
    usage = meter.measures(meter.CallUsage(0.0, 95.0, recorded=True), "per_6_seconds")
    wall, cpu, server = time.perf_counter(), time.process_time(), redis_cpu(client)
    for i in range(n):
        store.record_outcome(tenant, f"+3314{i:07d}", f"c{i}", "answered", DAY, metered=usage)
    return ((time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6,
            (redis_cpu(client) - server) / n * 1e6)


def main(calls: int) -> None:
    print(f"# {platform.machine()}, {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"calls={calls}")
    with RedisProcess() as server:
        client = redis.Redis.from_url(server.url)
        for durable in (False, True, False, True):
            wall, cpu, srv = meter_calls(client, f"b{int(durable)}{time.monotonic_ns()}", calls, durable)
            print(f"record_outcome {'with' if durable else 'without'} usage entry: {wall:.0f} us wall, "
                  f"{cpu:.0f} us client CPU, {srv:.0f} us redis-server CPU per call")
        stores = [("sqlite", f"sqlite:///{tempfile.mkdtemp()}/record.db")]
        pg = None
        try:
            from dialer.record.pgproc import PostgresProcess, find_pg_bin

            if find_pg_bin() is not None:
                pg = PostgresProcess().start()
                stores.append(("postgresql", pg.create_database("bench")))
        except Exception as exc:  # a bench: say so, go on with SQLite
            print(f"no PostgreSQL: {exc}")
        try:
            for name, url in stores:
                tenant = f"r{name}"
                meter_calls(client, tenant, calls, True)
                with Record(parse_record_url(url)) as record:
                    record.migrate()
                    start = time.perf_counter()
                    done = Archiver(client, record, tail=timedelta(days=3650)).archive_tenant(tenant)
                    took = time.perf_counter() - start
                    rows = record.query("SELECT count(*) FROM usage_records WHERE tenant = %s", (tenant,))[0][0]
                    print(f"{name}: archived {done.copied} entries ({rows} usage rows) in {took:.2f} s: "
                          f"{done.copied / took:,.0f} entries/s")
                    for label in ("redis", "record"):
                        def read(label: str = label, tenant: str = tenant, record: Record = record) -> dict:
                            if label == "redis":
                                return report.usage(client, tenant, FIRST, LAST)
                            return archived.usage_from_record(record, tenant, FIRST, LAST)

                        read()
                        start = time.perf_counter()
                        for _ in range(20):
                            found = read()
                        print(f"{name}: a month's report from {label}: {(time.perf_counter() - start) / 20 * 1e3:.1f}"
                              f" ms ({found['totals']['attempts']} calls, {len(found['campaigns'])} campaigns)")
        finally:
            if pg is not None:
                pg.cleanup()
        client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    main(parser.parse_args().calls)
