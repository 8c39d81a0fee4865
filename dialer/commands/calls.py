"""`dialer calls disposition --tenant T CALL_ID OUTCOME`: record an agent's disposition of a call from the shell.

The same path as `POST /v1/calls/{call_id}/disposition` (dialer/agent_dispositions.py): outcome precedence, the
opt-out recorded durably and audited, the French refusal cool-off. For operators (an agent's report that could not
reach the API) and tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis

from dialer import redisconn
from dialer.agent_dispositions import AGENT_OUTCOMES, UnknownCall, record_disposition
from dialer.audit import AuditLog
from dialer.cli import CommandError, redis_unreachable
from dialer.config import Config
from dialer.facts import OPTOUT_SCOPES, FactStore
from dialer.gate import Gate


def register(sub: Any) -> None:
    parser = sub.add_parser("calls", help="calls the dialer placed")
    actions = parser.add_subparsers(dest="calls_action", metavar="ACTION", required=True)
    dispo = actions.add_parser("disposition", help="record an agent's disposition of a call")
    dispo.add_argument("--tenant", required=True, help="tenant the call belongs to")
    dispo.add_argument("call_id", help="the dialer's call id (channel variable DIALER_CALL_ID)")
    dispo.add_argument("outcome", choices=list(AGENT_OUTCOMES), help="the agent's disposition")
    dispo.add_argument("--scope", choices=list(OPTOUT_SCOPES), default="company", help="for opted_out")
    dispo.add_argument("--keyword", help="the words the person used (opted_out)")
    dispo.add_argument("--note", help="the agent's note, kept with the call attempt")
    dispo.add_argument("--actor", default="cli", help="who reports it (kept in the audit trail)")
    dispo.set_defaults(func=run_disposition)


def run_disposition(args: Any, config: Config) -> int:
    if not config.redis_url:
        raise CommandError("redis.url is not set")
    client = redisconn.connect(config.redis_url)
    try:
        audit = AuditLog(client, config["security.secret_key"] or b"")
        gate = Gate(client, None, None, audit=audit, actor="cli")  # records outcomes only: no packs needed
        done = record_disposition(gate, FactStore(client, audit=audit), args.tenant, args.call_id, args.outcome,
                                  at=datetime.now(UTC), actor=f"cli:{args.actor}", scope=args.scope,
                                  keyword=args.keyword, note=args.note)
    except UnknownCall:
        raise CommandError(f"no call {args.call_id} in tenant {args.tenant} (unknown, released or older than "
                           "7 days)") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise CommandError(f"{redis_unreachable(config.redis_url, exc)}; nothing recorded twice if you run it "
                           "again") from None
    except redis.RedisError as exc:
        raise CommandError(f"Redis: {exc}; nothing recorded twice if you run it again") from None
    finally:
        client.close()
    print(json.dumps({"call_id": done.call_id, "outcome": done.outcome, "recorded": done.recorded,
                      "phone": AuditLog.mask(done.e164), "campaign": done.campaign,
                      "optout": None if done.optout is None else done.optout.scope}))
    return 0
