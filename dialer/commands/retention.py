"""`dialer retention run|policy|schedule` and `dialer tenant offboard`: retention per tenant, contract end.

  dialer retention run --tenant T [--at ISO] [--enqueue]      apply the policy now (or at a given instant)
  dialer retention policy --tenant T [--set attempts=180 ...]  show or change the periods (days)
  dialer retention schedule [--every 86400] [--once]           enqueue a retention job per tenant periodically
  dialer tenant offboard --tenant T --export PATH [--at ISO]   export everything, then delete it
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import redis

from dialer import retention
from dialer.cli import CommandError, checked_redis
from dialer.config import Config

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser = sub.add_parser("retention", help="apply, show or schedule the tenants' retention policies")
    actions = parser.add_subparsers(dest="retention_action", required=True, metavar="ACTION")
    run_p = actions.add_parser("run", help="apply a tenant's retention policy")
    run_p.add_argument("--tenant", required=True, help="tenant whose expired data to remove")
    run_p.add_argument("--at", help="the instant to apply it at, ISO 8601 (default: now)")
    run_p.add_argument("--enqueue", action="store_true", help="run it as a job on the retention queue")
    run_p.set_defaults(func=run_run)
    pol = actions.add_parser("policy", help="show or change a tenant's retention periods (days)")
    pol.add_argument("--tenant", required=True, help="tenant whose retention policy to show or change")
    pol.add_argument("--set", action="append", default=[], metavar="KIND=DAYS",
                     help=f"kinds: {', '.join(retention.KINDS)}; repeat")
    pol.set_defaults(func=run_policy)
    sch = actions.add_parser("schedule", help="enqueue one retention job per tenant every --every seconds")
    sch.add_argument("--every", type=float, default=86400.0, help="seconds between rounds (default: a day)")
    sch.add_argument("--once", action="store_true", help="one round, then exit")
    sch.set_defaults(func=run_schedule)


def register_offboard(tenant_sub: Any) -> None:
    """`dialer tenant offboard` (added to the gateway's `dialer tenant` command)."""
    off = tenant_sub.add_parser("offboard", help="contract end: export all the tenant's data, then delete it")
    off.add_argument("--tenant", required=True, help="tenant to offboard")
    off.add_argument("--export", required=True, help="new directory, or a path ending in .zip")
    off.add_argument("--at", help="instant of the offboarding, ISO 8601 (default: now)")
    off.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    off.set_defaults(func=run_offboard)


def parse_at(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--at: not an ISO 8601 instant: {text!r}") from None
    if value.tzinfo is None:
        raise CommandError("--at: give a time zone (Z or +01:00)")
    return value.astimezone(UTC)


def _client(config: Config) -> redis.Redis:
    return checked_redis(config.redis_url)


def run_run(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    at = parse_at(args.at)
    if args.enqueue:
        from dialer.jobs import RETENTION, get_queue

        job = get_queue(client, RETENTION).enqueue(retention.retention_job, args.tenant, at.isoformat(),
                                                   job_timeout=6 * 3600)
        print(f"retention job {job.id} queued for tenant {args.tenant} at {at.isoformat()}")
        return 0
    from dialer.privacy import PrivacyError

    try:
        report = retention.run(client, args.tenant, at, secret_key=config["security.secret_key"],
                               actor=f"user:{getpass.getuser()}")
    except PrivacyError as exc:
        raise CommandError(f"retention: {exc.message}") from None
    print(json.dumps(report.as_dict(), indent=2))
    return 1 if report.problems else 0


def run_policy(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    changes: dict[str, int] = {}
    for item in args.set:
        kind, sep, days = item.partition("=")
        if not sep or not days.strip().isdigit():
            raise CommandError(f"--set {item!r}: use KIND=DAYS")
        changes[kind.strip()] = int(days)
    try:
        policy = retention.set_policy(client, args.tenant, changes, actor=f"user:{getpass.getuser()}",
                                      at=datetime.now(UTC))
    except retention.PolicyError as exc:
        raise CommandError(f"retention policy: {exc}") from None
    for kind in retention.KINDS:
        print(f"{kind:18} {policy[kind]:>6} days (default {retention.defaults()[kind]}, "
              f"legal minimum {retention.minimum(kind)})")
    return 0


def run_schedule(args: argparse.Namespace, config: Config) -> int:
    """A small periodic enqueuer: run it once (e.g. beside `dialer worker`); the jobs carry their instant."""
    client = _client(config)
    while True:
        at = datetime.now(UTC)
        ids = retention.enqueue_all(client, at)
        log.info("retention: %d tenant job(s) queued for %s", len(ids), at.isoformat())
        if args.once:
            print(f"{len(ids)} retention job(s) queued")
            return 0
        time.sleep(max(1.0, args.every))


def run_offboard(args: argparse.Namespace, config: Config) -> int:
    from dialer.offboarding import OffboardError, offboard
    from dialer.record.store import Record

    if not args.yes:
        answer = input(f"Export and then DELETE all data of tenant {args.tenant}? Type the tenant id to confirm: ")
        if answer.strip() != args.tenant:
            raise CommandError("not confirmed: nothing done")
    client = _client(config)
    try:
        report = offboard(client, args.tenant, args.export, parse_at(args.at), actor=f"user:{getpass.getuser()}",
                          secret_key=config["security.secret_key"], record=Record.from_config(config))
    except (OffboardError, OSError) as exc:
        raise CommandError(f"offboard: {exc}; nothing was deleted") from None
    print(f"tenant {args.tenant}: exported to {report.path} ({sum(report.files.values())} records), "
          f"{report.deleted_keys} keys deleted; kept: {', '.join(report.kept_keys) or 'nothing'}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    return 0
