"""Gateway throughput and live-update latency, against a real `dialer serve` and a real redis-server.

  python bench/gateway_bench.py [--requests 3000] [--concurrency 20] [--samples 100]

Measures requests per second and latency percentiles for GET /v1/me (token lookup + audit event),
GET /v1/campaigns/{id}/stats (27 Redis reads in one pipeline) and POST /v1/optouts (phone parsing +
one MULTI/EXEC through FactStore in a thread); then how long after the engine's write an SSE client
sees the new figure (engine write -> pub/sub -> re-read -> event).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialer import livestats  # noqa: E402
from dialer.redisproc import RedisProcess, free_port  # noqa: E402
from gateway.auth import AuthStore  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(session: aiohttp.ClientSession, method: str, url: str, total: int, concurrency: int,
               body_for=None) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            kwargs = {"json": body_for(i)} if body_for else {}
            async with session.request(method, url, **kwargs) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    elapsed = time.perf_counter() - began
    return {"rps": total / elapsed, "p50_ms": 1000 * pct(latencies, 0.5), "p99_ms": 1000 * pct(latencies, 0.99),
            "statuses": statuses}


async def sse_latency(session: aiohttp.ClientSession, base: str, redis, cid: str, samples: int) -> dict[str, float]:
    delays: list[float] = []
    async with session.get(f"{base}/v1/campaigns/{cid}/events") as resp:
        await resp.content.readuntil(b"event: stats")  # the initial snapshot
        await resp.content.readuntil(b"\n\n")
        for n in range(1, samples + 1):
            pipe = redis.pipeline(transaction=True)
            livestats.queue_gauges(pipe, "bench", cid, {"dialing": n}, datetime.now(UTC))
            start = time.perf_counter()
            await pipe.execute()
            while True:
                block = (await resp.content.readuntil(b"\n\n")).decode()
                data = [line[6:] for line in block.splitlines() if line.startswith("data: ")]
                if data and json.loads(data[0])["gauges"]["dialing"] == n:
                    break
            delays.append(time.perf_counter() - start)
            await asyncio.sleep(0.02)
    return {"p50_ms": 1000 * statistics.median(delays), "p99_ms": 1000 * pct(delays, 0.99),
            "max_ms": 1000 * max(delays)}


async def main(args: argparse.Namespace) -> None:
    with RedisProcess() as server:
        redis = aioredis.Redis.from_url(server.url, decode_responses=True)
        store = AuthStore(redis)
        await store.create_tenant("bench")
        await store.create_user("bench", "boss", "admin")
        token, _ = await store.create_token("bench", "boss")
        port = free_port()
        env = {**os.environ, "DIALER_REDIS_URL": server.url, "DIALER_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "dialer", "serve", "--port", str(port)], cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(headers=headers) as session:
                for _ in range(100):
                    try:
                        async with session.get(f"{base}/v1/me") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
                async with session.post(f"{base}/v1/campaigns", json={"name": "bench"}) as resp:
                    cid = (await resp.json())["id"]
                results = {
                    "GET /v1/me": await load(session, "GET", f"{base}/v1/me", args.requests, args.concurrency),
                    "GET /v1/campaigns/{id}/stats": await load(session, "GET", f"{base}/v1/campaigns/{cid}/stats",
                                                               args.requests, args.concurrency),
                    "POST /v1/optouts": await load(
                        session, "POST", f"{base}/v1/optouts", args.requests, args.concurrency,
                        body_for=lambda i: {"phone": f"+331{45000000 + i:08d}", "source": "bench"}),
                }
                latency = await sse_latency(session, base, redis, cid, args.samples)
        finally:
            proc.terminate()
            proc.wait(10)
            await redis.aclose()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d}")
    print(f"requests: {args.requests} per route, concurrency {args.concurrency}")
    for name, r in results.items():
        print(f"  {name:32} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
              f"statuses {r['statuses']}")
    print(f"SSE engine write -> event ({args.samples} samples): p50 {latency['p50_ms']:.1f} ms, "
          f"p99 {latency['p99_ms']:.1f} ms, max {latency['max_ms']:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--samples", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
