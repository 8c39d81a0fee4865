"""The record (docs/record.md): `dialer record migrate|lag`, `dialer archiver`, `dialer report campaign-days|person`.

`dialer archiver` is the small service that copies every tenant's audit stream (the outbox) into the record and
trims Redis; run one (or more: copies are idempotent) next to the workers. Stop it with SIGTERM or Ctrl-C: the
batch in flight is either committed or not at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from dialer.cli import CommandError, checked_redis, typed_confirmation
from dialer.config import Config
from dialer.record.store import Record, RecordUnavailable

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser = sub.add_parser("record", help="the record that lasts years: migrate its schema, show the archiver's lag",
                            description="The record (docs/record.md).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    migrate = actions.add_parser("migrate", help="create or upgrade the record's schema (Alembic)")
    migrate.set_defaults(func=run_migrate)
    lag = actions.add_parser("lag", help="how far the record is behind each tenant's audit trail (JSON lines)")
    lag.add_argument("--tenant", help="one tenant (default: every tenant with a trail)")
    lag.set_defaults(func=run_lag)
    keep = actions.add_parser("retention", help="remove whole months of the audit archive, gate decisions and call "
                              "records before a month (consents and opt-outs are kept); the chain stays verifiable")
    keep.add_argument("--before", required=True, help="first month kept, YYYY-MM")
    keep.add_argument("--yes", action="store_true", help="really remove (without it: say what would go)")
    keep.set_defaults(func=run_retention)

    relink = actions.add_parser(
        "relink", help="after a Redis data loss: confirm it, so the record accepts Redis's new audit trail (a signed "
        "break in the chain) and the archiver goes on",
        description="After Redis lost audit entries the record already holds (restarted empty, flushed, a failover "
                    "that lost the last writes), the archiver stops for the tenant. This records the loss in the "
                    "record as a signed, confirmed break, and the archiver copies Redis's new trail from there "
                    "(docs/record.md). `dialer runtime resume --after-data-loss` does the same for every tenant.")
    which = relink.add_mutually_exclusive_group(required=True)
    which.add_argument("--tenant", help="the tenant whose trail forked")
    which.add_argument("--all", action="store_true", help="every tenant whose trail no longer continues the record")
    relink.add_argument("--reason", default="", help="what happened (kept in the break and the audit trail)")
    relink.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    relink.set_defaults(func=run_relink)

    move = actions.add_parser(
        "move-contacts", help="move contacts an older dialer kept in Redis into the record, then remove them from "
        "Redis (idempotent; `dialer worker` also does it at start)",
        description="Contacts live in the record (docs/record.md). This moves every contact still in Redis's "
                    "contact store (imported before the record held them) into the record, a batch at a time, "
                    "and removes each batch from Redis only after the record committed it.")
    move.add_argument("--tenant", action="append", help="only this tenant (repeatable; default: every tenant)")
    move.set_defaults(func=run_move_contacts)

    archiver = sub.add_parser("archiver", help="copy audit trails (call records, consents, opt-outs) into the record",
                              description="Copy every tenant's audit trail into the record, idempotently, and "
                                          "trim from Redis what the record holds (docs/record.md).")
    archiver.add_argument("--once", action="store_true", help="one pass over every tenant, then exit")
    archiver.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    archiver.add_argument("--interval", type=float, default=1.0, help="seconds between passes (default 1)")
    archiver.add_argument("--batch", type=int, default=2000, help="entries per record transaction (default 2000)")
    archiver.add_argument("--tenant-rescan", type=float, default=30.0,
                          help="seconds between looks for new tenants with a trail (a SCAN; default 30)")
    archiver.set_defaults(func=run_archiver)

    report = sub.add_parser("report", help="reports from the record: per campaign and day, or one person's calls",
                            description="Reports that need SQL, from the record (docs/record.md).")
    kinds = report.add_subparsers(dest="report", metavar="REPORT", required=True)
    days = kinds.add_parser("campaign-days", help="attempts, answers, abandons, abandon rate, denials by reason, "
                            "hours dialed per campaign and day (UTC)")
    days.add_argument("--tenant", required=True, help="the tenant whose campaigns to report")
    days.add_argument("--campaign", help="one campaign (default: all)")
    days.add_argument("--since", help="first day YYYY-MM-DD (default: 29 days before --until)")
    days.add_argument("--until", help="last day YYYY-MM-DD (default: today, UTC)")
    days.add_argument("--csv", action="store_true", help="CSV instead of JSON lines")
    days.set_defaults(func=run_report)
    person = kinds.add_parser("person", help="every call to one number and the gate's decision for it (JSON)")
    person.add_argument("--tenant", required=True, help="the tenant whose record to search")
    person.add_argument("--phone", required=True, help="the number, E.164 (+33...); never logged")
    person.add_argument("--country", help="country for a national number (ISO code)")
    person.set_defaults(func=run_report)


def _record(config: Config) -> Record:
    return Record.from_config(config)


def run_migrate(args: argparse.Namespace, config: Config) -> int:
    with _record(config) as record:
        try:
            revision = record.migrate()
        except RecordUnavailable as exc:
            raise CommandError(str(exc)) from None
        print(f"record {record.url.shown()}: schema at revision {revision}")
    return 0


def _client(config: Config) -> redis.Redis:
    return checked_redis(config.redis_url)


def _archiver(client: redis.Redis, record: Record, config: Config, batch: int = 2000) -> Any:
    from dialer.record.archiver import Archiver

    return Archiver(client, record, secret_key=config["security.secret_key"], batch=batch,
                    tail=timedelta(hours=config["record.redis_tail_hours"]))


def run_move_contacts(args: argparse.Namespace, config: Config) -> int:
    from dialer.contacts.move import move_contacts

    client = _client(config)
    with _record(config) as record:
        try:
            record.migrate()
            moved = move_contacts(client, record, args.tenant)
        except RecordUnavailable as exc:
            raise CommandError(f"{exc}; nothing more was moved (run it again: what was moved stays moved)") \
                from None
    for tenant, n in sorted(moved.contacts.items()):
        print(f"tenant {tenant}: {n} contacts moved into the record")
    print(f"{moved.total} contacts moved; none left in Redis's contact store" if moved.contacts or not args.tenant
          else "nothing to move")
    return 0


def run_lag(args: argparse.Namespace, config: Config) -> int:
    from dialer.record.archiver import tenants_with_trails

    client = _client(config)
    with _record(config) as record:
        archiver = _archiver(client, record, config)
        try:
            for tenant in [args.tenant] if args.tenant else tenants_with_trails(client):
                print(json.dumps(archiver.lag(tenant)))
        except RecordUnavailable as exc:
            raise CommandError(str(exc)) from None
    return 0


def run_relink(args: argparse.Namespace, config: Config) -> int:
    import getpass

    from dialer.audit import AuditLog
    from dialer.record.relink import RelinkError, confirm, diagnose, forked_tenants

    client = _client(config)
    audit = AuditLog(client, config["security.secret_key"])
    with _record(config) as record:
        try:
            forks = forked_tenants(audit, record) if args.all else \
                [f for f in [diagnose(audit, record, args.tenant)] if f is not None]
            if not forks:
                print("every trail continues the record: nothing to relink" if args.all else
                      f"tenant {args.tenant}: Redis's audit trail continues the record: nothing to relink")
                return 0
            for fork in forks:
                print(f"tenant {fork.tenant}: {fork.describe()}")
            typed_confirmation("The record keeps every archived entry; Redis's new trail is archived after a "
                               "confirmed break. Type 'relink' to confirm the loss: ", "relink", "not relinked",
                               yes=args.yes)
            by = f"cli:{getpass.getuser()}"
            for fork in forks:
                done = confirm(audit, record, fork.tenant, by=by, reason=args.reason, at=datetime.now(UTC))
                print(f"tenant {fork.tenant}: relinked: {done.describe()}")
        except (RecordUnavailable, RelinkError) as exc:
            raise CommandError(str(exc)) from None
        except redis.RedisError as exc:
            raise CommandError(f"cannot reach Redis: {exc}") from None
    return 0


def run_archiver(args: argparse.Namespace, config: Config) -> int:
    from dialer.record.archiver import ChainGap

    client = _client(config)
    if args.batch < 1:
        raise CommandError("--batch: expected at least 1")
    with _record(config) as record:
        try:
            record.migrate()
        except RecordUnavailable as exc:
            if args.once:
                raise CommandError(str(exc)) from None
            log.error("archiver: %s (retrying)", exc)
        archiver = _archiver(client, record, config, args.batch)
        if args.once:
            try:
                results = archiver.run_once(args.tenant)
            except (RecordUnavailable, ChainGap) as exc:
                raise CommandError(str(exc)) from None
            for r in results:
                print(json.dumps(r.__dict__))
            return 0
        stopping = {"flag": False}

        def stop(signum: int, frame: Any) -> None:
            stopping["flag"] = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("archiver: copying audit trails to %s", record.url.shown())
        archiver.serve(args.interval, lambda: stopping["flag"], tenants=args.tenant, rescan=args.tenant_rescan)
    return 0


def run_report(args: argparse.Namespace, config: Config) -> int:
    from dialer.audit import AuditLog
    from dialer.record.reports import ReportError, campaign_days, campaign_days_csv, day_range, person_history
    from dialer.suppression import person_ref

    with _record(config) as record:
        try:
            if args.report == "campaign-days":
                try:
                    first, last = day_range(args.since, args.until, datetime.now(UTC).date())
                except ReportError as exc:
                    raise CommandError(f"--{exc}") from None
                rows = campaign_days(record, args.tenant, first, last, args.campaign)
                if args.csv:
                    sys.stdout.write(campaign_days_csv(rows))
                else:
                    for row in rows:
                        print(json.dumps(row))
                return 0
            from dialer.gate import parse_number

            parsed = parse_number(args.phone, args.country)
            if parsed is None:
                raise CommandError("--phone: not a valid phone number (E.164 like +33145678901, or give --country)")
            e164 = parsed[0]
            if not config["security.secret_key"]:
                raise CommandError("setting security.secret_key is required: the record knows people by keyed hash")
            person = person_ref(str(config["security.secret_key"]).encode(), e164)
            history = person_history(record, args.tenant, person)
            print(json.dumps({"phone": AuditLog.mask(e164), **history}, indent=1))
            return 0
        except RecordUnavailable as exc:
            raise CommandError(str(exc)) from None


def run_retention(args: argparse.Namespace, config: Config) -> int:
    from dialer.record.retention import drop_before, month_start

    try:
        year, month = (int(x) for x in args.before.split("-"))
        cutoff = month_start(year, month)
    except ValueError:
        raise CommandError("--before: expected a month YYYY-MM") from None
    if cutoff > datetime.now(UTC) - timedelta(days=365):
        raise CommandError("--before: refusing to remove the last 12 months (the audit trail is kept 6 years)")
    with _record(config) as record:
        try:
            if not args.yes:
                rows = record.query("SELECT count(*) FROM audit_archive WHERE written_at < %s", (record.ts(cutoff),))
                print(f"would remove {rows[0][0]} archived audit entries written before {cutoff:%Y-%m} (and the gate "
                      "decisions and call records of those months); add --yes to do it")
                return 0
            result = drop_before(record, cutoff, config["security.secret_key"], datetime.now(UTC))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except RecordUnavailable as exc:
            raise CommandError(str(exc)) from None
    print(json.dumps({"before": f"{cutoff:%Y-%m}", "dropped_partitions": list(result.dropped_partitions),
                      "new_bases": result.new_bases}))
    return 0
