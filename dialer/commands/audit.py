"""`dialer audit verify|anchor|show --tenant T` (or `--all` tenants): check, sign or read audit trails."""

from __future__ import annotations

import argparse
import json
from typing import Any

import redis

from dialer import redisconn
from dialer.audit import AuditLog, iso
from dialer.cli import CommandError, redis_unreachable
from dialer.config import Config

ACTIONS = {
    "verify": "check the hash chain; exit 1 naming the first bad seq",
    "anchor": "sign the current head with security.secret_key (schedule it, e.g. daily)",
    "show": "print entries as JSON lines (the part archived in the record and the Redis tail, as one sequence)",
}


def register(sub: Any) -> None:
    parser = sub.add_parser("audit", help="verify, anchor or show a tenant's audit trail",
                            description="Verify, anchor or show a tenant's audit trail (docs/audit.md).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in ACTIONS.items():
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        if name == "show":
            action.add_argument("--tenant", required=True, help="tenant id")
            action.add_argument("--from", dest="first", type=int, default=1, help="first seq (default 1)")
            action.add_argument("--limit", type=int, default=100, help="at most this many entries (default 100)")
            action.add_argument("--redis-only", action="store_true",
                                help="only the part still in Redis (default: the record's archived part too)")
        else:
            who = action.add_mutually_exclusive_group(required=True)
            who.add_argument("--tenant", help="tenant id")
            who.add_argument("--all", action="store_true", help=f"{name} every tenant that has a trail")
            if name == "verify":
                action.add_argument("--redis-only", action="store_true",
                                    help="check only the part still in Redis (default: the record's archived part "
                                         "too, as one chain)")
        action.set_defaults(func=run, all=False, redis_only=False)


def tenants_with_trails(client: redis.Redis) -> list[str]:
    """Tenants that have an audit trail (a chain head), sorted."""
    found = set()
    for key in client.scan_iter(match="t:{*}:audit:head", count=1000):
        text = key.decode() if isinstance(key, bytes) else key
        found.add(text[3:-len("}:audit:head")])
    return sorted(found)


def run(args: argparse.Namespace, config: Config) -> int:
    client = redisconn.connect(config.redis_url)
    try:
        log = AuditLog(client, config["security.secret_key"])
        tenants = tenants_with_trails(client) if args.all else [args.tenant]
        if args.action == "verify":
            from dialer.record.store import Record
            from dialer.record.verify import verify_tenant

            broken = 0
            record = None if args.redis_only else Record.from_config(config)
            for tenant in tenants:
                result = verify_tenant(log, record, tenant)
                print(f"{tenant}: {result}" if args.all else result)
                broken += not result.ok
            if record is not None:
                record.close()
            return 1 if broken else 0
        if args.action == "anchor":
            for tenant in tenants:
                try:
                    head = log.anchor(tenant)
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
                prefix = f"{tenant}: " if args.all else ""
                print(prefix + (f"anchored seq {head.seq} hash {head.hash}" if head.seq
                                else "audit trail empty: nothing to anchor"))
            return 0
        from dialer.record.store import Record, RecordUnavailable
        from dialer.record.trail import oldest_first

        record = None if args.redis_only else Record.from_config(config)
        try:
            for n, entry in enumerate(oldest_first(client, record, args.tenant, first=args.first)):
                if n >= args.limit:
                    break
                print(json.dumps({"seq": entry.seq, "at": iso(entry.at), "kind": entry.kind, "actor": entry.actor,
                                  "payload": entry.payload, "written": iso(entry.written), "hash": entry.hash}))
        except RecordUnavailable as exc:
            raise CommandError(f"the archived part of the trail cannot be read: {exc} (--redis-only shows the part "
                               "still in Redis)") from None
        finally:
            if record is not None:
                record.close()
        return 0
    except redis.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    finally:
        client.close()
