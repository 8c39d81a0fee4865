"""`dialer simulate`: run a day of campaigns on a simulated clock through the real pacing code.

    dialer simulate --mode predictive --agents 50 --answer-rate 0.15 --talk-mean 90 --duration 8h --seed 1
    dialer simulate --scenario day.toml [--seed 3] [--mode power --ratio 2.5] [--agents 20] [--guard 15m]
    dialer simulate --from-history --tenant T --campaign C [--days 7] [--mode power --ratio 2.5] [--agents 20]

The flags describe one constant phase and one campaign; with --scenario or --from-history the same flags
change the day they load (what if I had used power 2.5, or 20 agents?).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from dialer import redisconn
from dialer.config import Config
from dialer.pacing import DEFAULT_ABANDON_CAP, PacingMode, PacingPolicy, PolicyError
from dialer.scenario import Scenario, ScenarioError, load_scenario, parse_duration
from dialer.simreport import report_dict, report_lines
from dialer.simulate import SimConfig, SimResult, simulate, simulate_scenario

__all__ = ["parse_duration", "register", "run"]


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return seconds


def _guard(text: str) -> float | None:
    if text.strip().lower() == "off":
        return None
    seconds = _duration(text)
    if seconds < 60:
        raise argparse.ArgumentTypeError("the guard window must be at least 1 minute (15m, 1h, or off)")
    return seconds


def register(sub: Any) -> None:
    parser = sub.add_parser("simulate", help="simulate a day of campaigns through the pacing engine")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--scenario", metavar="FILE", help="a scenario file (TOML): phases, curves, campaigns")
    source.add_argument("--from-history", action="store_true",
                        help="build the day from a campaign's recorded attempts (needs --tenant and --campaign)")
    parser.add_argument("--tenant", help="with --from-history")
    parser.add_argument("--campaign", help="with --from-history")
    parser.add_argument("--days", type=int, default=7, help="with --from-history: days of history (default 7)")
    parser.add_argument("--mode", choices=[m.value for m in PacingMode], default=None,
                        help="pacing mode (default predictive; with a scenario: every campaign)")
    parser.add_argument("--agents", type=int, default=None, help="agents (or AI sessions in agentless mode)")
    parser.add_argument("--answer-rate", type=float, default=None, help="live (human) answers per attempt")
    parser.add_argument("--talk-mean", type=float, default=None, help="mean talk time, seconds (lognormal)")
    parser.add_argument("--talk-sigma", type=float, default=0.8, help="lognormal shape of talk time")
    parser.add_argument("--wrapup-mean", type=float, default=None,
                        help="mean wrap-up time, seconds (default: the defaults table, 45 s)")
    parser.add_argument("--duration", type=_duration, default=None, help="simulated time (8h, 90m, ...)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed: the same seed gives the same day (default 1)")
    parser.add_argument("--cap", type=float, default=None, help="abandon cap (share of live answers)")
    parser.add_argument("--ratio", type=float, default=None, help="lines per free agent in power mode")
    parser.add_argument("--guard", type=_guard, default=None,
                        help="short-window abandon guard: 15m, 1h or off (default off)")
    parser.add_argument("--jurisdiction", default=None, help="abandon window: US 30 days, GB 24 h")
    parser.add_argument("--trunk-channels", type=int, default=None, help="trunk channel limit")
    parser.add_argument("--cps", type=float, default=None, help="calls per second ceiling")
    parser.add_argument("--windows", action="store_true", help="also print every 15-minute window")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=run)


def _from_flags(args: argparse.Namespace) -> SimConfig:
    mode = PacingMode(args.mode or "predictive")
    cap = DEFAULT_ABANDON_CAP if args.cap is None else args.cap
    ratio = 2.0 if args.ratio is None else args.ratio
    policy = PacingPolicy(mode=mode, abandon_cap=cap, power_ratio=ratio)
    return SimConfig(
        mode=mode,
        agents=50 if args.agents is None else args.agents,
        answer_rate=0.15 if args.answer_rate is None else args.answer_rate,
        talk_mean=90.0 if args.talk_mean is None else args.talk_mean,
        talk_sigma=args.talk_sigma,
        wrapup_mean=args.wrapup_mean,
        duration=8 * 3600.0 if args.duration is None else args.duration,
        seed=1 if args.seed is None else args.seed,
        cap=cap,
        ratio=ratio,
        jurisdiction=args.jurisdiction or "US",
        trunk_channels=args.trunk_channels,
        calls_per_second=args.cps,
        guard=args.guard,
        policy=policy,
    )


def apply_flags(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """The flags given on the command line change the loaded day (what-if)."""
    campaigns = []
    for spec in scenario.campaigns:
        settings = spec.policy.as_dict()
        if args.mode:
            settings["mode"] = args.mode
        if args.ratio is not None:
            settings["power_ratio"] = args.ratio
        if args.cap is not None:
            settings["abandon_cap"] = args.cap
        guard = spec.guard if args.guard is None else args.guard
        campaigns.append(replace(spec, policy=PacingPolicy.from_mapping(settings), guard=guard))
    scenario = scenario.with_campaigns(campaigns)
    values: dict[str, Any] = {}
    if args.agents is not None:
        values["agents"] = args.agents
    if args.answer_rate is not None:
        values["answer_rate"] = args.answer_rate
    if args.talk_mean is not None:
        values["talk"] = {"kind": "lognormal", "mean": args.talk_mean, "sigma": args.talk_sigma}
    if args.wrapup_mean is not None:
        values["wrapup"] = {"kind": "lognormal", "mean": args.wrapup_mean, "sigma": 0.5}
    if values:
        scenario = scenario.with_values(**values)
    options: dict[str, Any] = {}
    if args.seed is not None:
        options["seed"] = args.seed
    if args.duration is not None:
        options["duration"] = args.duration
    if args.jurisdiction:
        options["jurisdiction"] = args.jurisdiction
    if args.trunk_channels is not None:
        options["trunk_channels"] = args.trunk_channels
    if args.cps is not None:
        options["calls_per_second"] = args.cps
    return replace(scenario, **options) if options else scenario


def _history(args: argparse.Namespace, config: Config) -> Scenario:
    from dialer.cli import CommandError, redis_unreachable
    from dialer.sim_history import HistoryError, scenario_from_history

    if not args.tenant or not args.campaign:
        raise CommandError("--from-history needs --tenant and --campaign")
    if args.days < 1:
        raise CommandError("--days must be >= 1")
    import redis

    client = redisconn.connect(config.redis_url)
    try:
        return scenario_from_history(client, args.tenant, args.campaign, days=args.days, agents=args.agents)
    except HistoryError as exc:
        raise CommandError(str(exc)) from None
    except redis.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    finally:
        client.close()


def run(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError

    if args.agents is not None and args.agents < 0:
        raise CommandError("--agents must be >= 0")
    try:
        if args.scenario or args.from_history:
            scenario = load_scenario(args.scenario) if args.scenario else _history(args, config)
            scenario = apply_flags(scenario, args)
            result: SimResult = simulate_scenario(scenario)
        else:
            result = simulate(_from_flags(args))
    except (PolicyError, ScenarioError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps({"mode": result.campaigns[0].mode.value, **report_dict(result)}, sort_keys=True))
        return 0
    s = result.scenario
    world = s.world_at(0.0)
    modes = ", ".join(f"{c.name}: {c.policy.mode.value}" for c in s.campaigns) if len(s.campaigns) > 1 \
        else s.campaigns[0].policy.mode.value
    print(f"{modes} pacing, {world.agents} agents at the start, live answer rate {world.answer_rate:.0%} at the "
          f"start, {s.duration / 3600:g} h simulated, {len(s.phases)} phase(s), seed {s.seed}")
    for note in s.notes:
        print(f"  note: {note}")
    for line in report_lines(result, windows=args.windows):
        print(line)
    return 0
