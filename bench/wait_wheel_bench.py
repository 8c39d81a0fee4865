"""Contacts waiting for a retry in a campaign's queue (issue 18): Redis bytes per waiting contact and the Redis CPU
the claims spend promoting them, with the queue code on the path (run it with PYTHONPATH of a checkout to compare).

    python bench/wait_wheel_bench.py [--contacts 10000] [--spread 3600] [--tick 1.0]

Starts its own redis-server. Queues --contacts contacts, claims them all and settles each as a retry due 60 s to
60 + --spread s later (uniform, seeded); measures the waiting contacts' keys (MEMORY USAGE, every element) and
used_memory. Then steps the campaign clock by --tick seconds past the last due time, claiming up to 100 contacts
a tick and finishing them, as an engine would: the Redis CPU of those claim scripts (INFO commandstats, evalsha),
the claims placed, and any contact claimed before its due time (must be 0).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("PYTHONPATH"):  # PYTHONPATH=<a checkout>: that checkout's queue code, to compare
    sys.path.insert(0, str(ROOT))

from dialer.redisproc import RedisProcess  # noqa: E402
from dialer.runtime.queues import ContactQueue, QueuedContact  # noqa: E402

T0 = 1_772_528_400.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=3600.0)
    parser.add_argument("--tick", type=float, default=1.0)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}; queue code "
          f"{sys.modules['dialer.runtime.queues'].__file__}", flush=True)
    rng = random.Random(18)
    with RedisProcess() as server:
        client = redis.Redis.from_url(server.url)
        print(f"redis-server {client.info('server')['redis_version']}", flush=True)
        q = ContactQueue(client, "acme", "c1")
        n = args.contacts
        before = client.info("memory")["used_memory"]
        for k in range(0, n, 1000):  # as the record's window loads a page
            page = [(QueuedContact(f"imp1-{i}", f"+3314{i:07d}", "FR", "75011", None, ("Europe/Paris",), 0), "q", "")
                    for i in range(k, min(n, k + 1000))]
            q.load_window(page, at=T0, gen=str(k // 1000), after=page[-1][0].contact_id)
        due: dict[str, float] = {}
        while True:
            got = q.claim(500, owner="bench", now=T0, lease_until=1e12, call_ids=[f"a{i}" for i in range(500)],
                          servers=["pbx"] * 500)
            if not got:
                break
            for c in got:
                due[c.contact.contact_id] = T0 + 60 + rng.uniform(0, args.spread)
                q.retry(c, due[c.contact.contact_id], reason="retry_busy", count_attempt=True, at=T0 + 1.234)
        after = client.info("memory")["used_memory"]
        keys = [k for name, k in q.keys.items() if name.startswith("wait") and client.exists(k)]
        usage = sum(int(client.memory_usage(k, samples=0) or 0) for k in keys)
        print(f"{n:,} contacts waiting, due over {args.spread:,.0f} s: {usage / n:.1f} B per contact (MEMORY USAGE of "
              f"{len(keys)} keys), used_memory {after - before:+,} B = {(after - before) / n:.1f} per contact "
              f"(from the empty Redis)", flush=True)
        client.config_resetstat()
        cpu = client.info("cpu")
        server0 = cpu["used_cpu_user"] + cpu["used_cpu_sys"]
        now, claimed, early, calls = T0, 0, 0, 0
        cpu0 = time.process_time()
        while now <= T0 + 120 + args.spread + args.tick:
            got = q.claim(100, owner="bench", now=now, lease_until=1e12,
                          call_ids=[f"b{calls}-{i}" for i in range(100)], servers=["pbx"] * 100)
            calls += 1
            for c in got:
                early += due[c.contact.contact_id] > now
                q.finish(c, reason="answered", at=now, count_attempt=True)
            claimed += len(got)
            now += args.tick
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        cpu = client.info("cpu")
        server = cpu["used_cpu_user"] + cpu["used_cpu_sys"] - server0
        print(f"{calls:,} claims (tick {args.tick} s): {claimed:,} contacts claimed, {early} before their due time; "
              f"redis-server CPU {server:.2f} s (INFO cpu); evalsha (claims and finishes) {stats.get('calls', 0):,} "
              f"calls, {stats.get('usec_per_call', 0):.1f} us each (wall time inside Redis); client CPU "
              f"{time.process_time() - cpu0:.1f} s; load average {os.getloadavg()[0]:.1f}", flush=True)
        client.close()


if __name__ == "__main__":
    main()
