"""`dialer redis retag`: rename the keys of a Redis written before the keys carried hash tags (dialer/keyretag.py,
docs/redis.md). Run once after upgrading, with every dialer process stopped, before anything else."""

from __future__ import annotations

import argparse
from typing import Any

import redis

from dialer import redisconn
from dialer.cli import CommandError, redis_unreachable
from dialer.config import Config


def register(sub: Any) -> None:
    parser = sub.add_parser("redis", help="Redis key layout upgrade")
    actions = parser.add_subparsers(dest="redis_action", metavar="ACTION", required=True)
    retag = actions.add_parser("retag", help="rename old keys to their hash-tagged names (once, dialers stopped)")
    retag.add_argument("--dry-run", action="store_true", help="count what would be renamed, change nothing")
    retag.add_argument("--force", action="store_true", help="even if dialing engines are still registered")
    retag.set_defaults(func=run_retag)


def run_retag(args: argparse.Namespace, config: Config) -> int:
    from dialer.keyretag import retag

    client = redisconn.connect(config.redis_url)
    try:
        done = retag(client, dry_run=args.dry_run, force=args.force)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except redis.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    finally:
        client.close()
    verb = "would rename" if args.dry_run else "renamed"
    print(f"{verb}: " + (", ".join(f"{kind} {n}" for kind, n in sorted(done.items())) or "nothing (already done)"))
    return 1 if done.get("conflicts") else 0
