"""AMI benchmarks: events parsed and tracked per second, and sustained originates per second.

    python bench/ami_bench.py parse [--rounds 200]
    python bench/ami_bench.py originate [--calls 3000] [--concurrency 300] [--rate 200] [--events on]

parse: the real Asterisk 22 transcript (tests/data) replayed as wire bytes in 64 KiB reads through
Parser and CallTracker (its six calls registered again before each replay), on one core.

originate: the sandbox PBX runs in its own process (`python -m dialer sandbox-pbx`, time scale
0.01); one AMIPool client originates `calls` calls with up to `concurrency` Originate actions
awaiting their response, and waits until every attempt has its outcome from the tracker.
Reported: Originate actions acknowledged per second, and calls per second with every event
tracked to its attempt (first Originate sent to last outcome). Every outcome is checked against
the disposition the callee's last digit implies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dialer.ami.calls import CallTracker, Outcome  # noqa: E402
from dialer.ami.originate import OriginateRequest  # noqa: E402
from dialer.ami.pool import AMIPool  # noqa: E402
from dialer.ami.protocol import Parser  # noqa: E402
from dialer.config import AsteriskServer  # noqa: E402
from dialer.redisproc import free_port  # noqa: E402
from tests.ami_transcript import transcript_wire_bytes  # noqa: E402

CALLS = ["busy", "congestion", "noanswer", "answer20", "answer4", "answer10"]


def expected_by_digit() -> dict[str, str]:
    """Last digit -> expected disposition in the sandbox's last-digit mode (enough agents): the
    reference's busy, congestion, no answer, and three plain answering callees from its table."""
    from dialer.sandbox.behaviour import Fate, reference_plan

    plain = [
        d
        for d in "0987654321"
        if (plan := reference_plan("555000" + d)).fate is Fate.ANSWER and not plan.machine and plan.optout_after is None
    ]
    return {"2": "busy", "4": "congestion", "3": "no_answer", **dict.fromkeys(plain[:3], "answered")}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def bench_parse(rounds: int) -> None:
    wire = transcript_wire_bytes()
    body = wire[wire.index(b"\r\n") + 2 :]
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    messages = outcomes = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        parser = Parser(expect_banner=False)
        tracker = CallTracker()
        for call in CALLS:
            tracker.register(call, "c", "t", "+33100000000", 0.0, action_id=f"orig-{call}")
        for chunk in chunks:
            for message in parser.feed(chunk):
                messages += 1
                outcomes += len(tracker.feed(message, 1.0))  # type: ignore[arg-type]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    assert outcomes == rounds * len(CALLS), outcomes
    # CPU time of this (single-threaded) process: what one core does, even when others share the machine.
    print(f"parse+track: {messages} messages, {cpu:.2f} s CPU = {messages / cpu:,.0f} messages/s per core")
    mbps = len(body) * rounds / cpu / 1e6
    print(f"             (wall {elapsed:.2f} s = {messages / elapsed:,.0f}/s; {mbps:.1f} MB/s)")
    # the parser alone, for reference
    cpu_start = time.process_time()
    for _ in range(rounds):
        parser = Parser(expect_banner=False)
        for chunk in chunks:
            parser.feed(chunk)
    alone = time.process_time() - cpu_start
    print(f"parse only:  {messages / alone:,.0f} messages/s per core")


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"sandbox PBX did not listen on {port}")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_originates(port: int, calls: int, concurrency: int, pbx_pid: int, rate: float, events: str) -> None:
    outcomes: dict[str, Outcome] = {}
    done = asyncio.Event()

    def on_outcome(server: str, outcome: Outcome) -> None:
        outcomes[outcome.call_id] = outcome
        if len(outcomes) >= calls:
            done.set()

    server = AsteriskServer("sbx", "127.0.0.1", port, "dialer", "dialer-secret", "md5")
    # The event classes asterisk/manager.conf.sample grants (read = system,call,agent,user): no
    # `dialplan` class (Newexten, VarSet), which the tracker does not need thanks to channelvars.
    pool = AMIPool([server], on_outcome=on_outcome, ping_interval=0, action_timeout=30.0, events=events)
    await pool.start()
    EXPECTED = expected_by_digit()
    digits = list(EXPECTED)
    requests = []
    for i in range(calls):
        digit = digits[i % len(digits)]
        e164 = f"+331{i:07d}{digit}"
        requests.append(
            OriginateRequest(
                call_id=uuid.uuid4().hex,
                campaign_id="bench",
                tenant="bench",
                contact=e164,
                channel=f"Local/{e164[1:]}@sim-callee",
                caller_id="100",
                timeout_ms=15000,
                queue="dialer",
            )
        )
    expected = {r.call_id: EXPECTED[r.contact[-1]] for r in requests}
    semaphore = asyncio.Semaphore(concurrency)
    statuses: Counter[str] = Counter()

    async def one(i: int, req: OriginateRequest) -> None:
        if rate:  # offered load: the i-th Originate leaves at start + i/rate
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        async with semaphore:
            result = await pool.originate("sbx", req)
            statuses[result.status] += 1

    start, cpu_start = time.perf_counter(), time.process_time()
    pbx_cpu_start = process_cpu(pbx_pid)
    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    acked = time.perf_counter() - start
    await asyncio.wait_for(done.wait(), 300)
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    pbx_cpu = process_cpu(pbx_pid) - pbx_cpu_start
    await pool.close()
    wrong = {cid: (o.disposition, expected[cid]) for cid, o in outcomes.items() if o.disposition != expected[cid]}
    offered = f"offered {rate:g}/s" if rate else "as fast as acknowledged"
    offered += f", events {events}"
    print(f"originate: {calls} calls, {offered}, concurrency {concurrency}: statuses {dict(statuses)}")
    print(f"  Originate acknowledged: {calls / acked:,.0f}/s ({acked:.2f} s)")
    print(f"  every call settled (outcome from its events): {calls / total:,.0f} calls/s ({total:.2f} s)")
    print(f"  outcomes: {dict(Counter(o.disposition.value for o in outcomes.values()))}; wrong: {len(wrong)}")
    print(f"  CPU: dialer side {cpu:.2f} s ({calls / cpu:,.0f} calls per CPU second), sandbox PBX {pbx_cpu:.2f} s")
    if wrong:
        print("  first wrong:", list(wrong.items())[:5])


def bench_originate(calls: int, concurrency: int, time_scale: float, rate: float, events: str) -> None:
    port = free_port()
    agents = 2000
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dialer",
            "sandbox-pbx",
            "--port",
            str(port),
            "--time-scale",
            str(time_scale),
            "--agents",
            str(agents),
            "--seed",
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        asyncio.run(run_originates(port, calls, concurrency, proc.pid, rate, events))
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("parse")
    p.add_argument("--rounds", type=int, default=200)
    o = sub.add_parser("originate")
    o.add_argument("--calls", type=int, default=3000)
    o.add_argument("--concurrency", type=int, default=300)
    o.add_argument("--time-scale", type=float, default=0.01)
    o.add_argument("--events", default="system,call,agent,user", help="Login Events classes ('on': all)")
    o.add_argument("--rate", type=float, default=0.0, help="offered Originates per second (0: as fast as possible)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.what == "parse":
        bench_parse(args.rounds)
    else:
        bench_originate(args.calls, args.concurrency, args.time_scale, args.rate, args.events)


if __name__ == "__main__":
    main()
