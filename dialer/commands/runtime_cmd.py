"""`dialer runtime status|resume`: the dialing engines' data-state marker (dialer/runtime/datastate.py), and the
operator's confirmation that dialing may resume after Redis lost data (which also relinks the record to every
tenant's new audit trail: dialer/record/relink.py)."""

from __future__ import annotations

import argparse
import getpass
import time
from datetime import UTC, datetime
from typing import Any

import redis

from dialer import redisconn
from dialer.cli import CommandError, typed_confirmation
from dialer.config import Config


def register(sub: Any) -> None:
    parser = sub.add_parser("runtime", help="the dialing engines' data state; resume dialing after a Redis data loss")
    actions = parser.add_subparsers(dest="runtime_action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="whether dialing is stopped, and why")
    status.set_defaults(func=run_status)
    resume = actions.add_parser(
        "resume", help="after a Redis data loss: confirm the data as it is now and let the engines dial again (and "
        "the record accept each tenant's new audit trail: docs/record.md)")
    resume.add_argument("--after-data-loss", action="store_true", required=True,
                        help="required: you checked what was lost (opt-outs, calls of the lost seconds) and accept "
                             "the data as it is now")
    resume.add_argument("--reason", default="", help="why dialing may resume (kept in every tenant's audit trail)")
    resume.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    resume.set_defaults(func=run_resume)


def _client(config: Config) -> redis.Redis:
    return redisconn.connect(config.redis_url)


def _markers(client: redis.Redis) -> dict[str | None, dict[str, str]]:
    """None -> the one marker of a single Redis; on a Redis Cluster, tenant -> that tenant's slot's marker."""
    from dialer.audit_events import TENANTS
    from dialer.runtime.datastate import marker

    if not redisconn.is_cluster(client):
        return {None: marker(client)}
    tenants = sorted(t.decode() if isinstance(t, bytes) else t for t in client.smembers(TENANTS))
    return {tenant: found for tenant in tenants if (found := marker(client, tenant))}


def run_status(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    try:
        markers = _markers(client)
    except redis.RedisError as exc:
        raise CommandError(f"cannot reach Redis at {config.redis_url}: {exc}") from None
    finally:
        client.close()
    worst = 0
    for tenant, state in markers.items():
        if tenant is not None:
            print(f"tenant {tenant} (its Redis Cluster slot's marker):")
        worst = max(worst, _status(state))
    return worst


def _status(state: dict[str, str]) -> int:
    if not state:
        print("no data-state marker yet (no engine has run against this Redis)")
        return 0
    print(f"data set {state.get('id')}: counter {state.get('seq')}, Redis run {state.get('run_id')}")
    if state.get("resumed_at"):
        at = datetime.fromtimestamp(float(state["resumed_at"]), UTC).isoformat(timespec="seconds")
        print(f"resumed after a data loss at {at} by {state.get('resumed_by')}: {state.get('reason') or '-'}")
    if state.get("halted"):
        print(f"DIALING STOPPED: {state['halted']}")
        print("check what was lost, then: dialer runtime resume --after-data-loss")
        return 3
    print("dialing allowed")
    return 0


def run_resume(args: argparse.Namespace, config: Config) -> int:
    from dialer.audit_events import TENANTS, record
    from dialer.runtime.datastate import resume_after_data_loss

    client = _client(config)
    try:
        halted = {t: m for t, m in _markers(client).items() if m.get("halted")}
        if not halted:
            print("dialing is not stopped: nothing to resume")
            return 0
        for tenant, state in halted.items():
            print(f"DIALING STOPPED{f' (tenant {tenant})' if tenant else ''}: {state['halted']}")
        typed_confirmation("People called or opted out in the lost moments may be called again. Type 'resume' to "
                           "accept the data as it is now: ", "resume", "not resumed", yes=args.yes)
        by = f"cli:{getpass.getuser()}"
        now = time.time()
        at = datetime.fromtimestamp(now, UTC)
        for scope in halted:  # None: the one marker of a single Redis; else a tenant's (Redis Cluster)
            done = resume_after_data_loss(client, by=by, reason=args.reason, at=now, tenant=scope)
            tenants = sorted(t.decode() for t in client.smembers(TENANTS)) if scope is None else [scope]
            for tenant in tenants:  # every stopped tenant's trail says who let its calls go on
                record(client, tenant, "runtime_resume", by, {"after": "data_loss", "reason": args.reason,
                                                              "detected": done["halted"], "data_set": done["id"],
                                                              "previous_data_set": done["previous_id"]}, at)
    except redis.RedisError as exc:
        raise CommandError(f"cannot reach Redis at {config.redis_url}: {exc}") from None
    finally:
        client.close()
    print(f"dialing resumes: data set {done['id']} confirmed by {by} (audited in {len(tenants)} tenant trails); "
          "the engines adopt it at their next heartbeat")
    _relink(config, by, args.reason)
    return 0


def _relink(config: Config, by: str, reason: str) -> None:
    """The same confirmation covers the record: every tenant whose audit trail no longer continues what the record
    archived gets its confirmed break, so the archiver goes on (dialer/record/relink.py). Dialing does not wait for
    the record: one that cannot be read now is said, with the command to run once it can."""
    from dialer.audit import AuditLog
    from dialer.record.relink import RelinkError, confirm, forked_tenants
    from dialer.record.store import Record, RecordNotMigrated, RecordUnavailable

    client = _client(config)
    audit = AuditLog(client, config["security.secret_key"])
    try:
        with Record.from_config(config) as record:
            for fork in forked_tenants(audit, record):
                try:
                    done = confirm(audit, record, fork.tenant, by=by, reason=reason, at=datetime.now(UTC))
                    print(f"record: tenant {fork.tenant} relinked: {done.describe()}")
                except RelinkError as exc:
                    print(f"record: tenant {fork.tenant} NOT relinked: {exc}")
    except RecordNotMigrated:
        return
    except (RecordUnavailable, redis.RedisError) as exc:
        print(f"record: not relinked ({exc}); once it can be read: dialer record relink --all")
    finally:
        client.close()
