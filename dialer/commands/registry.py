"""`dialer registry import|status|lookup`: load national opposition registries and query them."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from datetime import UTC, datetime
from typing import Any

import redis
from tqdm import tqdm

from dialer import redisconn
from dialer.config import Config
from dialer.registry.formats import FORMATS
from dialer.registry.loader import DEFAULT_LOCK_TTL, LoadRefused, LoadReport, load_registry
from dialer.registry.store import RegistryError, RegistryStore, check_name


def register(sub: Any) -> None:
    parser = sub.add_parser("registry", help="national do-not-call registries (import, status, lookup)")
    actions = parser.add_subparsers(dest="registry_action", metavar="ACTION", required=True)

    imp = actions.add_parser("import", help="load a registry file as a new version (atomic swap)")
    imp.add_argument("--registry", required=True, metavar="NAME", help="us_dnc, bloctel, tps, ctps, dncl or custom")
    imp.add_argument("--file", required=True, metavar="PATH", help="the registry file (see docs/registry.md)")
    imp.add_argument("--delta", action="store_true", help="a change file (A/D lines) applied to the live version")
    imp.add_argument("--format", choices=sorted(FORMATS), help="input format (default: the registry's own, or csv)")
    imp.add_argument("--country", metavar="CC", help="CSV only: country of national numbers without one (e.g. FR)")
    imp.add_argument("--max-bad-share", type=float, metavar="SHARE",
                     help="refuse above this share of malformed lines (default: setting registry.max_bad_share)")
    imp.add_argument("--max-shrink-share", type=float, metavar="SHARE",
                     help="full load: refuse when it removes more than this share of the live version "
                          "(default: setting registry.max_shrink_share)")
    imp.add_argument("--force", action="store_true",
                     help="full load: accept it however many numbers it removes from the live version")
    imp.add_argument("--obtained-at", metavar="DATE",
                     help="when the file was downloaded (2026-11-20 or 2026-11-20T08:00+00:00; UTC if no zone): "
                          "freshness is measured from it (default: the time of the import)")
    imp.add_argument("--lock-ttl", type=float, default=DEFAULT_LOCK_TTL, metavar="SECONDS",
                     help="how long a crashed import keeps others out (default %(default)s)")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=run_import)

    status = actions.add_parser("status", help="live version of each registry")
    status.add_argument("names", nargs="*", metavar="NAME", help="registries (default: all loaded)")
    status.set_defaults(func=run_status)

    lookup = actions.add_parser("lookup", help="is a number in a registry? (E.164, e.g. +33145678901)")
    lookup.add_argument("numbers", nargs="+", metavar="NUMBER", help="numbers to look up (E.164 or national)")
    lookup.add_argument("--registry", action="append", metavar="NAME", help="registry to check (default: all)")
    lookup.set_defaults(func=run_lookup)


def _client(config: Config) -> redis.Redis:
    return redisconn.connect(config.redis_url)


class _Bar:
    """tqdm bars for the read and write stages of an import."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or stage == "commit":
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            label = {"read": "reading", "write": "writing", "commit": "swapping"}.get(stage, stage)
            # A terminal that reports no width (some terminal multiplexers and IDE consoles) made tqdm draw an
            # no bar at all; shutil falls back to 80x24 there.
            size = shutil.get_terminal_size()
            self.bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, file=sys.stderr, leave=False,
                            ncols=size.columns, nrows=size.lines)
        assert self.bar is not None
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _print_bad_lines(report: LoadReport) -> None:
    if not report.invalid:
        return
    shown = len(report.bad_lines)
    print(f"{report.invalid} malformed line(s) of {report.lines} ({report.bad_share:.2%}); first {shown}:")
    for bad in report.bad_lines:
        print(f"  {bad.where()}: {bad.reason}")


def run_import(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError, redis_unreachable

    try:
        check_name(args.registry)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    max_bad = config["registry.max_bad_share"] if args.max_bad_share is None else args.max_bad_share
    if not 0 <= max_bad <= 1:
        raise CommandError("--max-bad-share: expected a share between 0 and 1")
    max_shrink = config["registry.max_shrink_share"] if args.max_shrink_share is None else args.max_shrink_share
    if not 0 <= max_shrink <= 1:
        raise CommandError("--max-shrink-share: expected a share between 0 and 1")
    obtained_at = _obtained_at(args.obtained_at) if args.obtained_at else None
    bar = _Bar(not args.quiet)
    # The loader logs its outcome for workers' logs; here the summary printed below says it, once.
    logging.getLogger("dialer.registry.loader").setLevel(logging.WARNING)
    try:
        report = load_registry(
            _client(config), args.registry, args.file, delta=args.delta, fmt=args.format, country=args.country,
            max_bad_share=max_bad, max_shrink_share=max_shrink, force=args.force, progress=bar,
            lock_ttl=args.lock_ttl, obtained_at=obtained_at,
        )
    except LoadRefused as exc:
        bar.close()
        _print_bad_lines(exc.report)
        raise CommandError(f"registry {args.registry}: load refused, nothing changed: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        bar.close()
        raise redis_unreachable(config.redis_url, exc) from None
    except (RegistryError, redis.RedisError) as exc:
        bar.close()
        raise CommandError(f"registry {args.registry}: {exc}") from None
    bar.close()
    _print_bad_lines(report)
    v = report.version
    assert v is not None
    print(f"registry {v.name}: version {v.version} live: {v.rows} numbers (+{v.added} -{v.removed}), "
          f"{report.lines} lines read, {v.invalid} malformed, {report.duplicates} duplicates, "
          f"{report.seconds:.1f} s; sha256 {v.source_hash[:16]}…")
    return 0


def _obtained_at(text: str) -> datetime:
    from dialer.cli import CommandError

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--obtained-at: expected a date such as 2026-11-20, got {text!r}") from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if value > datetime.now(UTC):
        raise CommandError("--obtained-at: the date is in the future")
    return value


def run_status(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError, redis_unreachable

    store = RegistryStore(_client(config))
    try:
        names = args.names or store.names()
        if not names:
            print("no registry loaded")
            return 0
        missing = 0
        for name in names:
            check_name(name)
            v = store.status(name)
            if v is None:
                print(f"{name}: not loaded")
                missing += 1
                continue
            obtained = f" (obtained {v.obtained_at:%Y-%m-%d %H:%M:%S} UTC)" if v.obtained_at else ""
            print(f"{name}: version {v.version}, {v.rows} numbers, "
                  f"loaded {v.loaded_at:%Y-%m-%d %H:%M:%S} UTC{obtained} "
                  f"({v.kind} from {v.file_name}, +{v.added} -{v.removed}, {v.invalid} malformed lines), "
                  f"sha256 {v.source_hash[:16]}…, {v.blob_bytes} bytes")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    except (ValueError, RegistryError, redis.RedisError) as exc:
        raise CommandError(str(exc)) from None
    return 1 if missing else 0


def run_lookup(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError, redis_unreachable

    store = RegistryStore(_client(config))
    try:
        names = args.registry or store.names()
        if not names:
            raise CommandError("no registry loaded")
        for name in names:
            check_name(name)
        for number in args.numbers:
            try:
                found = [name for name in names if store.contains(name, number)]
            except ValueError as exc:
                raise CommandError(f"{number}: {exc}") from None
            print(f"{number}: {'listed in ' + ', '.join(found) if found else 'not listed'}"
                  f" (checked {', '.join(names)})")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    except (RegistryError, redis.RedisError) as exc:
        raise CommandError(str(exc)) from None
    return 0
