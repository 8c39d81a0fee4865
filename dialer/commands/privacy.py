"""`dialer subject access|rectify|erase --tenant T (--phone P | --contact ID)`: data subject requests.

  dialer subject access --tenant acme --phone +33612345678 [--format json|csv] [-o FILE]
  dialer subject rectify --tenant acme --contact ID --set last_name=Martin --set email=
  dialer subject rectify --tenant acme --phone +33612345678 --set city=Lyon    (the one contact with that number)
  dialer subject erase --tenant acme --phone +33612345678 [--reason TEXT]
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

import redis

from dialer import privacy, redisconn
from dialer.cli import CommandError, redis_unreachable
from dialer.commands.retention import parse_at
from dialer.config import Config
from dialer.record.store import Record, RecordUnavailable


def register(sub: Any) -> None:
    parser = sub.add_parser("subject", help="data subject requests: access, rectify, erase")
    parser.add_argument("action", choices=["access", "rectify", "erase"],
        help="access: everything held about the person; rectify: correct fields; erase: remove and suppress")
    parser.add_argument("--tenant", required=True, help="tenant (client) holding the data")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--phone", help="the person's number (E.164, or national with --country)")
    who.add_argument("--contact", help="a contact id")
    parser.add_argument("--country", help="ISO country of a national-format --phone")
    parser.add_argument("--format", choices=["json", "csv"], default="json", help="access: output format")
    parser.add_argument("-o", "--output", help="access: file to write (default: standard output)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="rectify: a field to correct (empty value clears it); repeat")
    parser.add_argument("--reason", default="data subject request", help="erase: recorded in the audit trail")
    parser.add_argument("--actor", help="who asks (default: user:<login name>)")
    parser.add_argument("--at", help="instant of the request, ISO 8601 (default: now)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, config: Config) -> int:
    client = redisconn.connect(config.redis_url)
    actor = args.actor or f"user:{getpass.getuser()}"
    at = parse_at(args.at)
    key = config["security.secret_key"]
    try:
        if args.action == "access":
            kwargs = {"phone": args.phone, "contact_id": args.contact, "country": args.country, "actor": actor,
                      "at": at, "secret_key": key, "record": Record.from_config(config)}
            if args.format == "csv":
                text = privacy.access_csv(client, args.tenant, **kwargs)
            else:
                text = json.dumps(privacy.access(client, args.tenant, **kwargs), indent=2, ensure_ascii=False,
                                  default=str) + "\n"
            if args.output:
                with open(args.output, "w", encoding="utf-8", newline="") as fh:
                    fh.write(text)
            else:
                sys.stdout.write(text)
            return 0
        if args.action == "rectify":
            changes: dict[str, str | None] = {}
            for item in args.set:
                name, sep, value = item.partition("=")
                if not sep or not name:
                    raise CommandError(f"--set {item!r}: use FIELD=VALUE")
                changes[name.strip()] = value
            contact_id = args.contact or privacy.contact_for_phone(client, args.tenant, args.phone, args.country)
            contact = privacy.rectify(client, args.tenant, contact_id, changes, actor, at)
            print(json.dumps(contact, indent=2, ensure_ascii=False))
            return 0
        report = privacy.erase(client, args.tenant, phone=args.phone, contact_id=args.contact, country=args.country,
                               actor=actor, at=at, secret_key=key, reason=args.reason,
                               record=Record.from_config(config))
        removed = ", ".join(f"{k} {v}" for k, v in sorted(report.removed.items())) or "nothing else held"
        print(f"erased: {len(report.contact_ids)} contact(s), {removed}; {report.suppressed} number(s) kept as "
              f"suppression hashes; audit seq {report.audit_seq}")
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    except privacy.PrivacyError as exc:
        raise CommandError(f"{args.action}: {exc.message} [{exc.code}]") from None
    except RecordUnavailable as exc:
        what = "nothing erased" if args.action == "erase" else "nothing answered"
        raise CommandError(f"{args.action}: {exc} (the record cannot be read: {what})") from None
    except redis.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    finally:
        client.close()
