"""Registry benchmark: bytes per number in Redis, import time, lookups per second (issue 3).

    python bench/registry_bench.py [--numbers 10000000] [--redis-url URL]

Generates a US DNC file of N distinct random NANP numbers, imports it with the real loader (parse, build,
stage, atomic swap), measures the version's size with MEMORY USAGE against a plain Redis SET of the same
numbers (E.164 strings) measured in the same run, then times batched lookups from one client: through
RegistryStore.contains_many (the gate's path: one pointer check per batch) and, for comparison, SMISMEMBER
against the plain SET (pipelined). Starts its own redis-server unless --redis-url is given (its data is
flushed!). Prints a Markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.redisproc import RedisProcess
from dialer.registry.loader import load_registry
from dialer.registry.store import RegistryStore, key_chunk, key_meta

NANP_SPACE = 800 * 800 * 10_000  # NPA 200-999 x NXX 200-999 x 0000-9999


def nanp_from_index(i: int) -> int:
    npa, rest = divmod(i, 800 * 10_000)
    nxx, line = divmod(rest, 10_000)
    return (200 + npa) * 10_000_000 + (200 + nxx) * 10_000 + line


def memory_usage(client: redis.Redis, keys: list[str]) -> int:
    return sum(int(client.memory_usage(k, samples=0) or 0) for k in keys)


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--numbers", type=int, default=10_000_000)
    ap.add_argument("--redis-url")
    ap.add_argument("--batch", type=int, default=1000, help="lookups per batch")
    ap.add_argument("--lookups", type=int, default=2_000_000)
    args = ap.parse_args()

    server = None
    url = args.redis_url
    if not url:
        server = RedisProcess().start()
        url = server.url
    client = redis.Redis.from_url(url, socket_timeout=300)  # FLUSHDB / MEMORY USAGE of a 10M set take seconds
    client.flushdb()
    redis_version = client.info("server")["redis_version"]
    rng = random.Random(20261123)
    results: list[tuple[str, str]] = []
    tmp = tempfile.mkdtemp(prefix="regbench-")
    try:
        t = time.perf_counter()
        indexes = rng.sample(range(NANP_SPACE), args.numbers)
        nationals = [nanp_from_index(i) for i in indexes]
        del indexes
        path = Path(tmp) / "us_dnc_full.txt"
        with open(path, "w") as fh:
            fh.write("\n".join(map(str, nationals)))
            fh.write("\n")
        gen_s = time.perf_counter() - t
        size_mb = path.stat().st_size / 1e6
        print(f"generated {args.numbers} numbers ({size_mb:.0f} MB file) in {gen_s:.1f} s", file=sys.stderr)

        # -- import: the real loader, parse + build + stage + atomic swap
        mem0 = used_memory(client)
        t = time.perf_counter()
        report = load_registry(client, "us_dnc", path, loaded_at=datetime.now(UTC))
        import_s = time.perf_counter() - t
        v = report.version
        assert v is not None and v.rows == args.numbers
        mem1 = used_memory(client)
        keys = [key_meta("us_dnc", v.version)] + [key_chunk("us_dnc", v.version, i) for i in range(v.chunks)]
        reg_bytes = memory_usage(client, keys)
        print(f"import {import_s:.1f} s, {reg_bytes} bytes", file=sys.stderr)

        # -- a change file of 100,000 lines (50k additions, 50k deletions) applied to the 10M version
        present = set(nationals[: 50_000])
        extra = [nanp_from_index(i) for i in rng.sample(range(NANP_SPACE), 60_000)]
        additions = [n for n in extra if n not in present][:50_000]
        delta_path = Path(tmp) / "us_dnc_change.txt"
        with open(delta_path, "w") as fh:
            fh.writelines(f"D,{n}\n" for n in nationals[:50_000])
            fh.writelines(f"A,{n}\n" for n in additions)
        t = time.perf_counter()
        delta_report = load_registry(client, "us_dnc", delta_path, delta=True)
        delta_s = time.perf_counter() - t
        dv = delta_report.version
        assert dv is not None
        # Back to the full version for the lookup figures.
        load_registry(client, "us_dnc", path, force=True)  # deliberate: at small --numbers the change is a big share

        # -- plain Redis SET of the same numbers, same run
        mem2 = used_memory(client)
        t = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for i in range(0, len(nationals), 10_000):
            pipe.sadd("bench:plain_set", *(f"+1{n}" for n in nationals[i:i + 10_000]))
            if i % 200_000 == 0:
                pipe.execute()
        pipe.execute()
        sadd_s = time.perf_counter() - t
        set_bytes = int(client.memory_usage("bench:plain_set", samples=0))
        mem3 = used_memory(client)
        print(f"plain set {set_bytes} bytes", file=sys.stderr)

        # -- lookups from one client: half listed, half not
        absent = [nanp_from_index(i) for i in rng.sample(range(NANP_SPACE), args.lookups // 2)]
        queries = [f"+1{n}" for n in nationals[: args.lookups // 2]] + [f"+1{n}" for n in absent]
        rng.shuffle(queries)
        batches = [queries[i:i + args.batch] for i in range(0, len(queries), args.batch)]

        # The benchmark itself holds ~12 million Python objects (the generated numbers and queries), which a
        # dialer process does not: keep the garbage collector from rescanning them during the timings.
        del nationals, absent, extra, additions, present
        gc.collect()
        gc.freeze()

        cold = RegistryStore(client, refresh_interval=0.0)
        cold.forget_all()
        t = time.perf_counter()
        cold.contains("us_dnc", queries[0])
        cold_s = time.perf_counter() - t  # fetch all chunks + verify checksum + deserialize

        # Two interleaved rounds per mode, best of two: the CPU is often shared while this runs.
        rates: dict[str, float] = {}
        for label, interval in (("every 1 s (default)", 1.0), ("every batch", 0.0)) * 2:
            store = RegistryStore(client, refresh_interval=interval)
            hits = 0
            t = time.perf_counter()
            for batch in batches:
                hits += sum(store.contains_many("us_dnc", batch))
            elapsed = time.perf_counter() - t
            rates[label] = max(rates.get(label, 0.0), len(queries) / elapsed)
        assert hits >= len(queries) // 2
        singles = queries[:200_000]
        single = RegistryStore(client, refresh_interval=1.0)
        t = time.perf_counter()
        for q in singles:
            single.contains("us_dnc", q)
        single_rate = len(singles) / (time.perf_counter() - t)

        t = time.perf_counter()
        set_hits = 0
        pipe = client.pipeline(transaction=False)
        for i, batch in enumerate(batches):
            pipe.smismember("bench:plain_set", batch)
            if i % 10 == 9:
                set_hits += sum(sum(r) for r in pipe.execute())
        set_hits += sum(sum(r) for r in pipe.execute())
        set_rate = len(queries) / (time.perf_counter() - t)
        assert set_hits == hits

        n = args.numbers
        results = [
            ("numbers (distinct, random NANP)", f"{n:,}"),
            ("input file", f"{size_mb:.0f} MB, 10-digit lines"),
            ("registry in Redis (MEMORY USAGE, all keys of the version)",
             f"{reg_bytes:,} B = **{reg_bytes / n:.2f} B/number** ({v.chunks} chunks, bitmap {v.blob_bytes:,} B)"),
            ("registry, INFO used_memory delta", f"{mem1 - mem0:,} B = {(mem1 - mem0) / n:.2f} B/number"),
            ("plain Redis SET of E.164 strings (MEMORY USAGE)", f"{set_bytes:,} B = **{set_bytes / n:.1f} B/number**"),
            ("plain SET, INFO used_memory delta", f"{mem3 - mem2:,} B = {(mem3 - mem2) / n:.1f} B/number"),
            ("ratio plain SET / registry", f"{set_bytes / reg_bytes:.0f}x"),
            ("full import (parse + build + stage + swap)",
             f"**{import_s:.1f} s** ({n / import_s:,.0f} lines/s)"),
            ("change file, 100,000 lines on the 10M version", f"{delta_s:.1f} s (+{dv.added:,} -{dv.removed:,})"),
            ("plain SET fill (SADD, pipelined 10k/cmd)", f"{sadd_s:.1f} s"),
            ("cold start of a reader (fetch + sha256 + deserialize)", f"{cold_s * 1000:.0f} ms"),
            (f"contains_many, batches of {args.batch}, pointer re-read every batch (best of 2)",
             f"**{rates['every batch']:,.0f} lookups/s**"),
            (f"contains_many, batches of {args.batch}, pointer re-read every 1 s (best of 2)",
             f"{rates['every 1 s (default)']:,.0f} lookups/s"),
            ("contains (one number per call, default refresh)", f"{single_rate:,.0f} lookups/s"),
            (f"plain SET, SMISMEMBER batches of {args.batch}, pipelined 10 deep", f"{set_rate:,.0f} lookups/s"),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        client.flushdb(asynchronous=True)
        if server is not None:
            server.cleanup()

    print(f"\n### Registry (issue 3) — {datetime.now(UTC):%Y-%m-%d}\n")
    print(f"Command: `python bench/registry_bench.py --numbers {args.numbers}`  ")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"redis-server {redis_version} (own server, no persistence), pyroaring BitMap64.\n")
    print("| measure | result |\n|---|---|")
    for k, val in results:
        print(f"| {k} | {val} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
