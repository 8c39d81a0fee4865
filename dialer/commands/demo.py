"""`dialer demo`: start Redis, workers, the sandbox PBX, the gateway and the engine on this machine, load a sample
list, run a campaign, print the dashboard URL and a sign-in token; Ctrl-C stops everything (dialer/demo.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from dialer.config import Config


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run everything on this machine with a sample campaign (Ctrl-C stops it)")
    parser.add_argument("--host", default="127.0.0.1", help="dashboard/API bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="dashboard/API port (default 8080; 0: a free port; "
                                                                 "a busy port is replaced by a free one)")
    parser.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    parser.add_argument("--contacts", type=int, default=300, help="contacts in the sample list (default 300)")
    parser.add_argument("--agents", type=int, default=6, help="simulated agents in the sandbox queue (default 6)")
    parser.add_argument("--time-scale", type=float, default=0.25,
                        help="sandbox PBX wall seconds per simulated second (default 0.25: calls 4x faster)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the sample list and the callees")
    parser.add_argument("--clock", default="auto",
                        help="auto (real time if a sample region may be called now, else a simulated clock at the "
                             "next open instant), real, or an ISO 8601 instant to simulate")
    parser.add_argument("--workers", type=int, default=1, help="RQ worker processes (default 1)")
    parser.add_argument("--no-browser", action="store_true", help="do not open the dashboard in a browser")
    parser.add_argument("--verbose", action="store_true", help="log at INFO (default: warnings only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError
    from dialer.demo import DemoOptions, run_demo

    if args.contacts < 1 or args.agents < 1 or args.workers < 1:
        raise CommandError("--contacts, --agents and --workers must be at least 1")
    if not 0 < args.time_scale <= 10:
        raise CommandError("--time-scale: expected a number in (0, 10]")
    if args.duration is not None and args.duration <= 0:
        raise CommandError("--duration: expected a positive number of seconds")
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)  # the banner is the output; the parts log warnings only
    options = DemoOptions(host=args.host, port=args.port, duration=args.duration, contacts=args.contacts,
                          agents=args.agents, time_scale=args.time_scale, seed=args.seed, clock=args.clock,
                          workers=args.workers, open_browser=not args.no_browser)
    try:
        return asyncio.run(run_demo(options))
    except KeyboardInterrupt:
        return 130
