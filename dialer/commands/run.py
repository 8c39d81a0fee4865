"""`dialer run`: run the campaign engine until Ctrl-C (or SIGTERM), then shut down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
from datetime import datetime
from typing import Any

from dialer.config import AsteriskServer, Config

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser = sub.add_parser("run", help="run the campaign engine (dial running campaigns) until Ctrl-C")
    parser.add_argument("--sandbox", metavar="HOST:PORT",
                        help="dial through a sandbox PBX instead of the [[asterisk]] servers of the config")
    parser.add_argument("--sandbox-user", default="dialer", help="sandbox AMI user (default dialer)")
    parser.add_argument("--sandbox-secret", default="dialer-secret", help="sandbox AMI secret (default dialer-secret)")
    parser.add_argument("--tenant", action="append", default=[], help="only these tenants (default: every tenant)")
    parser.add_argument("--dial-template", help="Originate Channel template (default runtime.dial_template; with "
                                                "--sandbox: Local/{number}@sim-callee)")
    parser.add_argument("--process-id", help="this process's name in leases and logs (default host:pid:random)")
    parser.add_argument("--drain", type=float, default=None, help="seconds to let calls in flight finish at shutdown")
    parser.add_argument("--clock-start", metavar="ISO8601",
                        help="TESTING/DEMO AID: run on a clock starting at this instant (with offset), e.g. "
                             "2026-03-03T10:00:00+01:00; legal windows and retries follow it")
    parser.add_argument("--clock-speed", type=float, default=1.0,
                        help="TESTING/DEMO AID: with --clock-start, clock seconds per wall second (default 1)")
    parser.set_defaults(func=run)


def _servers(args: argparse.Namespace, config: Config) -> tuple[AsteriskServer, ...]:
    from dialer.cli import CommandError

    if not args.sandbox:
        if not config.asterisk:
            raise CommandError("no [[asterisk]] server in the config (or use --sandbox HOST:PORT)")
        return config.asterisk
    host, _, port = args.sandbox.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--sandbox: expected HOST:PORT, got {args.sandbox!r}")
    return (AsteriskServer("sandbox", host, int(port), args.sandbox_user, args.sandbox_secret, "md5"),)


def run(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError
    from dialer.runtime.engine import RuntimeSettings, offset_clock, run_engine, wall_clock

    servers = _servers(args, config)
    clock = wall_clock
    if args.clock_start:
        try:
            start = datetime.fromisoformat(args.clock_start)
            clock = offset_clock(start, args.clock_speed)
        except ValueError as exc:
            raise CommandError(f"--clock-start: {exc}") from None
        log.warning("clock starts at %s (speed %sx): testing/demo aid, not for production", start.isoformat(),
                    args.clock_speed)
    if args.clock_speed <= 0:
        raise CommandError("--clock-speed: must be positive")
    if not config["security.secret_key"]:
        raise CommandError("setting security.secret_key is required: the gate's audit trail keys phone numbers")
    settings = RuntimeSettings.from_config(config)
    changes: dict[str, Any] = {"tenants": tuple(args.tenant)}
    template = args.dial_template or ("Local/{number}@sim-callee" if args.sandbox else None)
    if template:
        from dialer.ami.originate import dial_template_error

        template_error = dial_template_error(template)
        if template_error:
            raise CommandError(f"--dial-template: {template_error}")
        changes["dial_template"] = template
    if args.drain is not None:
        changes["drain_seconds"] = args.drain
    settings = dataclasses.replace(settings, **changes)

    async def main() -> bool:
        stop, abort = asyncio.Event(), asyncio.Event()

        def on_signal(name: str) -> None:
            if not stop.is_set():
                log.info("%s: shutting down (no new calls; up to %.0f s for calls in flight; again to exit now)",
                         name, settings.drain_seconds)
                stop.set()
            elif not abort.is_set():
                log.warning("%s again: exiting without waiting; the claims of calls in flight expire and the next "
                            "dialer process resolves them", name)
                abort.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig.name)
        await run_engine(config, stop_event=stop, clock=clock, servers=servers, settings=settings,
                         process_id=args.process_id, abort_event=abort)
        return abort.is_set()

    try:
        aborted = asyncio.run(main())
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 130
    return 130 if aborted else 0
