"""Generated registry files for the registry tests (deterministic: seeded)."""

from __future__ import annotations

import random
from pathlib import Path


def nanp_numbers(count: int, seed: int = 1) -> list[str]:
    """Distinct valid 10-digit NANP numbers (area code and exchange start with 2-9)."""
    # one draw per number among the 800 x 800 x 10,000 valid ones (1.5 M numbers in about 2 s, not 10)
    drawn = random.Random(seed).sample(range(800 * 800 * 10_000), count)
    return sorted(f"{200 + n // 8_000_000}{200 + n // 10_000 % 800}{n % 10_000:04d}" for n in drawn)


def french_numbers(count: int, seed: int = 2) -> list[str]:
    """Distinct metropolitan French national numbers 0[1347]XXXXXXXX (no overseas prefixes)."""
    rng = random.Random(seed)
    found: set[str] = set()
    while len(found) < count:
        found.add(f"0{rng.choice('1347')}{rng.randint(0, 99_999_999):08d}")
    return sorted(found)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def e164_nanp(national: str) -> str:
    return "+1" + national


def e164_fr(national: str) -> str:
    return "+33" + national[1:]
