"""The `dialer` command line.

Each subcommand lives in its own module under dialer/commands/ and exposes
`register(subparsers)`, which adds its parser and sets `func(args, config) -> int`.
Add its top-level names to COMMAND_MODULES to add a subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import redis

from dialer import __version__, jobs, suppression
from dialer.config import ConfigError, load_config
from dialer.logs import setup_logging
from dialer.record import current as record_current

# The module behind each top-level command (in the order `dialer --help` lists them), so that `dialer campaigns
# list` imports one command module, not all 24 (half a CPU-second less per run); `dialer --help` and unknown names
# still import them all. tests/test_cli.py checks this table against what the modules register.
COMMAND_MODULES: dict[str, str] = {
    "config": "dialer.commands.config_cmd", "user": "dialer.commands.users", "audit": "dialer.commands.audit",
    "registry": "dialer.commands.registry", "gate": "dialer.commands.gate",
    "sandbox-pbx": "dialer.commands.sandbox_pbx", "simulate": "dialer.commands.simulate",
    "run": "dialer.commands.run", "runtime": "dialer.commands.runtime_cmd", "trunk": "dialer.commands.trunk",
    "demo": "dialer.commands.demo", "tenant": "dialer.commands.tenants", "tenants": "dialer.commands.tenants",
    "token": "dialer.commands.tenants", "serve": "dialer.commands.serve", "lists": "dialer.commands.lists",
    "worker": "dialer.commands.worker", "subject": "dialer.commands.privacy",
    "retention": "dialer.commands.retention", "calls": "dialer.commands.calls",
    "campaigns": "dialer.commands.campaigns", "dnc": "dialer.commands.campaigns",
    "webhooks": "dialer.commands.webhooks", "usage": "dialer.commands.usage",
    "subject-requests": "dialer.commands.subject_requests", "archiver": "dialer.commands.record",
    "record": "dialer.commands.record", "report": "dialer.commands.record", "redis": "dialer.commands.redis_cmd",
}
COMMANDS: tuple[str, ...] = tuple(dict.fromkeys(COMMAND_MODULES.values()))


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1 (or .status)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def redis_unreachable(url: str, exc: BaseException) -> CommandError:
    """The one message every command gives when Redis cannot be used: which server, and why."""
    return CommandError(f"cannot reach Redis at {shown_url(url)}: {exc}")


def typed_confirmation(prompt: str, word: str, refused: str, *, yes: bool) -> None:
    """Go on only once a person types `word` at `prompt` (or gave --yes); CommandError(refused) when they do not,
    and a CommandError naming --yes when nobody can answer (no terminal)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError("confirmation needed: run in a terminal, or add --yes")
    if input(prompt).strip() != word:
        raise CommandError(refused)


def checked_redis(url: str) -> redis.Redis:
    """A client of the Redis at `url` that answered a PING; CommandError (one line naming the server) if not."""
    from dialer import redisconn

    client = redisconn.connect(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise redis_unreachable(url, exc) from None
    return client


def shown_url(url: str) -> str:
    """`url` without its password, fit for a message or a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


CONFIG_HELP = "TOML settings file (default: $DIALER_CONFIG)"


def command_named(argv: Sequence[str]) -> str | None:
    """The top-level command `argv` runs (the first word that is not an option or --config's value)."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of the module behind `command` when that name is known."""
    parser = argparse.ArgumentParser(prog="dialer", description="Compliance-first outbound dialer for Asterisk")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    named = COMMAND_MODULES.get(command or "")
    for name in (named,) if named else COMMANDS:
        importlib.import_module(name).register(sub)
    for child in subcommand_parsers(parser):
        # `dialer config check --config x` as well as `dialer --config x config check`; SUPPRESS keeps a
        # subcommand from overwriting the value given before it.
        if "--config" not in child._option_string_actions:
            child.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    return parser


def subcommand_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below `parser`, at any depth."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                found += [child, *subcommand_parsers(child)]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # imports command modules: Ctrl-C may well land here
        parser = build_parser(command_named(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        return 130
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    config = None
    try:
        config = load_config(args.config)
        setup_logging(config["log.level"])
        suppression.configure(config["security.secret_key"])  # jobs this process runs check erased numbers
        jobs.configure(config.redis_url, config.jobs_url)  # where RQ's queues live (docs/redis.md)
        record_current.configure(config)  # where contacts live (docs/record.md), opened on first use
        return int(args.func(args, config) or 0)
    except ConfigError as exc:
        print(f"dialer: configuration error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"dialer: {exc}", file=sys.stderr)
        return exc.status
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # A command that does not expect Redis to be down: still one line naming the server, no traceback.
        url = config.redis_url if config else "redis.url"
        print(f"dialer: {redis_unreachable(url, exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `dialer lists export ... | head`: the reader left; stop quietly like other Unix tools, no traceback
        # (and none at exit either, when Python flushes the closed stdout).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
