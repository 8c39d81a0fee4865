"""The shared agent pool's cost per pacing decision (issue 15): snapshot + reservation round trips with many calls
in flight towards one queue, and the split of its lines (pure).

    python bench/agent_pool_bench.py [--calls 400] [--campaigns 5] [--rounds 2000]

Starts its own redis-server on a free loopback port (no persistence) and stops it.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from dialer.pacing.sharing import ShareClaim, apportion
from dialer.runtime.agentpool import AgentPool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--campaigns", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        pool = AgentPool(client, "bench", lease_seconds=20)
        per = args.calls // args.campaigns
        for c in range(args.campaigns):
            pool.reserve(["q"], f"t/c{c}", [f"c{c}-{i}" for i in range(per)], max_total=10**6, max_mine=10**6,
                         claim=ShareClaim(f"t/c{c}", 5))
        t0 = time.perf_counter()
        for _ in range(args.rounds):
            pool.snapshot(["q"])
        snap_ms = (time.perf_counter() - t0) / args.rounds * 1000
        t0 = time.perf_counter()
        for r in range(args.rounds):
            got, _, _ = pool.reserve(["q"], "t/c0", [f"x{r}"], max_total=10**6, max_mine=10**6,
                                     claim=ShareClaim("t/c0", 5))
            pool.release(got)
        reserve_ms = (time.perf_counter() - t0) / args.rounds * 1000
        snap = pool.snapshot(["q"])
        claims = snap.claims()
        t0 = time.perf_counter()
        for _ in range(args.rounds):
            apportion(args.calls + 50, claims)
        split_us = (time.perf_counter() - t0) / args.rounds * 1e6
        print(f"{args.calls} calls in flight, {args.campaigns} campaigns, {args.rounds} rounds:")
        print(f"  snapshot (purge + every call's owner and age + demands): {snap_ms:.3f} ms")
        print(f"  reserve 1 place (atomic check) + release: {reserve_ms:.3f} ms")
        print(f"  apportion {len(claims)} claims (pure): {split_us:.1f} us")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
