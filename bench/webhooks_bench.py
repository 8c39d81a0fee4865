"""Benchmark of webhook emission and delivery.

Starts its own redis-server and a loopback aiohttp receiver, then times:
  - FactStore.add_optout for a tenant without endpoints vs. one with an endpoint (the outbox append
    rides in the same transaction: what does it cost the write?);
  - one delivery worker fanning out and delivering N events over C contacts (signed, in order per contact).

    python bench/webhooks_bench.py [--events 2000] [--contacts 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
import redis.asyncio as aioredis
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.facts import FactStore
from dialer.redisproc import RedisProcess
from dialer.webhooks.addresses import AddressPolicy
from dialer.webhooks.delivery import DeliveryWorker
from dialer.webhooks.endpoints import EndpointStore
from dialer.webhooks.sealing import SecretBox

KEY = "bench-secret-key"
OPEN = AddressPolicy(allow_http=True, allow_private=True)


def time_optouts(store: FactStore, tenant: str, n: int) -> float:
    now = datetime.now(UTC)
    start = time.perf_counter()
    for i in range(n):
        store.add_optout(tenant, f"+3314{i:07d}", at=now, source="bench")
    return time.perf_counter() - start


async def main(events: int, contacts: int) -> None:
    received = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    with RedisProcess() as server:
        sync = redis.Redis.from_url(server.url)
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        box = SecretBox(KEY)
        store = FactStore(sync)
        plain = time_optouts(store, "nohooks", events)
        await EndpointStore(client, box, OPEN).create("hooks", f"http://127.0.0.1:{port}/hook", ["optout.recorded"])
        now = datetime.now(UTC)
        start = time.perf_counter()
        for i in range(events):
            store.add_optout("hooks", f"+3314{i % contacts:07d}", at=now, source=f"b{i}")
        hooked = time.perf_counter() - start
        async with DeliveryWorker(client, box, OPEN) as worker:
            start = time.perf_counter()
            while received < events:
                await worker.run_once()
            delivered = time.perf_counter() - start
        print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
        print(f"add_optout, tenant without endpoints: {events / plain:,.0f}/s ({plain / events * 1e3:.2f} ms each)")
        print(f"add_optout, tenant with an endpoint:  {events / hooked:,.0f}/s ({hooked / events * 1e3:.2f} ms each)")
        print(f"delivery of {events} events over {contacts} contacts, one worker: {events / delivered:,.0f}/s "
              f"({delivered:.1f} s)")
        sync.close()
        await client.aclose()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--contacts", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.contacts))
