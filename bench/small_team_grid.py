"""Small teams (issue 15, section 4) over many seeds, in two passes that can run apart.

    python bench/small_team_grid.py hindsight --cache FILE [--seeds 20] [--duration 4h] [--agents 5,10,25] [--jobs 2]
    python bench/small_team_grid.py lawful --cache FILE2 [--history ANSWERS:ABANDONS] [the same options]
    python bench/small_team_grid.py predictive --cache FILE [--lawful-cache FILE2] [--seeds 20] [--duration 4h]
        [--agents 5,10,25] [--jobs 2] [--history ANSWERS:ABANDONS] [--legal-others N]

`hindsight`: per cell (agents x live answer rate x mean talk) and seed, the best fixed power ratio found in
hindsight on the same callees (no back-off, no legal hold: a fixed ratio, the highest occupancy whose day ends at
or under 3%), appended to FILE as one JSON line per seed. It does not depend on the predictive controller, so it
is computed once and kept while the controller changes.

`lawful`: the second comparator, the best fixed power ratio found in hindsight UNDER THE LAW the product obeys: the
same legal hold at every instant (only calls with an agent reserved while the legal window has no room for one more
abandon, `cap-room`, or is over the cap, `cap-reached`; dialer/pacing/guard.py), no back-off otherwise, and feasible
only if the legal window (history + the day) is at or under 3% at every instant of the day (its peak, read at each
abandon), bisected the same way (to 6%). The first comparator may run a window above 3% early in the day if the day
ends under: for a brand-new campaign it is a ratio the product may never run. Cached per --history (the hold depends
on what the window held before the day) in its own FILE2.

`predictive`: runs the predictive campaign (what the runtime decides, legal hold included) on every seed whose
hindsight figure is in FILE and prints the table: seeds at >= 90% of the hindsight-best occupancy (goal: 19 of
20), the ratio's median and worst, predictive's occupancy, its abandon rate (median, worst: must stay <= 3%).
`--history` puts a window's worth of earlier calls before the day (a campaign that ran before); with
`--legal-others N` the campaign is a new list of a legal campaign (dialer/pacing/legal.py) whose window is the
history, sharing the room under the cap with N other members.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dialer.pacing import PacingMode, PacingPolicy
from dialer.scenario import parse_duration
from dialer.simulate import SimConfig, simulate

CAP = 0.03
ANSWERS = (0.05, 0.15, 0.35)
TALKS = (30.0, 300.0)

Key = tuple[int, float, float, int]  # agents, answer rate, talk mean, seed


HISTORY = (0, 0)  # predictive: (live answers, abandons) in the legal window before the day (--history)
LEGAL_OTHERS = 0  # predictive: other members of its legal campaign that may still dial (--legal-others)


def _base(agents: int, answer: float, talk: float, duration: float, seed: int) -> SimConfig:
    return SimConfig(agents=agents, answer_rate=answer, talk_mean=talk, duration=duration, seed=seed, cap=CAP)


def hindsight_seed(job: tuple[int, float, float, float, int]) -> dict[str, float]:
    """The best fixed power ratio for one seed (bisection on feasibility, to 6%) and its figures."""
    agents, answer, talk, duration, seed = job
    base = _base(agents, answer, talk, duration, seed)
    seen: dict[float, tuple[float, float]] = {}

    def probe(ratio: float) -> tuple[float, float]:
        ratio = round(ratio, 3)
        if ratio not in seen:
            policy = PacingPolicy(mode=PacingMode.POWER, power_ratio=ratio, abandon_cap=CAP, enforce_cap=False)
            r = simulate(replace(base, mode=PacingMode.POWER, policy=policy, legal_hold=False))
            seen[ratio] = (r.occupancy, r.abandon_rate)
        return seen[ratio]

    lo, hi = 1.0, min(50.0, 2.5 / answer)
    probe(lo)
    if probe(hi)[1] <= CAP:
        lo = hi
    else:
        while hi - lo > 0.06 * lo:
            mid = (lo + hi) / 2
            if probe(mid)[1] <= CAP:
                lo = mid
            else:
                hi = mid
    feasible = {r: v for r, v in seen.items() if v[1] <= CAP}
    ratio = max(feasible, key=lambda r: feasible[r][0])
    return {"agents": agents, "answer": answer, "talk": talk, "duration": duration, "seed": seed,
            "ratio": ratio, "occupancy": feasible[ratio][0], "abandon": feasible[ratio][1]}


def lawful_seed(job: tuple[int, float, float, float, int]) -> dict[str, float]:
    """The best fixed power ratio for one seed under the legal hold (the window at or under 3% at every instant)."""
    agents, answer, talk, duration, seed = job
    base = replace(_base(agents, answer, talk, duration, seed), history=HISTORY)
    seen: dict[float, tuple[float, float, float]] = {}

    def probe(ratio: float) -> tuple[float, float, float]:
        ratio = round(ratio, 3)
        if ratio not in seen:
            policy = PacingPolicy(mode=PacingMode.POWER, power_ratio=ratio, abandon_cap=CAP, enforce_cap=False)
            r = simulate(replace(base, mode=PacingMode.POWER, policy=policy, legal_hold=True))
            seen[ratio] = (r.occupancy, r.abandon_rate, r.legal_peak)
        return seen[ratio]

    lo, hi = 1.0, min(50.0, 2.5 / answer)
    probe(lo)
    if probe(hi)[2] <= CAP:
        lo = hi
    else:
        while hi - lo > 0.06 * lo:
            mid = (lo + hi) / 2
            if probe(mid)[2] <= CAP:
                lo = mid
            else:
                hi = mid
    # (1.0, progressive under the hold, abandons only if an agent logs off with a caller waiting: feasible in practice;
    # if even it is not, it is still what the law leaves, and is reported with its peak.)
    feasible = {r: v for r, v in seen.items() if v[2] <= CAP} or {1.0: seen[1.0]}
    ratio = max(feasible, key=lambda r: feasible[r][0])
    return {"agents": agents, "answer": answer, "talk": talk, "duration": duration, "seed": seed,
            "history": list(HISTORY), "ratio": ratio, "occupancy": feasible[ratio][0], "abandon": feasible[ratio][1],
            "peak": feasible[ratio][2]}


def predictive_seed(job: tuple[int, float, float, float, int]) -> dict[str, float]:
    agents, answer, talk, duration, seed = job
    r = simulate(replace(_base(agents, answer, talk, duration, seed), mode=PacingMode.PREDICTIVE, history=HISTORY,
                         legal_others=LEGAL_OTHERS))
    window = (HISTORY[1] + r.abandons) / (HISTORY[0] + r.live_answers) if HISTORY[0] + r.live_answers else 0.0
    return {"occupancy": r.occupancy, "abandon": r.abandon_rate, "window": window, "peak": r.legal_peak,
            "held": sum(r.reasons[k] for k in ("cap-reached", "cap-room")) / max(1, r.decisions)}


def _cells(args: argparse.Namespace) -> list[tuple[int, float, float]]:
    if args.cells:  # "5:0.05:30,5:0.05:300": these cells, in this order
        return [(int(a), float(p), float(t)) for a, p, t in (c.split(":") for c in args.cells.split(","))]
    return list(itertools.product([int(a) for a in args.agents.split(",")], ANSWERS, TALKS))


def _jobs(args: argparse.Namespace) -> list[tuple[int, float, float, float, int]]:
    # Cell by cell, in the order given: a run cut short leaves whole cells.
    return [(a, p, t, args.duration, s) for a, p, t in _cells(args) for s in range(1, args.seeds + 1)]


def _key(d: dict[str, float]) -> Key:
    return int(d["agents"]), float(d["answer"]), float(d["talk"]), int(d["seed"])


def _read(path: Path, duration: float, history: tuple[int, int] | None = None) -> dict[Key, dict[str, float]]:
    """The cached figures of `duration` (and, for the lawful comparator, of `history`)."""
    out: dict[Key, dict[str, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            d = json.loads(line)
            if d["duration"] == duration and (history is None or tuple(d["history"]) == tuple(history)):
                out[_key(d)] = d
    return out


def _map(fn: Callable, items: list, jobs: int) -> Iterable:  # type: ignore[type-arg]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            yield from pool.map(fn, items)
    else:
        yield from map(fn, items)


def run_hindsight(args: argparse.Namespace) -> list[str]:
    done = _read(args.cache, args.duration)
    todo = [j for j in _jobs(args) if (j[0], j[1], j[2], j[4]) not in done]
    with args.cache.open("a") as out:
        for d in _map(hindsight_seed, todo, args.jobs):
            out.write(json.dumps(d) + "\n")
            out.flush()
    return [f"hindsight: {len(todo)} seeds computed, {len(done)} were cached"]


def run_lawful(args: argparse.Namespace) -> list[str]:
    done = _read(args.cache, args.duration, HISTORY)
    todo = [j for j in _jobs(args) if (j[0], j[1], j[2], j[4]) not in done]
    with args.cache.open("a") as out:
        for d in _map(lawful_seed, todo, args.jobs):
            out.write(json.dumps(d) + "\n")
            out.flush()
    return [f"lawful: {len(todo)} seeds computed, {len(done)} were cached (history {HISTORY[0]}:{HISTORY[1]})"]


def _share(occupancy: float, best: dict[str, float]) -> float:
    return occupancy / best["occupancy"] if best["occupancy"] else 1.0


def run_predictive(args: argparse.Namespace) -> list[str]:
    best = _read(args.cache, args.duration)
    lawful = _read(args.lawful_cache, args.duration, HISTORY) if args.lawful_cache else {}
    jobs = [j for j in _jobs(args) if (j[0], j[1], j[2], j[4]) in best]
    results = dict(zip([(j[0], j[1], j[2], j[4]) for j in jobs], _map(predictive_seed, jobs, args.jobs),
                       strict=True))
    lines = ["| agents | answer | talk | seeds >= 90% of best | predictive / best (median, worst) "
             "| seeds >= 90% of lawful best | predictive / lawful best (median, worst) "
             "| lawful / best occupancy (median) "
             "| predictive occupancy (median) | day's abandon (median, worst) | legal window's, end (worst) "
             "| legal window's peak (worst) | decisions held (median) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    met = met_lawful = cells = cells_lawful = 0
    for a, p, t in _cells(args):
        keys = [k for k in results if k[:3] == (a, p, t)]
        if not keys:
            continue
        cells += 1
        shares = [_share(results[k]["occupancy"], best[k]) for k in keys]
        abandons = [results[k]["abandon"] for k in keys]
        windows = [results[k]["window"] for k in keys]
        peaks = [results[k]["peak"] for k in keys]
        good = sum(1 for s in shares if s >= 0.9)
        # The legal window at or under the cap at every instant (its peak; for a legal campaign's member, its peak is
        # its own calls plus the history, the end figure is the offer's window)
        legal_ok = max(windows) <= CAP and (LEGAL_OTHERS > 0 or max(peaks) <= CAP)
        ok = good >= len(keys) - len(keys) // 20 and legal_ok
        met += ok
        worst = min(range(len(keys)), key=lambda i: shares[i])
        lawful_cols = "| - | - | -"
        lkeys = [k for k in keys if k in lawful]
        if lkeys:
            cells_lawful += 1
            lshares = [_share(results[k]["occupancy"], lawful[k]) for k in lkeys]
            lgood = sum(1 for s in lshares if s >= 0.9)
            lok = lgood >= len(lkeys) - len(lkeys) // 20 and legal_ok
            met_lawful += lok
            lworst = min(range(len(lkeys)), key=lambda i: lshares[i])
            ratio = statistics.median(_share(lawful[k]["occupancy"], best[k]) for k in lkeys)
            lawful_cols = (f"| {lgood}/{len(lkeys)}{'' if lok else ' **miss**'} "
                           f"| {statistics.median(lshares):.1%}, {lshares[lworst]:.1%} (seed {lkeys[lworst][3]}) "
                           f"| {ratio:.1%}")
        lines.append(f"| {a} | {p:.0%} | {t:.0f} s | {good}/{len(keys)}{'' if ok else ' **miss**'} "
                     f"| {statistics.median(shares):.1%}, {shares[worst]:.1%} (seed {keys[worst][3]}) "
                     f"{lawful_cols} "
                     f"| {statistics.median(results[k]['occupancy'] for k in keys):.1%} "
                     f"| {statistics.median(abandons):.2%}, {max(abandons):.2%} | {max(windows):.2%} "
                     f"| {max(peaks):.2%} | {statistics.median(results[k]['held'] for k in keys):.1%} |")
    lines += ["", f"cells meeting the goal against the hindsight best: {met} of {cells}"]
    if cells_lawful:
        lines.append(f"cells meeting the goal against the lawful hindsight best: {met_lawful} of {cells_lawful}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["hindsight", "lawful", "predictive"])
    parser.add_argument("--cache", type=Path, required=True, help="the hindsight figures (JSON lines; for `lawful`: "
                        "the lawful comparator's)")
    parser.add_argument("--lawful-cache", type=Path, default=None, help="predictive: the lawful comparator's figures "
                        "(`lawful --cache`), reported beside the first")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--duration", type=parse_duration, default=4 * 3600.0)
    parser.add_argument("--agents", default="5,10,25")
    parser.add_argument("--cells", default="", help="agents:answer:talk,... instead of --agents x 3 x 2")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--history", default="0:0", help="predictive: ANSWERS:ABANDONS already in the legal window "
                        "(a campaign that ran before the day; 0:0, the default, is a new campaign)")
    parser.add_argument("--legal-others", type=int, default=0, help="predictive: the campaign is a member of a legal "
                        "campaign (docs/pacing.md) with this many other members that may still dial: the room under "
                        "the cap is split with them; --history is then the legal campaign's window")
    args = parser.parse_args()
    global HISTORY, LEGAL_OTHERS
    HISTORY = tuple(int(x) for x in args.history.split(":"))  # type: ignore[assignment]
    LEGAL_OTHERS = args.legal_others
    started = time.perf_counter()
    lines = {"hindsight": run_hindsight, "lawful": run_lawful, "predictive": run_predictive}[args.what](args)
    print(f"<!-- {' '.join(sys.argv)}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}; "
          f"{time.perf_counter() - started:.0f} s wall, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} -->")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
