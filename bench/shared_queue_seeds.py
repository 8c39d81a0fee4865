"""A scenario over seeds: each campaign's legal-window peak, abandons and live answers, and the pool's occupancy.

    nice -n 19 python3 bench/shared_queue_seeds.py [SCENARIO] [FIRST LAST]

One JSON line per seed: {"seed", "occ", campaign: [peak %, abandons, live answers, calls placed], ...}, then a
summary line per campaign (the worst peak, seeds over 3%, abandons of answers). Used for BENCHMARKS.md, "Reserved
calls on a shared queue" (issue 15).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys

from dialer.scenario import load_scenario
from dialer.simulate import simulate_scenario


def main(argv: list[str]) -> None:
    path = argv[0] if argv else "bench/scenarios/shared-queue.toml"
    first, last = (int(argv[1]), int(argv[2])) if len(argv) > 2 else (1, 20)
    base = load_scenario(path)
    rows = []
    for seed in range(first, last + 1):
        r = simulate_scenario(dataclasses.replace(base, seed=seed))
        row: dict[str, object] = {"seed": seed, "occ": round(r.occupancy, 4)}
        for c in r.campaigns:
            row[c.name] = [round(100 * c.legal_peak, 2), c.abandons, c.live_answers, c.calls_placed]
        rows.append(row)
        print(json.dumps(row), flush=True)
    occ = [float(r["occ"]) for r in rows]  # type: ignore[arg-type]
    print(f"occupancy mean {100 * statistics.mean(occ):.1f}% ({100 * min(occ):.1f}-{100 * max(occ):.1f})")
    for c in base.campaigns:
        figures = [r[c.name] for r in rows]
        peaks = [f[0] for f in figures]  # type: ignore[index]
        print(f"{c.name}: worst peak {max(peaks):.2f}%, seeds over 3%: {sum(p > 3 for p in peaks)}, "
              f"abandons {sum(f[1] for f in figures)} of {sum(f[2] for f in figures)} answers")  # type: ignore[index]


if __name__ == "__main__":
    main(sys.argv[1:])
