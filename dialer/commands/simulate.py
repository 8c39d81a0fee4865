"""`dialer simulate`: run a campaign on a simulated clock through the real pacing code.

    dialer simulate --mode predictive --agents 50 --answer-rate 0.15 --talk-mean 90 --duration 8h --seed 1
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from dialer.config import Config
from dialer.pacing import DEFAULT_ABANDON_CAP, PacingMode, PacingPolicy, PolicyError
from dialer.simulate import SimConfig, simulate

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'8h', '90m', '3600s', '1d', '1h30m' or plain seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r} (examples: 8h, 90m, 3600s, 1h30m)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return seconds


def register(sub: Any) -> None:
    parser = sub.add_parser("simulate", help="simulate a campaign through the pacing engine")
    parser.add_argument("--mode", choices=[m.value for m in PacingMode], default="predictive",
        help="pacing mode to simulate (default predictive)")
    parser.add_argument("--agents", type=int, default=50, help="agents (or AI sessions in agentless mode)")
    parser.add_argument("--answer-rate", type=float, default=0.15, help="live (human) answers per attempt")
    parser.add_argument("--talk-mean", type=float, default=90.0, help="mean talk time, seconds (lognormal)")
    parser.add_argument("--talk-sigma", type=float, default=0.8, help="lognormal shape of talk time")
    parser.add_argument("--wrapup-mean", type=float, default=5.0, help="mean wrap-up time, seconds")
    parser.add_argument("--duration", type=_duration, default=8 * 3600.0, help="simulated time (8h, 90m, ...)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same day (default 1)")
    parser.add_argument("--cap", type=float, default=DEFAULT_ABANDON_CAP, help="abandon cap (share of live answers)")
    parser.add_argument("--ratio", type=float, default=2.0, help="lines per free agent in power mode")
    parser.add_argument("--jurisdiction", default="US", help="abandon window: US 30 days, GB 24 h")
    parser.add_argument("--trunk-channels", type=int, default=None, help="trunk channel limit")
    parser.add_argument("--cps", type=float, default=None, help="calls per second ceiling")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError

    if args.agents < 0:
        raise CommandError("--agents must be >= 0")
    try:
        policy = PacingPolicy(mode=PacingMode(args.mode), abandon_cap=args.cap, power_ratio=args.ratio)
        sim = SimConfig(
            mode=policy.mode,
            agents=args.agents,
            answer_rate=args.answer_rate,
            talk_mean=args.talk_mean,
            talk_sigma=args.talk_sigma,
            wrapup_mean=args.wrapup_mean,
            duration=args.duration,
            seed=args.seed,
            cap=args.cap,
            ratio=args.ratio,
            jurisdiction=args.jurisdiction,
            trunk_channels=args.trunk_channels,
            calls_per_second=args.cps,
            policy=policy,
        )
        result = simulate(sim)
    except (PolicyError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    figures = result.summary()
    if args.json:
        print(json.dumps({"mode": args.mode, **figures, "reasons": dict(result.reasons)}, sort_keys=True))
        return 0
    hours = args.duration / 3600
    print(f"{args.mode} pacing, {args.agents} agents, live answer rate {args.answer_rate:.0%}, "
          f"talk mean {args.talk_mean:g} s, {hours:g} h simulated, seed {args.seed}")
    print(f"  calls placed              {result.calls_placed}")
    print(f"  live answers              {result.live_answers}")
    print(f"  connected to an agent     {result.connected}")
    print(f"  abandoned                 {result.abandons}")
    print(f"  abandon rate              {result.abandon_rate:.2%}  (cap {args.cap:.0%} of live answers)")
    print(f"  occupancy                 {result.occupancy:.1%}")
    print(f"  answered per agent-hour   {result.answered_per_agent_hour:.1f}")
    print(f"  customer wait mean        {result.wait_mean:.2f} s")
    print(f"  customer wait p95         {result.wait_p95:.2f} s")
    reasons = ", ".join(f"{k} {v}" for k, v in result.reasons.most_common())
    print(f"  pacing decisions          {result.decisions} ({reasons})")
    if result.limited:
        print(f"  cut by ceilings           {dict(result.limited)}")
    return 0
