"""How long the AMI parser takes over one long message arriving in 64 KB reads (as the client reads the socket).

    python3 bench/ami_long_message_bench.py [megabytes]

Before the parser remembered that the bytes already held no terminator, each read searched the message from its
start again, so the time grew with the square of the message's length.
"""

from __future__ import annotations

import sys
import time

from dialer.ami.protocol import MAX_MESSAGE_BYTES, Parser


def run(megabytes: float) -> float:
    lines = int(megabytes * 1024 * 1024 // 78)
    wire = b"Response: Success\r\nActionID: 1\r\n" + (b"Output: " + b"x" * 70 + b"\r\n") * lines + b"\r\n"
    parser = Parser(expect_banner=False)
    start = time.process_time()
    for at in range(0, len(wire), 65536):
        parser.feed(wire[at:at + 65536])
    return time.process_time() - start


if __name__ == "__main__":
    size = float(sys.argv[1]) if len(sys.argv) > 1 else MAX_MESSAGE_BYTES / 1024 / 1024 + 0.5
    best = min(run(size) for _ in range(3))
    print(f"{size:g} MB message in 64 KB reads: {best:.3f} CPU-s (best of 3)")
