"""`dialer lists`: import contact lists, read their error reports, scrub them, export them.

  dialer lists import FILE --list NAME --tenant T [--region FR] [--mapping map.json] [--campaign C] [--inline]
  dialer lists status IMPORT_ID --tenant T
  dialer lists errors IMPORT_ID --tenant T [-o errors.csv]
  dialer lists scrub --list NAME --tenant T --campaign C [--purpose ...] [-o scrub.csv]
  dialer lists export {contacts,attempts,outcomes} --tenant T (--list NAME | --campaign C) [-o out.csv]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

import redis

from dialer.cli import CommandError, checked_redis
from dialer.config import Config
from dialer.contacts.columns import load_mapping
from dialer.contacts.export import KINDS, export
from dialer.contacts.jobs import create_import, enqueue_import, reconcile_import, run_import_inline
from dialer.contacts.report import summary_text, write_error_report
from dialer.contacts.sniff import FileError
from dialer.contacts.store import import_status

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser = sub.add_parser("lists", help="contact lists: import, errors, scrub, export")
    actions = parser.add_subparsers(dest="lists_action", metavar="ACTION", required=True)

    imp = actions.add_parser("import", help="import a CSV/TSV file into a list (an RQ job; --inline in-process)")
    imp.add_argument("file", help="CSV or spreadsheet export to import (encoding and delimiter detected)")
    imp.add_argument("--list", required=True, dest="list_id", help="list to import into (created if new)")
    imp.add_argument("--tenant", required=True, help="tenant (client) that owns the list")
    imp.add_argument("--region", default="FR", help="default region for national numbers (ISO code)")
    imp.add_argument("--mapping", help="column mapping JSON file (docs/contacts.md)")
    imp.add_argument("--campaign", help="also add the contacts to this campaign (deduplicated against it)")
    imp.add_argument("--inline", action="store_true", help="run in this process instead of an RQ worker")
    imp.add_argument("--helpers", type=int, default=1, help="extra chunk jobs for other workers (default 1)")
    imp.add_argument("--no-wait", action="store_true", help="enqueue and print the import id, do not follow")
    imp.set_defaults(func=run_import)

    status = actions.add_parser("status", help="status and summary of an import")
    status.add_argument("import_id", help="import id, as `lists import` printed it")
    status.add_argument("--tenant", required=True, help="tenant that owns the import")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=run_status)

    errors = actions.add_parser("errors", help="row-level error report of an import, as CSV")
    errors.add_argument("import_id", help="import id, as `lists import` printed it")
    errors.add_argument("--tenant", required=True, help="tenant that owns the import")
    errors.add_argument("-o", "--output", help="file to write (default: standard output)")
    errors.set_defaults(func=run_errors)

    scrub = actions.add_parser("scrub", help="who in a list may be called now, later, never (through the gate)")
    scrub.add_argument("--list", required=True, dest="list_id", help="list to check")
    scrub.add_argument("--tenant", required=True, help="tenant that owns the list")
    scrub.add_argument("--campaign", required=True,
        help="campaign the calls would be made for (its attempt history counts)")
    scrub.add_argument("--purpose", default="telemarketing", help="purpose of the calls (default telemarketing)")
    scrub.add_argument("--audience", default="consumer", help="consumer or business (default consumer)")
    scrub.add_argument("--voice", default="human", help="human, ai or prerecorded (default human)")
    scrub.add_argument("--at", help="instant to evaluate (ISO 8601, default now)")
    scrub.add_argument("-o", "--output", help="per-contact CSV (default: summary only)")
    scrub.set_defaults(func=run_scrub)

    exp = actions.add_parser("export", help="CSV export of contacts, attempts or outcomes")
    exp.add_argument("kind", choices=KINDS, help="what to export")
    exp.add_argument("--tenant", required=True, help="tenant whose data to export")
    group = exp.add_mutually_exclusive_group(required=True)
    group.add_argument("--list", dest="list_id", help="export this list's contacts")
    group.add_argument("--campaign", help="export this campaign's contacts")
    exp.add_argument("-o", "--output", help="file to write (default: standard output)")
    exp.set_defaults(func=run_export)


def _check_names(args: argparse.Namespace) -> None:
    """Tenant, list and campaign become parts of Redis keys: refuse ':' or '*' before any key is built."""
    from dialer.contacts.jobs import check_list_id

    try:
        check_list_id(args.tenant, "tenant")
        if getattr(args, "list_id", None) is not None:
            check_list_id(args.list_id)
        if getattr(args, "campaign", None) is not None:
            check_list_id(args.campaign, "campaign")
    except FileError as exc:
        raise CommandError(f"{exc.message} [{exc.code}]") from None


def _client(config: Config) -> redis.Redis:
    return checked_redis(config.redis_url)


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if not path:
        yield sys.stdout
        return
    from dialer.private_files import create_private

    try:
        # 0600 (personal data); a byte-order mark first so Excel reads accents right (standard output has none)
        with create_private(path, "w", newline="", encoding="utf-8-sig") as fh:
            yield fh
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None


def _bar(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total or None, unit="rows", unit_scale=True, file=sys.stderr, dynamic_ncols=True)


def _follow(client: redis.Redis, tenant: str, import_id: str) -> dict[str, Any]:
    """Poll the import's status hash and drive a progress bar until it is committed or failed."""
    bar = None
    polls = 0
    try:
        while True:
            polls += 1
            # Every ~2 s, also ask RQ: a coordinator killed with its worker must not leave us waiting forever.
            status = (reconcile_import(client, tenant, import_id) if polls % 10 == 0 else
                      import_status(client, tenant, import_id)) or {}
            total, done = int(status.get("rows_total") or 0), int(status.get("rows_done") or 0)
            if total and bar is None:
                bar = _bar(total)
            if bar is not None:
                bar.n = min(done, total)
                bar.set_postfix_str(status.get("status", ""), refresh=False)
                bar.refresh()
            if status.get("status") in ("committed", "failed"):
                return status
            if polls == 15 and status.get("status") == "queued" and not _import_workers(client):
                print("waiting for a worker: none listens on the queue 'imports' (start `dialer worker`, or run "
                      "the import with --inline; Ctrl-C stops waiting, the import stays queued)", file=sys.stderr)
            time.sleep(0.2)
    finally:
        if bar is not None:
            bar.close()


def _import_workers(client: redis.Redis) -> int:
    from rq import Worker

    from dialer.jobs import IMPORTS, get_queue, jobs_connection

    return Worker.count(connection=jobs_connection(client), queue=get_queue(client, IMPORTS))


def run_import(args: argparse.Namespace, config: Config) -> int:
    _check_names(args)
    client = _client(config)
    if not client.sismember("tenants", args.tenant):  # as `dialer token create` does: no data for nobody
        raise CommandError(f"no tenant {args.tenant} (create it first: dialer tenant create {args.tenant}) "
                           "[unknown_tenant]")
    try:
        mapping = load_mapping(args.mapping) if args.mapping else None
        if args.inline:
            ticket = create_import(client, args.tenant, args.file, args.list_id, region=args.region, mapping=mapping,
                                   campaign=args.campaign, max_bad_share=config["imports.max_bad_share"])
        else:
            ticket = enqueue_import(client, args.tenant, args.file, args.list_id, region=args.region,
                                    mapping=mapping, campaign=args.campaign, helpers=max(0, args.helpers),
                                    max_bad_share=config["imports.max_bad_share"])
    except FileError as exc:
        raise CommandError(f"{exc.message} [{exc.code}]") from None
    if ticket.duplicate_of:
        print(f"this file was already imported into list {args.list_id}: import {ticket.duplicate_of}")
        status = import_status(client, args.tenant, ticket.duplicate_of) or {}
        print(summary_text(status))
        return 0
    print(f"import {ticket.import_id}" + ("" if args.inline else f" queued (job {ticket.job_id})"), file=sys.stderr)
    if args.no_wait and not args.inline:
        print(ticket.import_id)
        return 0
    if args.inline:
        bar: Any = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = _bar(total)
            bar.n = min(done, total) if total else done
            bar.refresh()

        try:
            status = run_import_inline(client, args.tenant, ticket.import_id, progress=progress)
        except Exception as exc:  # a bug: the import is already failed (internal_error); one line, not a traceback
            logger.debug("import %s: internal error", ticket.import_id, exc_info=True)
            status = import_status(client, args.tenant, ticket.import_id) or {}
            if status.get("status") != "failed":
                raise CommandError(f"import {ticket.import_id}: internal error ({type(exc).__name__})") from None
        finally:
            if bar is not None:
                bar.close()
    else:
        status = _follow(client, args.tenant, ticket.import_id)
    print(summary_text(status))
    if status.get("status") == "failed":
        return 1
    if (status.get("summary") or {}).get("invalid") or (status.get("summary") or {}).get("duplicates"):
        print(f"  error report: dialer lists errors {ticket.import_id} --tenant {args.tenant} -o errors.csv")
    return 0


def run_status(args: argparse.Namespace, config: Config) -> int:
    _check_names(args)
    status = import_status(_client(config), args.tenant, args.import_id)
    if status is None:
        raise CommandError(f"no import {args.import_id} for tenant {args.tenant}")
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else summary_text(status))
    return 0


def run_errors(args: argparse.Namespace, config: Config) -> int:
    _check_names(args)
    client = _client(config)
    if import_status(client, args.tenant, args.import_id) is None:
        raise CommandError(f"no import {args.import_id} for tenant {args.tenant}")
    with _output(args.output) as out:
        count = write_error_report(client, args.tenant, args.import_id, out)
    _exported(client, args, "import_errors", count)
    if args.output:
        print(f"{count} entries written to {args.output}", file=sys.stderr)
    return 0


def run_scrub(args: argparse.Namespace, config: Config) -> int:
    _check_names(args)
    from dialer.contacts.scrub import gate_decider, scrub_list
    from rules.caller_id import NOT_JUDGED
    from rules.model import Campaign

    client = _client(config)
    gate = _gate(client, config)
    try:
        at = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    except ValueError:
        raise CommandError(f"--at {args.at!r}: expected an ISO 8601 instant") from None
    if at.tzinfo is None:
        raise CommandError("--at needs a time zone (e.g. 2026-05-04T10:00:00+02:00)")
    # the list's lawfulness for a kind of campaign: no caller ID to judge
    campaign = Campaign(id=args.campaign, tenant=args.tenant, purpose=args.purpose, audience=args.audience,
                        voice=args.voice, caller_id=NOT_JUDGED)
    decide = gate_decider(gate, campaign)
    with _output(args.output) if args.output else contextlib.nullcontext(None) as out:
        summary = scrub_list(client, args.tenant, args.list_id, decide, at, out)
    if args.output:  # the report lists every number of the list: personal data written out of Redis
        _exported(client, args, "scrub", summary["now"] + summary["later"] + summary["never"],
                  list_id=args.list_id, campaign=args.campaign)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _gate(client: redis.Redis, config: Config) -> Any:
    """The real gate (registries, DNC lists, facts, rule packs), used read-only: check_many, no audit."""
    from dialer.gate import Gate
    from dialer.registry.store import RegistryStore
    from rules.packs import PackError, load_packs

    try:
        packs = load_packs(config["rules.packs_dir"] or None)
    except PackError as exc:
        raise CommandError(f"rule packs: {exc}") from None
    if not config["security.secret_key"]:
        raise CommandError("setting security.secret_key is required by the gate (DIALER_SECRET_KEY)")
    return Gate(client, packs, RegistryStore(client), secret_key=config["security.secret_key"])


def run_export(args: argparse.Namespace, config: Config) -> int:
    _check_names(args)
    client = _client(config)
    with _output(args.output) as out:
        count = export(client, args.tenant, args.kind, out, list_id=args.list_id, campaign=args.campaign)
    _exported(client, args, args.kind, count, list_id=args.list_id, campaign=args.campaign)
    if args.output:
        print(f"{count} rows written to {args.output}", file=sys.stderr)
    return 0


def _exported(client: redis.Redis, args: argparse.Namespace, kind: str, rows: int, **where: str | None) -> None:
    """Personal data written out of Redis is audited (kind export). A file is also registered, so that erasure
    removes the person from it and retention deletes it; standard output is recorded as such (we cannot reach
    it afterwards: the audit entry says who took it, when, and what)."""
    from dialer.audit_events import export_written, record

    at = datetime.now(UTC)
    if args.output:
        export_written(client, args.tenant, kind, os.path.abspath(args.output), rows, at, actor="cli:lists",
                       list_id=where.get("list_id"), campaign=where.get("campaign"))
    else:
        record(client, args.tenant, "export", "cli:lists", {"kind": kind, "rows": rows, "path": None,
                                                            "to": "stdout", "list": where.get("list_id"),
                                                            "campaign": where.get("campaign")}, at)
