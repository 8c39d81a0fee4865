"""Benchmark of the stateful gate (facts from Redis, the rule engine, Lua reservation, audit trail).

Starts its own redis-server (dialer.redisproc.RedisProcess), loads a Bloctel copy and a population of
French contacts with some attempt history, then measures:
  - single decisions: check_and_reserve one contact at a time (latency p50/p99, decisions/s);
  - single what-if checks (no reservation, no audit);
  - batched decisions: reserve_many over batches (decisions/s).
Every reservation decision is audited (the audit trail is always on for reservations).

    python bench/gate_bench.py [--contacts 20000] [--single 5000] [--batch 500] [--processes 2] [--profile]

--profile prints a cProfile of the warm batched pass (BENCH_SORT=tottime to sort by own time; cProfile times
are wall-clock, so socket calls include the time spent waiting for Redis or for a CPU).

The last lines (SUMMARY) give the figures to compare with the targets: batched decisions/s (1 and 2 gate
processes), CPU per decision in the gate process and in redis-server, single-decision p50/p99.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import multiprocessing
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.facts import FactStore
from dialer.gate import Gate, Request, Reservation
from dialer.redisproc import RedisProcess
from dialer.registry.loader import load_registry
from dialer.registry.store import RegistryStore
from rules import load_packs
from rules.model import Attempt, Campaign, Contact

AT = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)  # Tuesday 10:30 in Paris
CAMPAIGN = Campaign(id="bench", tenant="tb", purpose="telemarketing", audience="consumer", voice="human",
                    caller_id="+33162000000")


# Where the contacts live: Paris, Strasbourg and Metz (Alsace-Moselle holidays), Marseille, Lyon. Every fourth
# contact is a mobile. A campaign's population spans a few places, each with many contacts.
POSTAL_CODES = ("75011", "75011", "67000", "57000", "13001", "69003", "75011", "33000")


def french_number(i: int) -> str:
    return f"+336{i:08d}" if i % 4 == 3 else f"+3314{i:07d}"


def contact_of(i: int) -> Contact:
    return Contact(phone=french_number(i), country="FR", postal_code=POSTAL_CODES[i % len(POSTAL_CODES)])


def populate(client: redis.Redis, contacts: int, rng: random.Random) -> list[Contact]:
    store = FactStore(client)
    people = []
    for i in range(contacts):
        e164 = french_number(i)
        for k in range(rng.choice((0, 0, 1, 2))):
            store.record_attempt("tb", e164, Attempt(at=AT - timedelta(days=rng.randint(1, 40)), campaign="old",
                                                      outcome=rng.choice(("no_answer", "busy")), call_id=f"h{i}-{k}"))
        people.append(contact_of(i))
    return people


def redis_cpu(client: redis.Redis) -> float:
    """CPU seconds the redis-server has used (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """redis-server's own profile: per command, (calls, microseconds) since start."""
    return {name: (int(v["calls"]), int(v["usec"])) for name, v in client.info("commandstats").items()}


def commandstats_diff(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
                      decisions: int) -> list[str]:
    """The commands that cost redis-server the most between two snapshots, per decision."""
    rows = []
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if usec - u0 > 0:
            rows.append((usec - u0, calls - c0, name))
    ranked = sorted(rows, reverse=True)
    # the top 8, and always the archiver's reads (XRANGE of the audit stream, SCAN for tenants) when it ran
    shown = ranked[:8] + [r for r in ranked[8:] if r[2] in ("cmdstat_xrange", "cmdstat_scan")]
    return [f"    {name[len('cmdstat_'):]:<20} {calls:>9} calls {usec / 1e3:>9.1f} ms = {usec / decisions:6.2f} us per "
            "decision" for usec, calls, name in shown]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _worker(url: str, first: int, last: int, batch: int, barrier, results) -> None:
    """One gate process: warm its number caches with what-if checks, then reserve_many over its slice."""
    client = redis.Redis.from_url(url)
    gate = Gate(client, load_packs(), RegistryStore(client), secret_key="bench-key")
    people = [contact_of(i) for i in range(first, last)]
    gate.check_many([Request(c, CAMPAIGN) for c in people], AT)
    gc.freeze()
    barrier.wait(60)
    start, cpu, server = time.perf_counter(), time.process_time(), redis_cpu(client)
    for b in range(0, len(people), batch):
        gate.reserve_many([Request(c, CAMPAIGN, f"mp{first + b + k}") for k, c in enumerate(people[b:b + batch])],
                          AT + timedelta(minutes=30))
    results.put((len(people), start, time.perf_counter(), time.process_time() - cpu, server, redis_cpu(client)))
    client.close()


def run_processes(url: str, contacts: int, processes: int, batch: int) -> tuple[int, float, float, float]:
    """(decisions, wall seconds, gate CPU seconds over all processes, redis-server CPU seconds)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    share = contacts // processes
    procs = [ctx.Process(target=_worker, args=(url, k * share, (k + 1) * share, batch, barrier, results))
             for k in range(processes)]
    for proc in procs:
        proc.start()
    done = [results.get(timeout=600) for _ in procs]
    server = max(d[5] for d in done) - min(d[4] for d in done)  # from the first start to the last end
    for proc in procs:
        proc.join(60)
    return (sum(d[0] for d in done), max(d[2] for d in done) - min(d[1] for d in done), sum(d[3] for d in done),
            server)


@contextlib.contextmanager
def archiver_running(kind: str | None, redis_url: str, tmp: str) -> Iterator[None]:
    """A `dialer archiver` process copying the audit trail into its own record while the gate is measured."""
    if kind is None:
        yield
        return
    from dialer.record.pgproc import PostgresProcess

    pg = PostgresProcess().start() if kind == "postgresql" else None
    url = pg.create_database("record") if pg else f"sqlite:///{tmp}/record.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "DIALER_REDIS_URL": redis_url,
           "DIALER_RECORD_URL": url, "DIALER_SECRET_KEY": "bench-key", "DIALER_LOG_LEVEL": "WARNING"}
    # --tenant tb: the bench's tenant appears after the archiver starts and must be copied during the measured
    # passes (found by the 30 s look for tenants it could be missed until they are over). That look (a keyspace
    # SCAN every 30 s) is measured by bench/archiver_bench.py (redis-server CPU while idle).
    proc = subprocess.Popen([sys.executable, "-m", "dialer", "archiver", "--interval", "0.2", "--tenant", "tb"],
                            env=env)
    try:
        yield
        lag = subprocess.run([sys.executable, "-m", "dialer", "record", "lag"], env=env, capture_output=True,
                             text=True)
        print(f"archiver ({kind}) lag at the end: {lag.stdout.strip()}")
    finally:
        proc.terminate()
        proc.wait()
        if pg:
            pg.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=20000)
    parser.add_argument("--single", type=int, default=5000, help="single decisions to time")
    parser.add_argument("--batch", type=int, default=500, help="batch size for reserve_many")
    parser.add_argument("--registry", type=int, default=200_000, help="numbers on the Bloctel copy")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the batched run")
    parser.add_argument("--processes", type=int, default=2, help="gate processes for the parallel batched run")
    parser.add_argument("--archiver", choices=("postgresql", "sqlite"),
                        help="run `dialer archiver` into a record of this kind during the benchmark (issue 18: "
                             "gate decisions/s with the archiver running)")
    args = parser.parse_args()
    rng = random.Random(7)
    load_start = os.getloadavg()[0]

    with RedisProcess() as server, tempfile.TemporaryDirectory() as tmp, archiver_running(args.archiver, server.url,
                                                                                         tmp):
        client = redis.Redis.from_url(server.url)
        path = Path(tmp) / "bloctel.txt"
        listed = rng.sample(range(10_000_000), args.registry)
        path.write_text("".join(f"014{n:07d}\n" for n in listed))
        load_registry(client, "bloctel", path, loaded_at=AT - timedelta(days=3))
        people = populate(client, args.contacts, rng)
        gate = Gate(client, load_packs(), RegistryStore(client), secret_key="bench-key")
        gate.check(people[0], CAMPAIGN, AT)  # warm caches (registry bitmap, scripts)
        gc.freeze()  # as docs/gate-runtime.md recommends for a long-running gate process

        # single decisions: check_and_reserve, one contact at a time; first on contacts the process has never
        # seen (number metadata cold), then the same contacts again a minute later (warm)
        order = list(range(len(people)))
        rng.shuffle(order)
        singles = []
        for n_pass in range(2):
            lat: list[float] = []
            allowed = 0
            cpu, start = time.process_time(), time.perf_counter()
            for n in range(args.single):
                contact = people[order[n % len(order)]]
                t0 = time.perf_counter()
                result = gate.check_and_reserve(contact, CAMPAIGN, AT + timedelta(minutes=n_pass), f"s{n_pass}-{n}")
                lat.append(time.perf_counter() - t0)
                allowed += isinstance(result, Reservation)
            singles.append((lat, allowed, time.perf_counter() - start, time.process_time() - cpu))

        # single what-if checks
        clat: list[float] = []
        for n in range(args.single):
            contact = people[order[n % len(order)]]
            t0 = time.perf_counter()
            gate.check(contact, CAMPAIGN, AT)
            clat.append(time.perf_counter() - t0)

        # batched: reserve_many, twice over the population: first with number metadata cold in the engine's
        # caches, then warm (a campaign decides on the same contacts pass after pass)
        profiler = cProfile.Profile() if args.profile else None
        passes = []
        for n_pass in range(2):
            total = reserved = 0
            start, cpu, server_cpu = time.perf_counter(), time.process_time(), redis_cpu(client)
            stats_before = commandstats(client)
            if profiler and n_pass == 1:
                profiler.enable()
            for b in range(0, len(people), args.batch):
                chunk = people[b:b + args.batch]
                results = gate.reserve_many([Request(c, CAMPAIGN, f"b{n_pass}-{b + k}") for k, c in enumerate(chunk)],
                                            AT + timedelta(minutes=5 + n_pass))
                total += len(results)
                reserved += sum(isinstance(r, Reservation) for r in results)
            if profiler and n_pass == 1:
                profiler.disable()
            passes.append((total, reserved, time.perf_counter() - start, time.process_time() - cpu,
                           redis_cpu(client) - server_cpu))
            redis_profile = commandstats_diff(stats_before, commandstats(client), total)
        parallel = run_processes(server.url, args.contacts, args.processes, args.batch) if args.processes else None
        audit_entries = gate.audit.head("tb").seq
        verify_start = time.perf_counter()
        verified = gate.audit.verify("tb")
        verify_elapsed = time.perf_counter() - verify_start

    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"load average (1 min) at start {load_start:.1f}, at end {os.getloadavg()[0]:.1f}: "
          "other work shares the CPUs when it is above about 1")
    print(f"contacts {args.contacts}, bloctel copy {args.registry} numbers, audit on")
    for name, (lat, allowed, elapsed, cpu) in zip(("cold", "warm"), singles, strict=True):
        print(f"single check_and_reserve ({name} numbers): {args.single} decisions ({allowed} reserved) in "
              f"{elapsed:.2f} s = {args.single / elapsed:,.0f} decisions/s; latency p50 "
              f"{statistics.median(lat) * 1e3:.3f} ms, p99 {percentile(lat, 99) * 1e3:.3f} ms, "
              f"max {max(lat) * 1e3:.2f} ms; gate-process CPU {cpu / args.single * 1e6:.0f} us per decision")
    print(f"single check (what-if): p50 {statistics.median(clat) * 1e3:.3f} ms, "
          f"p99 {percentile(clat, 99) * 1e3:.3f} ms")
    for name, (total, reserved, elapsed, cpu, server) in zip(("cold", "warm"), passes, strict=True):
        print(f"batched reserve_many (batch {args.batch}, {name} numbers): {total} decisions ({reserved} reserved) "
              f"in {elapsed:.2f} s = {total / elapsed:,.0f} decisions/s wall; CPU per decision: gate process "
              f"{cpu / total * 1e6:.0f} us, redis-server {server / total * 1e6:.0f} us "
              f"(= {total / cpu:,.0f} decisions per gate-process CPU second)")
    print("redis-server commands during the warm batched pass (INFO commandstats; the archiver's included):")
    print("\n".join(redis_profile))
    if parallel:
        print(f"batched reserve_many in {args.processes} processes (batch {args.batch}, warm numbers): "
              f"{parallel[0]} decisions in {parallel[1]:.2f} s = {parallel[0] / parallel[1]:,.0f} decisions/s wall; "
              f"CPU per decision: gate processes {parallel[2] / parallel[0] * 1e6:.0f} us, "
              f"redis-server {parallel[3] / parallel[0] * 1e6:.0f} us")
    print(f"audit: {audit_entries} entries, verify {verify_elapsed:.2f} s "
          f"({audit_entries / verify_elapsed:,.0f} entries/s): {verified}")

    total, _reserved, elapsed, cpu, server = passes[1]
    gate_us, redis_us = cpu / total * 1e6, server / total * 1e6
    load_end = os.getloadavg()[0]
    print()
    print("SUMMARY (issue 2 targets: >= 20,000 decisions/s batched, single-decision p99 <= 2 ms)")
    print(f"  batched, 1 gate process, warm numbers: {total / elapsed:,.0f} decisions/s wall")
    if parallel:
        print(f"  batched, {args.processes} gate processes, warm numbers: "
              f"{parallel[0] / parallel[1]:,.0f} decisions/s wall")
    cores = os.cpu_count() or 1
    print(f"  CPU per batched decision: gate process {gate_us:.0f} us + redis-server {redis_us:.0f} us = "
          f"{gate_us + redis_us:.0f} us")
    print(f"  what that CPU allows on {cores} idle cores: {cores * 1e6 / (gate_us + redis_us):,.0f} decisions/s with "
          f"enough gate processes; {1e6 / max(gate_us, redis_us):,.0f}/s with one (it decides a slice while Redis "
          f"reserves the previous one)")
    for name, (lat, _allowed, _elapsed, cpu_single) in zip(("cold", "warm"), singles, strict=True):
        print(f"  single check_and_reserve, {name} numbers: p50 {statistics.median(lat) * 1e3:.3f} ms, "
              f"p99 {percentile(lat, 99) * 1e3:.3f} ms; gate CPU {cpu_single / args.single * 1e6:.0f} us per decision")
    busy = max(load_start, load_end) > 1.5
    print(f"  load average (1 min): {load_start:.1f} at start, {load_end:.1f} at end "
          f"({'other work shared the CPUs: wall-clock figures are pessimistic' if busy else 'quiet machine'})")
    if profiler:
        pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(40)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
