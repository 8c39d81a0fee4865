"""How many Originates per second the sandbox PBX sustains, with every call's events delivered.

The PBX runs in its own process (`dialer sandbox-pbx`), the load generator here: a raw AMI
connection (dialer.ami.protocol) that sends Originates at a target rate and counts, per call id,
the OriginateResponse and the final Hangup of the call's channel.

    python bench/sandbox_originate.py --calls 4000 --rate 400 --mix busy
    python bench/sandbox_originate.py --calls 2000 --rate 200 --mix answer --agents 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialer.ami.protocol import encode_action

NUMBERS = {"busy": ["5550002"], "answer": ["5550006"], "mixed": ["5550002", "5550004", "5550006", "5550005"]}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200.0, help="target Originates per second")
    ap.add_argument("--mix", choices=sorted(NUMBERS), default="busy")
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--time-scale", type=float, default=0.01)
    args = ap.parse_args()

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "DIALER_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialer", "sandbox-pbx", "--port", "0", "--agents", str(args.agents),
        "--time-scale", str(args.time_scale), "--seed", "1",
        stdout=asyncio.subprocess.PIPE, env=env)  # fmt: skip
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode()
    port = int(re.search(r"AMI on [\d.]+:(\d+)", line).group(1))  # type: ignore[union-attr]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_action("Login", "login", {"Username": "dialer", "Secret": "dialer-secret"}))
    await writer.drain()

    responses: set[str] = set()
    finished: set[str] = set()
    events = 0
    done = asyncio.Event()

    async def read() -> None:
        # A light splitter, not dialer.ami.protocol.Parser: this measures the PBX, not a client's parser
        # (the client's own benchmark is the ami-client's). Each message is still attributed to its call.
        nonlocal events
        carry = b""
        while not done.is_set():
            data = await reader.read(1 << 20)
            if not data:
                return
            blocks = (carry + data).split(b"\r\n\r\n")
            carry = blocks.pop()
            for block in blocks:
                if not block.startswith(b"Event: "):
                    continue
                events += 1
                if block.startswith(b"Event: OriginateResponse\r\n"):
                    fields = dict(line.split(b": ", 1) for line in block.split(b"\r\n") if b": " in line)
                    call_id = fields[b"ActionID"].decode()
                    responses.add(call_id)
                    if fields[b"Response"] == b"Failure":
                        finished.add(call_id)
                elif block.startswith(b"Event: Hangup\r\n") and b"@sim-callee-" in block and b";1\r\n" in block:
                    at = block.find(b"ChanVariable: DIALER_CALL_ID=")
                    if at >= 0:
                        end = block.find(b"\r\n", at)
                        finished.add(block[at + len(b"ChanVariable: DIALER_CALL_ID=") : end].decode())
            if len(finished) >= args.calls and len(responses) >= args.calls:
                done.set()

    reader_task = asyncio.create_task(read())
    numbers = NUMBERS[args.mix]
    start = time.perf_counter()
    for i in range(args.calls):
        due = start + i / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        call_id = f"b{i}"
        writer.write(encode_action("Originate", call_id, [
            ("Channel", f"Local/{numbers[i % len(numbers)]}@sim-callee"), ("Context", "dialer-outbound"),
            ("Exten", "s"), ("Priority", "1"), ("Timeout", "30000"), ("CallerID", "Bench <100>"),
            ("Async", "true"), ("Variable", f"DIALER_CALL_ID={call_id}"), ("Variable", "DIALER_CAMPAIGN_ID=bench"),
            ("Variable", "DIALER_QUEUE=dialer"), ("Variable", "DIALER_AGENT_KIND=queue")]))  # fmt: skip
        if i % 50 == 0:
            await writer.drain()
    sent = time.perf_counter() - start
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        pass
    total = time.perf_counter() - start
    reader_task.cancel()
    writer.close()
    proc.send_signal(signal.SIGINT)
    await proc.wait()
    print(f"mix={args.mix} calls={args.calls} target={args.rate:.0f}/s time_scale={args.time_scale}")
    print(f"  sent in {sent:.2f}s ({args.calls / sent:.0f} originates/s offered)")
    print(f"  OriginateResponse {len(responses)}/{args.calls}, finished {len(finished)}/{args.calls} "
          f"in {total:.2f}s ({len(finished) / total:.0f} calls/s completed), {events} events "
          f"({events / total:.0f} events/s)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
