"""Sustained Originates per second of the campaign runtime, gate checks included, against the sandbox PBX.

Everything real: a redis-server (started here), a Bloctel copy loaded by the registry loader, contacts imported by
the contacts import, a started campaign, and the engine (`run_engine`) doing for every call: claim (Lua), the gate's
check-and-reserve (facts read, rule engine, Lua reserve + audit entry), Originate over AMI to the sandbox PBX (its
own process), outcome (gate.record_outcome + audit, queue settle, live stats). The campaign is agentless (AI
sessions) so the dial rate is bounded by the engine, not by agents; callees are mostly busy (the call ends at once)
with some answered by an AI session, to keep the PBX below its own ceiling.

    python bench/engine_bench.py --contacts 6000
    python bench/engine_bench.py --contacts 6000 --trunk-channels 1000 --cps 1000   # shared trunk ceilings on
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from dialer.config import AsteriskServer
from dialer.redisproc import RedisProcess
from dialer.runtime.engine import RuntimeSettings, offset_clock, run_engine
from dialer.runtime.queues import ContactQueue
from tests.runtime_support import AT, engine_config, setup_campaign


def phones(n: int, answered_share: float) -> list[str]:
    out = []
    for i in range(n):
        digit = "5" if (i % 100) < answered_share * 100 else "2"  # 5: answers, stays 4 s; 2: busy
        out.append(f"+331{4000000 + i:07d}{digit}")
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=6000)
    ap.add_argument("--answered", type=float, default=0.1, help="share of callees who answer (AI session)")
    ap.add_argument("--sessions", type=int, default=400, help="AI sessions (calls in flight ceiling)")
    ap.add_argument("--time-scale", type=float, default=0.05)
    ap.add_argument("--trunk-channels", type=int, default=0, help="shared trunk channel limit (0: none)")
    ap.add_argument("--cps", type=float, default=0.0, help="shared calls-per-second ceiling (0: none)")
    args = ap.parse_args()

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "DIALER_LOG_LEVEL": "WARNING"}
    pbx = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialer", "sandbox-pbx", "--port", "0", "--ai-sessions", str(args.sessions),
        "--time-scale", str(args.time_scale), "--seed", "1", stdout=asyncio.subprocess.PIPE, env=env)
    assert pbx.stdout is not None
    line = (await pbx.stdout.readline()).decode()
    port = int(re.search(r"AMI on [\d.]+:(\d+)", line).group(1))  # type: ignore[union-attr]
    with RedisProcess() as server, tempfile.TemporaryDirectory() as tmp:
        client = redis.Redis.from_url(server.url)
        t = time.perf_counter()
        campaign = setup_campaign(client, Path(tmp), phones(args.contacts, args.answered), agent_kind="ai",
                                  ai_endpoint="PJSIP/ai@voicebot", queue="dialer")
        print(f"set-up (import {args.contacts} contacts, start campaign): {time.perf_counter() - t:.1f} s")
        queue = ContactQueue(client, "acme", campaign)
        settings = RuntimeSettings(dial_template="Local/{number}@sim-callee", ai_sessions=args.sessions,
                                   tick_seconds=0.02, max_batch=256, drain_seconds=30,
                                   unknown_cooloff=timedelta(minutes=60), trunk_channels=args.trunk_channels,
                                   calls_per_second=args.cps)
        stop = asyncio.Event()
        sbx = AsteriskServer("sandbox", "127.0.0.1", port, "dialer", "dialer-secret", "md5")
        marks: list[tuple[float, int]] = []
        engine_task = asyncio.create_task(run_engine(
            engine_config(server.url), stop_event=stop, clock=offset_clock(AT, 1.0), servers=[sbx],
            settings=dataclasses.replace(settings), process_id="bench"))
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        while True:
            await asyncio.sleep(0.5)
            counts = queue.counts()
            attempted = counts["final"] + counts["inflight"]
            marks.append((time.perf_counter(), attempted))
            if counts["ready"] == 0 and counts["inflight"] == 0 and counts["waiting"] == 0:
                break
            if time.perf_counter() - t0 > 600:
                print("gave up after 600 s")
                break
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        stop.set()
        engine = await engine_task
        finals = queue.final_states()
        reasons: dict[str, int] = {}
        for f in finals.values():
            reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
        # sustained rate: between 10% and 90% of the contacts attempted
        lo = next(m for m in marks if m[1] >= 0.1 * args.contacts)
        hi = next((m for m in marks if m[1] >= 0.9 * args.contacts), marks[-1])
        sustained = (hi[1] - lo[1]) / max(1e-9, hi[0] - lo[0])
        print(f"originates placed: {engine.placed}; contacts final: {len(finals)} {reasons}")
        print(f"wall {elapsed:.1f} s; overall {engine.placed / elapsed:.0f} originates/s; "
              f"sustained (10%-90%) {sustained:.0f} originates/s")
        print(f"engine process CPU {cpu:.1f} s = {1000 * cpu / max(1, engine.placed):.2f} ms per call "
              f"(claim + gate + originate + outcome)")
        print(f"load average {os.getloadavg()}")
        client.close()
    pbx.terminate()
    await pbx.wait()


if __name__ == "__main__":
    asyncio.run(main())
