"""Record reader cost: time `iter_records` over a generated CP1252 `;` list (CPU seconds, in process).

    python bench/contacts_parse_bench.py [--rows 200000] [--runs 3]

Run it at two commits to compare the reader before and after a change (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialer.contacts.chunks import iter_records
from dialer.contacts.sniff import sniff


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.csv"
        with path.open("w", encoding="cp1252") as fh:
            fh.write("Nom;Prénom;Téléphone\n")
            for i in range(args.rows):
                fh.write(f"N{i};Zoé;06 {rng.randrange(10**8):08d}\n")
        fmt = sniff(path)
        for _ in range(args.runs):
            start = time.process_time()
            count = sum(1 for _ in iter_records(str(path), fmt, fmt.bom, -1, 1, 1))
            print(f"{count} records in {time.process_time() - start:.3f} CPU s")


if __name__ == "__main__":
    main()
