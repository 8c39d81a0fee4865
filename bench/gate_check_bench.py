"""`dialer gate check` throughput: lines per second and peak memory on a large JSON-lines file, as a user runs it.

Usage: PYTHONPATH=. python bench/gate_check_bench.py [--lines 1000000] [--distinct 100000] [--instants 48]
       [--file /tmp/gate-check-bench.jsonl] [--keep]
Target (issue 13): >= 20,000 lines/s on one core for 1,000,000 lines, memory flat (peak RSS about the same for
100,000 and 1,000,000 lines).

The file is what a compliance officer checks: contacts of a list (FR with and without a postal code, US with
state packs and addresses, CA, GB, DE), `--distinct` distinct numbers, histories, consents, registry flags, a
few campaign kinds and caller IDs, `--instants` distinct instants (the "what if we called at ..." questions),
plus 0.5% malformed lines and 0.5% invalid numbers. The command runs as a subprocess (`python -m dialer gate
check FILE > /dev/null`), pinned to one CPU with taskset when available; wall time and the child's peak RSS are
reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import phonenumbers

ROOT = Path(__file__).resolve().parents[1]
# (prefix, contact fields besides the phone, total length of the E.164 string)
PLACES = [
    ("+331456", {"country": "FR", "postal_code": "75011"}, 12),
    ("+336123", {}, 12),
    ("+333881", {"country": "FR", "postal_code": "67000"}, 12),
    ("+1212555", {"country": "US", "postal_code": "10001"}, 12),
    ("+1305555", {"country": "US", "state": "FL"}, 12),
    ("+1205555", {}, 12),
    ("+1416555", {"country": "CA", "postal_code": "M5V 2T6"}, 12),
    ("+4420794", {}, 13),
    ("+4930123", {"country": "DE"}, 12),
]
CAMPAIGNS = [
    {"id": "c1", "tenant": "t1", "caller_id": "+33162000000"},
    {"id": "c2", "tenant": "t1", "purpose": "informational", "caller_id": "+12025550123"},
    {"id": "c3", "tenant": "t1", "audience": "business", "caller_id": "+33162000001"},
    {"id": "c4", "tenant": "t1", "voice": "artificial", "caller_id": "+33612345678"},
]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def generate(path: Path, lines: int, distinct: int, instants: int, seed: int = 13) -> None:
    rng = random.Random(seed)
    numbers = []
    for i in range(distinct):
        prefix, fields, length = PLACES[i % len(PLACES)]
        width = length - len(prefix)
        for _ in range(1000):
            phone = prefix + f"{rng.randrange(10 ** width):0{width}d}"
            if phonenumbers.is_valid_number(phonenumbers.parse(phone)):
                break
        numbers.append({"phone": phone, **fields})
    start = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    moments = [start + timedelta(minutes=37 * k * 11) for k in range(instants)]
    with path.open("w", encoding="utf-8") as fh:
        for n in range(lines):
            roll = rng.random()
            if roll < 0.005:
                fh.write(f'{{"id": {n}, "at": "2026-01-05T10:00:00Z", "contact": {{"phone": \n')
                continue
            at = rng.choice(moments)
            contact = rng.choice(numbers) if roll > 0.01 else {"phone": "+33 12"}
            scenario = {"id": n, "at": _iso(at), "contact": contact, "campaign": rng.choice(CAMPAIGNS)}
            if rng.random() < 0.6:
                scenario["history"] = [{"at": _iso(at - timedelta(hours=rng.randrange(1, 900))),
                                        "outcome": rng.choice(["no_answer", "busy", "answered", "refused"])}
                                       for _ in range(rng.randrange(1, 4))]
            if rng.random() < 0.3:
                scenario["consent"] = [{"given_at": _iso(at - timedelta(days=rng.randrange(1, 400))),
                                        "written": rng.random() < 0.5, "source": "web form", "evidence": "ref-1"}]
            if rng.random() < 0.1:
                scenario["relationships"] = [{"kind": "purchase", "at": _iso(at - timedelta(days=90))}]
            scenario["lists"] = {"national": rng.random() < 0.15, "company": rng.random() < 0.02}
            scenario["registry_copies"] = {"national": _iso(at - timedelta(days=rng.randrange(0, 40)))}
            fh.write(json.dumps(scenario, separators=(",", ":")) + "\n")


def measure(path: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB) of `dialer gate check path`, output discarded. CPU time is the
    child's user + system time (what one core spent, whatever else the shared machine ran); the peak is its VmHWM,
    read from /proc while it runs (the last reading is within 0.2 s of its end)."""
    command = [sys.executable, "-m", "dialer", "gate", "check", str(path)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]  # one core (taskset execs: same pid)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    env["PYTHONPATH"] = str(ROOT)
    peak_kb = 0
    t0 = time.perf_counter()
    with open(os.devnull, "w") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            try:
                text = Path(f"/proc/{child.pid}/status").read_text()
                peak_kb = max(peak_kb, int(text.split("VmHWM:")[1].split()[0]))
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.2)
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    # 1 with nothing on standard error: some lines were malformed, as generated; anything else is a failure
    if child.returncode not in (0, 1) or stderr.strip():
        raise SystemExit(f"gate check failed with status {child.returncode}: {stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, peak_kb // 1024


def _line(lines: int, wall: float, cpu: float, peak: int) -> str:
    return (f"{lines:,} lines: wall {wall:.1f} s = {lines / wall:,.0f} lines/s; CPU {cpu:.1f} s = "
            f"{lines / cpu:,.0f} lines per CPU-second; peak RSS {peak} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=100_000)
    parser.add_argument("--instants", type=int, default=48)
    parser.add_argument("--file", default="/tmp/gate-check-bench.jsonl")
    parser.add_argument("--keep", action="store_true", help="keep the generated file, and reuse it if it exists")
    parser.add_argument("--small", type=int, default=100_000, help="a smaller run first, to compare memory")
    args = parser.parse_args()
    path = Path(args.file)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other sessions), python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    if args.keep and path.exists():
        print(f"reusing {path}")
    else:
        generate(path, args.lines, args.distinct, args.instants)
        size = path.stat().st_size / 1e6
        print(f"generated {args.lines:,} lines ({size:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    try:
        if args.small and args.small < args.lines:
            small = path.with_suffix(".small.jsonl")
            with path.open(encoding="utf-8") as src, small.open("w", encoding="utf-8") as dst:
                for _, line in zip(range(args.small), src, strict=False):
                    dst.write(line)
            print(_line(args.small, *measure(small)))
            small.unlink()
        print(_line(args.lines, *measure(path)) + f" (load average now {os.getloadavg()[0]:.1f})")
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
