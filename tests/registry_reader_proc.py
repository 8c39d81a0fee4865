"""A separate reader process for the swap tests: looks up a fixed probe set in a loop and classifies each
answer as version "A", version "B" or "MIXED" (a half-swapped registry, which must never happen).

usage: python -m tests.registry_reader_proc REDIS_URL NAME PROBES_FILE EXPECT_A EXPECT_B STOP_FILE
EXPECT_* are strings of 0/1 (the expected membership of each probe). Prints a JSON summary when STOP_FILE
appears. Uses refresh_interval=0, so the pointer is re-read before every batch.
"""

from __future__ import annotations

import json
import os
import sys

import redis

from dialer.registry.store import RegistryNotLoaded, RegistryStore


def main() -> int:
    url, name, probes_file, expect_a, expect_b, stop_file = sys.argv[1:7]
    with open(probes_file) as fh:
        probes = fh.read().split()
    store = RegistryStore(redis.Redis.from_url(url), refresh_interval=0.0)
    counts = {"A": 0, "B": 0, "MIXED": 0, "not_loaded": 0}
    sequence: list[str] = []
    print("ready", flush=True)
    while not os.path.exists(stop_file):
        try:
            answer = "".join("1" if hit else "0" for hit in store.contains_many(name, probes))
        except RegistryNotLoaded:
            counts["not_loaded"] += 1
            continue
        label = "A" if answer == expect_a else "B" if answer == expect_b else "MIXED"
        counts[label] += 1
        if not sequence or sequence[-1] != label:
            sequence.append(label)
    # One more batch after the stop signal, which is given after the last swap: it must see the last version.
    final = "".join("1" if hit else "0" for hit in store.contains_many(name, probes))
    final_label = "A" if final == expect_a else "B" if final == expect_b else "MIXED"
    print(json.dumps({"counts": counts, "sequence": sequence, "final": final_label}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
