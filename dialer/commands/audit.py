"""`dialer audit verify|anchor|show --tenant T`: check, sign or read a tenant's audit trail."""

from __future__ import annotations

import argparse
import json
from typing import Any

import redis

from dialer.audit import AuditLog, iso
from dialer.cli import CommandError
from dialer.config import Config


def register(sub: Any) -> None:
    parser = sub.add_parser("audit", help="verify, anchor or show a tenant's audit trail")
    parser.add_argument("action", choices=["verify", "anchor", "show"],
                        help="verify: check the hash chain (exit 1 naming the first bad seq); "
                             "anchor: sign the current head with security.secret_key; "
                             "show: print entries as JSON lines")
    parser.add_argument("--tenant", required=True, help="tenant id")
    parser.add_argument("--from", dest="first", type=int, default=1, help="show: first seq (default 1)")
    parser.add_argument("--limit", type=int, default=100, help="show: at most this many entries (default 100)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, config: Config) -> int:
    client = redis.Redis.from_url(config.redis_url)
    try:
        log = AuditLog(client, config["security.secret_key"])
        if args.action == "verify":
            result = log.verify(args.tenant)
            print(result)
            return 0 if result.ok else 1
        if args.action == "anchor":
            try:
                head = log.anchor(args.tenant)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            print(f"anchored seq {head.seq} hash {head.hash}" if head.seq else "audit trail empty: nothing to anchor")
            return 0
        for n, entry in enumerate(log.entries(args.tenant, first=args.first)):
            if n >= args.limit:
                break
            print(json.dumps({"seq": entry.seq, "at": iso(entry.at), "kind": entry.kind, "actor": entry.actor,
                              "payload": entry.payload, "written": iso(entry.written), "hash": entry.hash}))
        return 0
    except redis.RedisError as exc:
        raise CommandError(f"redis at {config.redis_url}: {exc}") from None
    finally:
        client.close()
