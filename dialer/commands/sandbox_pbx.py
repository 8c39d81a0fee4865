"""`dialer sandbox-pbx`: run the sandbox PBX (an AMI server that behaves like Asterisk with our dialplan)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from dialer.config import Config

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser = sub.add_parser("sandbox-pbx", help="run the sandbox PBX (simulated Asterisk speaking AMI)")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="AMI port (default 5038; 0 picks a free port)")
    # dest differs from the top-level --config (the dialer's own settings file).
    parser.add_argument("--config", dest="pbx_config", metavar="FILE", help="sandbox TOML file ([sandbox] tables)")
    parser.add_argument("--seed", type=int, help="random seed (same seed, same call outcomes)")
    parser.add_argument("--agents", type=int, help="agents in the queue named by --queue (default queue 'dialer')")
    parser.add_argument("--queue", default=None, help="queue name for --agents (default: dialer)")
    parser.add_argument("--ai-sessions", type=int, help="concurrent AI-agent sessions")
    parser.add_argument("--time-scale", type=float, help="wall seconds per simulated second (0.05: 20x faster)")
    parser.add_argument("--callee-mode", choices=["last-digit", "profile"], help="how callees behave")
    parser.add_argument("--dialplan", action="append", help="dialplan file(s) to run (default: ours)")
    parser.add_argument("--username", help="AMI username (default dialer)")
    parser.add_argument("--secret", help="AMI secret (default dialer-secret)")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Any:
    from dialer.cli import CommandError
    from dialer.sandbox.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.pbx_config)
        queues = None
        if args.agents is not None:
            if args.agents < 0:
                raise SettingsError("--agents: must be >= 0")
            queues = {**settings.queues}
            name = args.queue or (next(iter(queues)) if len(queues) == 1 else "dialer")
            queues[name] = args.agents
        elif args.queue:
            queues = {args.queue: sum(settings.queues.values()) or 3}
        dialplans = tuple(Path(p).resolve() for p in args.dialplan) if args.dialplan else None
        for path in dialplans or settings.dialplans:
            if not Path(path).is_file():
                raise SettingsError(f"dialplan file {path}: not found")
        return settings.with_overrides(
            host=args.host,
            port=args.port,
            seed=args.seed,
            time_scale=args.time_scale,
            callee_mode=args.callee_mode,
            ai_sessions=args.ai_sessions,
            username=args.username,
            secret=args.secret,
            queues=queues,
            dialplans=dialplans,
        )
    except SettingsError as exc:
        raise CommandError(str(exc), status=2) from None


def run(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError
    from dialer.sandbox.dialplan import DialplanError
    from dialer.sandbox.server import SandboxServer

    settings = settings_from_args(args)

    async def main() -> None:
        try:
            server = SandboxServer(settings)
        except DialplanError as exc:
            raise CommandError(f"dialplan: {exc}") from None
        try:
            await server.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
        queues = ", ".join(f"{name}={count}" for name, count in settings.queues.items()) or "none"
        print(
            f"sandbox PBX: AMI on {settings.host}:{server.port} (user {settings.username}), queues {queues}, "
            f"AI sessions {settings.ai_sessions}, time scale {settings.time_scale}, seed {settings.seed}, "
            f"callees {settings.callee_mode}. Ctrl-C to stop.",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()
            print("sandbox PBX: stopped", flush=True)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0
