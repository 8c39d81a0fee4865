"""Campaigns sharing agents on the real Asterisk 22 lab (/work/shared/asterisk-lab), by hand:

    AMI_PORT=5038 ../shared/asterisk-lab/start.sh "$PREFIX" "$CONFDIR" "$PWD"
    python bench/shared_agents_lab.py --redis redis://127.0.0.1:6379/9 --ami-port 5038 --mode progressive \
        --queues solo0,solo0 [--contacts 12]

One `Engine` paces one campaign per queue named (a queue may be named twice: two campaigns on it) through the
lab's AMI; prints each campaign's dispositions and the peak of calls in flight towards the queues (the shared
pool in Redis). FLUSHES the given Redis database first: give it a scratch one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from dialer.campaigns import CampaignStore
from dialer.config import AsteriskServer
from dialer.livestats import dispositions_key
from dialer.runtime.engine import offset_clock, run_engine
from tests.runtime_support import AT, engine_config, numbers, setup_campaign
from tests.test_runtime_engine import SETTINGS


async def main(args: argparse.Namespace) -> None:
    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    tmp = Path(tempfile.mkdtemp())
    made = {}
    for i, queue in enumerate(args.queues.split(",")):
        (tmp / f"c{i}").mkdir()
        # the lab's callees by last digit: 0, 1, 5, 6, 9 answer and stay on the line
        phones = [p for p in numbers(100, base=f"+33145710{i}") if p[-1] in "01569"][:args.contacts]
        extra = {"pacing_ratio": 2} if args.mode == "power" else {}
        made[(i, queue)] = setup_campaign(client, tmp / f"c{i}", phones, list_id=f"l{i}", pacing_mode=args.mode,
                                          max_attempts=1, recording=False, queue=queue, **extra)
    server = AsteriskServer("lab", "127.0.0.1", args.ami_port, "dialer", "dialer-secret", "md5")
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(engine_config(args.redis), stop_event=stop, clock=offset_clock(AT, 1.0),
                                          servers=[server], settings=SETTINGS, process_id="lab"))
    store = CampaignStore(client)
    peak, start = 0, time.monotonic()
    while any(store.get("acme", c).status != "completed" for c in made.values()):
        if time.monotonic() - start > args.timeout or task.done():
            print("not completed in time")
            break
        peak = max(peak, sum(client.zcard(k) for k in client.keys("dialer:agents:*:calls")))
        await asyncio.sleep(0.05)
    stop.set()
    await task
    for (i, queue), campaign in made.items():
        raw = {k.decode(): int(v) for k, v in client.hgetall(dispositions_key("acme", campaign)).items()}
        print(f"campaign {i} ({args.mode}) on {queue}: {raw}")
    print(f"peak calls in flight towards the queues: {peak}; {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--ami-port", type=int, default=5038)
    parser.add_argument("--mode", default="progressive", choices=["progressive", "power", "predictive"])
    parser.add_argument("--queues", default="solo0,solo0")
    parser.add_argument("--contacts", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=600)
    asyncio.run(main(parser.parse_args()))
