"""`dialer registry import|status|lookup`: load national opposition registries and query them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import redis
from tqdm import tqdm

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
    imp.add_argument("--lock-ttl", type=float, default=DEFAULT_LOCK_TTL, metavar="SECONDS",
                     help="how long a crashed import keeps others out (default %(default)s)")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=run_import)

    status = actions.add_parser("status", help="live version of each registry")
    status.add_argument("names", nargs="*", metavar="NAME", help="registries (default: all loaded)")
    status.set_defaults(func=run_status)

    lookup = actions.add_parser("lookup", help="is a number in a registry? (E.164, e.g. +33145678901)")
    lookup.add_argument("numbers", nargs="+", metavar="NUMBER")
    lookup.add_argument("--registry", action="append", metavar="NAME", help="registry to check (default: all)")
    lookup.set_defaults(func=run_lookup)


def _client(config: Config) -> redis.Redis:
    return redis.Redis.from_url(config.redis_url)


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
            self.bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, file=sys.stderr, leave=False)
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
        print(f"  line {bad.line}: {bad.reason}")


def run_import(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError

    try:
        check_name(args.registry)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    max_bad = config["registry.max_bad_share"] if args.max_bad_share is None else args.max_bad_share
    if not 0 <= max_bad <= 1:
        raise CommandError("--max-bad-share: expected a share between 0 and 1")
    bar = _Bar(not args.quiet)
    try:
        report = load_registry(
            _client(config), args.registry, args.file, delta=args.delta, fmt=args.format, country=args.country,
            max_bad_share=max_bad, progress=bar, lock_ttl=args.lock_ttl,
        )
    except LoadRefused as exc:
        bar.close()
        _print_bad_lines(exc.report)
        raise CommandError(f"registry {args.registry}: load refused, nothing changed: {exc}") from None
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


def run_status(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError

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
            print(f"{name}: version {v.version}, {v.rows} numbers, loaded {v.loaded_at:%Y-%m-%d %H:%M:%S} UTC "
                  f"({v.kind} from {v.file_name}, +{v.added} -{v.removed}, {v.invalid} malformed lines), "
                  f"sha256 {v.source_hash[:16]}…, {v.blob_bytes} bytes")
    except (ValueError, RegistryError, redis.RedisError) as exc:
        raise CommandError(str(exc)) from None
    return 1 if missing else 0


def run_lookup(args: argparse.Namespace, config: Config) -> int:
    from dialer.cli import CommandError

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
    except (RegistryError, redis.RedisError) as exc:
        raise CommandError(str(exc)) from None
    return 0
