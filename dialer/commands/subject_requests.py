"""`dialer subject-requests`: the register of data-subject requests (dialer/subject_requests.py).

  dialer subject-requests list --tenant T [--overdue]
  dialer subject-requests sweep        send the reminders and overdue alerts due now, for every tenant
                                       (`dialer webhooks` also sweeps every SWEEP_SECONDS)
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import redis

from dialer import subject_requests as dsr
from dialer.cli import redis_unreachable
from dialer.config import Config


def register(sub: Any) -> None:
    parser = sub.add_parser("subject-requests", help="data-subject requests and their legal deadlines")
    actions = parser.add_subparsers(dest="dsr_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="a tenant's requests, nearest deadline first")
    listing.add_argument("--tenant", required=True, help="tenant id")
    listing.add_argument("--overdue", action="store_true", help="only those past their deadline")
    listing.set_defaults(func=run_list)
    actions.add_parser("sweep", help="send reminders and overdue alerts due now (webhooks)").set_defaults(
        func=run_sweep)


def _client(config: Config) -> redis.Redis:
    return redis.Redis.from_url(config.redis_url, decode_responses=True, socket_connect_timeout=3)


def run_list(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    try:
        found = dsr.list_requests(client, args.tenant, datetime.now(UTC), overdue=True if args.overdue else None)
    except redis.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    finally:
        client.close()
    for r in found:
        late = " OVERDUE" if r["overdue"] else (" forward overdue" if r["forward_overdue"] else "")
        print(f"{r['id']}\t{r['kind']}\t{r['regime']}\t{r['state']}\tdue {r['deadline']}{late}")
    if not found:
        print("no requests")
    return 0


def run_sweep(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    try:
        sent = dsr.sweep_all(client, datetime.now(UTC))
    except redis.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    finally:
        client.close()
    print(f"{sent['reminder']} reminders and {sent['overdue']} overdue alerts sent")
    return 0
