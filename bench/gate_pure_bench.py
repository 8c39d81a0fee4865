"""Pure gate throughput: `rules.evaluate` decisions per second, no Redis (the stateful gate has its own bench).

Usage: python bench/gate_pure_bench.py [--n 20000] [--distinct 2000]
A mix of contacts (FR, US with state packs, CA, GB, DE), histories and instants; `--distinct` distinct
numbers, so the number/zone caches see realistic reuse. Prints decisions/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from datetime import UTC, datetime, timedelta

import phonenumbers

from rules import default_packs, evaluate
from rules.model import Attempt, Campaign, Consent, Contact, Facts, Lists

# (prefix, address country, postal code, total length of the E.164 string)
PREFIXES = [("+331456", "FR", "75011", 12), ("+336123", "FR", "67000", 12), ("+1212555", None, None, 12),
            ("+1305555", "US", "30301", 12), ("+1205555", None, None, 12), ("+1416555", None, None, 12),
            ("+4420794", None, None, 13), ("+4930123", None, None, 12), ("+1270202", None, None, 12)]


def scenarios(n: int, distinct: int, seed: int = 7) -> list[tuple[Contact, Campaign, Facts, datetime]]:
    rng = random.Random(seed)
    contacts = []
    for i in range(distinct):
        prefix, country, postal, length = PREFIXES[i % len(PREFIXES)]
        width = length - len(prefix)
        for _ in range(1000):  # a random valid number under the prefix
            phone = prefix + f"{rng.randrange(10 ** width):0{width}d}"
            if phonenumbers.is_valid_number(phonenumbers.parse(phone)):
                break
        else:
            raise SystemExit(f"no valid number under {prefix}")
        contacts.append(Contact(phone, country, postal))
    start = datetime(2026, 1, 5, tzinfo=UTC)
    out = []
    for _ in range(n):
        at = start + timedelta(seconds=rng.randrange(0, 200 * 86400))
        outcomes = ["no_answer", "busy", "answered", "refused"]
        history = tuple(Attempt(at - timedelta(hours=rng.randrange(1, 900)), rng.choice(["c1", "c2"]),
                                rng.choice(outcomes)) for _ in range(rng.randrange(4)))
        consent = (Consent(given_at=at - timedelta(days=10), written=True),) if rng.random() < 0.3 else ()
        facts = Facts(consent=consent, history=history, lists=Lists(national={"*": rng.random() < 0.2}),
                      registry_copies={"national": at - timedelta(days=rng.randrange(0, 35))})
        out.append((rng.choice(contacts), Campaign("c1", "t1"), facts, at))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--distinct", type=int, default=2000)
    args = parser.parse_args()
    packs = default_packs()
    work = scenarios(args.n, args.distinct)
    cold = time.perf_counter()
    for item in work[: args.distinct]:
        evaluate(*item, packs)
    cold = time.perf_counter() - cold
    latencies = []
    allowed = 0
    t0 = time.perf_counter()
    for contact, campaign, facts, at in work:
        s = time.perf_counter()
        allowed += evaluate(contact, campaign, facts, at, packs).allowed
        latencies.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6

    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"warm-up ({args.distinct} first evaluations, cold caches): {cold:.2f} s")
    print(f"{args.n} evaluations in {total:.2f} s: {args.n / total:,.0f} decisions/s "
          f"({allowed} allowed); latency p50 {pct(50):.0f} us, p99 {pct(99):.0f} us, max {latencies[-1] * 1e6:.0f} us")


if __name__ == "__main__":
    main()
