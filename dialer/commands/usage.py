"""`dialer usage`: a tenant's usage for a month or days, as a table, JSON or CSV; and its plan.

  dialer usage --tenant T --month 2026-12 [--json | --csv]
  dialer usage --tenant T --from 2026-12-01 --to 2026-12-06
  dialer usage --tenant T --month 2026-11 --source record   (the archived copy: after Redis lost its counters)
  dialer usage --tenant T --month 2026-12 --restore         (after a Redis data loss: the month's counters back
                                                            from the record, so budgets count from the truth)
  dialer usage --tenant T --plan plan.json     (replace the rounding rule and budgets; audited as the operator)
"""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import redis

from dialer import holds, redisconn
from dialer.cli import CommandError, redis_unreachable
from dialer.config import Config
from dialer.record.store import Record, RecordUnavailable
from dialer.usage import archived, budgets, report
from dialer.usage.plan import PlanError, get_plan

SHOWN = ("attempts", "connected", "billable_minutes", "ai_minutes", "recordings", "recording_minutes")


def register(sub: Any) -> None:
    parser = sub.add_parser("usage", help="a tenant's metered usage (calls, minutes, recordings), budgets and plan")
    parser.add_argument("--tenant", required=True, help="tenant id")
    parser.add_argument("--month", help="a calendar month, YYYY-MM (UTC)")
    parser.add_argument("--from", dest="first", help="first UTC day, YYYY-MM-DD (default: this month's first)")
    parser.add_argument("--to", dest="last", help="last UTC day, YYYY-MM-DD (default: today)")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="the same JSON as GET /v1/usage")
    shape.add_argument("--csv", action="store_true", help="the same CSV as GET /v1/usage/export")
    parser.add_argument("--source", choices=archived.SOURCES, default="auto",
                        help="redis: the live counters; record: the archived copy; auto (default): the record for "
                             "a closed period once it holds every increment, else Redis")
    parser.add_argument("--plan", type=Path, help="a JSON file: replace the tenant's rounding rule and budgets")
    parser.add_argument("--restore", action="store_true",
                        help="after a Redis data loss: write --month's counters back from the record (refused while "
                             "Redis holds any counter of that month; audited)")
    parser.set_defaults(func=run)


def _table(found: dict[str, Any]) -> str:
    lines = [f"usage of {found['tenant']} from {found['from']} to {found['to']} (UTC; rounding "
             f"{found.get('rounding', '')}; read from {found.get('source', 'redis')})", ""]
    head = ["day", *SHOWN]
    rows = [[d["day"], *(str(d.get(m, 0)) for m in SHOWN)] for d in found["days"]]
    rows.append(["total", *(str(found["totals"].get(m, 0)) for m in SHOWN)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths,
                                                                                             strict=True))))
    lines.append(f"contacts stored: {found['totals'].get('contacts_stored', 0)}")
    for state in found.get("budgets", []):
        lines.append(f"budget {state['measure']} per {state['period']}: {state['used']} of {state['limit']} "
                     f"({state['percent']} %){' hard stop' if state['hard_stop'] else ''}")
    for hold in found.get("holds", []):
        lines.append(f"HELD: {hold['text']}")
    return "\n".join(lines)


def _usage(client: Any, config: Config, tenant: str, first: date, last: date, now: datetime,
           source: str) -> dict[str, Any]:
    """The report from the source asked for (dialer/usage/archived.py); an explicit record that cannot be read is
    an error, never figures from elsewhere."""
    record = None
    try:
        if source != "redis":
            try:
                record = Record.from_config(config)
            except (RecordUnavailable, OSError) as exc:
                if source == "record":
                    raise CommandError(f"the record cannot be read: {exc}") from None
        try:
            return archived.usage_from(client, record, tenant, first, last, now.date(), source)
        except RecordUnavailable as exc:
            raise CommandError(f"the record cannot be read: {exc}") from None
    finally:
        if record is not None:
            record.close()


def _restore(client: Any, config: Config, args: argparse.Namespace, now: datetime) -> int:
    if not args.month:
        raise CommandError("--restore needs --month YYYY-MM (a whole month: the budgets read its total)")
    try:
        first, _ = report.month_period(args.month)
    except report.PeriodError as exc:
        raise CommandError(f"--month: {exc.message}") from None
    try:
        with Record.from_config(config) as record:
            days = archived.restore_month(client, record, args.tenant, first.year, first.month,
                                          actor=f"operator:{getpass.getuser()}", at=now)
    except (RecordUnavailable, OSError) as exc:
        raise CommandError(f"the record cannot be read: {exc}") from None
    except archived.RestoreError as exc:
        raise CommandError(str(exc)) from None
    print(f"restored {days} days of {args.tenant}'s usage for {args.month} from the record")
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    client = redisconn.connect(config.redis_url, decode_responses=True, socket_connect_timeout=3)
    now = datetime.now(UTC)
    try:
        if args.plan is not None:
            try:
                data = json.loads(args.plan.read_text())
                plan, _ = budgets.replace_plan(client, args.tenant, data, actor=f"operator:{getpass.getuser()}",
                                               at=now)
            except (OSError, ValueError) as exc:
                field = f" {exc.field}" if isinstance(exc, PlanError) else ""
                raise CommandError(f"plan not changed:{field} {exc}") from None
            print(json.dumps(plan.as_dict(), indent=2, sort_keys=True))
            return 0
        if args.restore:
            return _restore(client, config, args, now)
        try:
            first, last = report.period(args.first, args.last, args.month, now.date())
        except report.PeriodError as exc:
            raise CommandError(f"--{exc.field}: {exc.message}") from None
        if first <= now.date() <= last:
            report.snapshot_contacts(client, args.tenant, now)
        found = _usage(client, config, args.tenant, first, last, now, args.source)
        plan = get_plan(client, args.tenant)
        found["rounding"] = plan.rounding
        found["budgets"] = [s.as_dict() for s in budgets.states(client, args.tenant, plan, now)]
        found["holds"] = [h.as_dict() for h in holds.tenant_holds(client, args.tenant)]
    except redis.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    finally:
        client.close()
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True))
    elif args.csv:
        print(report.usage_csv(found), end="")
    else:
        print(_table(found))
    return 0
