"""Rewrite tests/slow_tests.txt from the `--durations=0` output of a run of the default suite.

    python3 -m pytest -n 4 -m "not realpbx" --durations=0 > run.log; python3 tests/slow_tests.py run.log

Keeps the tests that took 8 s or more (setup, call and teardown added up), slowest first."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

HEADER = """\
# Tests that take 8 s or more, slowest first, with the seconds they took (setup + call + teardown) in a
# run of the default suite on 4 workers. tests/conftest.py runs them first, so the suite does not end waiting
# for a long test that started last. Refresh with `python3 tests/slow_tests.py LOG` on the output of a run
# with --durations=0.
"""
LINE = re.compile(r"([\d.]+)s\s+(?:setup|call|teardown)\s+(\S.*)$")


def slow_tests(log: str, floor: float = 8.0) -> list[tuple[float, str]]:
    seconds: Counter[str] = Counter()
    for line in log.splitlines():
        found = LINE.match(line.strip())
        if found:
            seconds[found.group(2)] += float(found.group(1))
    return sorted(((s, node) for node, s in seconds.items() if s >= floor), reverse=True)


def main(argv: list[str]) -> int:
    rows = slow_tests(Path(argv[1]).read_text())
    target = Path(__file__).with_name("slow_tests.txt")
    target.write_text(HEADER + "".join(f"{s:.1f} {node}\n" for s, node in rows))
    print(f"{len(rows)} tests written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
