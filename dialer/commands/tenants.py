"""`dialer tenant ...` and `dialer token ...`: manage tenants and API tokens from the shell.

  dialer tenant create ID [--name "Display name"]
  dialer tenant list
  dialer token create --tenant T --user U --role R [--label TEXT] [--expires-days N] [--json]  (token shown once)
  dialer token list --tenant T
  dialer token revoke --tenant T TOKEN_ID
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from dialer import redisconn
from dialer.audit import AuditEvent, append_async
from dialer.cli import CommandError, redis_unreachable
from dialer.config import Config
from gateway.auth import ROLES, AuthError, AuthStore


def register(sub: Any) -> None:
    tenant = sub.add_parser("tenant", help="create and list tenants")
    tenant_sub = tenant.add_subparsers(dest="tenant_action", required=True, metavar="ACTION")
    create = tenant_sub.add_parser("create", help="create a tenant")
    create.add_argument("id", help="tenant id: lower-case letters, digits, - and _")
    create.add_argument("--name", help="display name (default: the id)")
    create.set_defaults(func=run_tenant_create)
    tenant_sub.add_parser("list", help="list tenants").set_defaults(func=run_tenant_list)
    from dialer.commands.retention import register_offboard

    register_offboard(tenant_sub)  # dialer tenant offboard (dialer/offboarding.py)

    token = sub.add_parser("token", help="create, list and revoke API tokens")
    token_sub = token.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="create a token (printed once); creates the user if needed")
    create.add_argument("--tenant", required=True, help="tenant the token acts for")
    create.add_argument("--user", required=True, help="who the token is for (shown in the audit trail)")
    create.add_argument("--role", required=True, choices=ROLES, help="what the token may do")
    create.add_argument("--label", default="", help="a note to tell tokens apart (e.g. 'CRM sync')")
    create.add_argument("--expires-days", type=int, help="the token stops working after this many days")
    create.add_argument("--json", action="store_true", help="one JSON object: token, id, tenant, user, role")
    create.set_defaults(func=run_token_create)
    listing = token_sub.add_parser("list", help="list a tenant's tokens (ids only, never secrets)")
    listing.add_argument("--tenant", required=True, help="tenant whose tokens to list")
    listing.set_defaults(func=run_token_list)
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("--tenant", required=True, help="tenant the token belongs to")
    revoke.add_argument("token_id", help="token id, as `dialer token list` shows it")
    revoke.set_defaults(func=run_token_revoke)


def _with_store(config: Config, work: Any) -> Any:
    async def main() -> Any:
        client = redisconn.connect_async(config.redis_url, decode_responses=True)
        try:
            return await work(AuthStore(client))
        except AuthError as exc:
            raise CommandError(str(exc)) from None
        except (ConnectionError, OSError, aioredis.ConnectionError) as exc:
            raise redis_unreachable(config.redis_url, exc) from None
        finally:
            await client.aclose()

    return asyncio.run(main())


async def _audit(store: AuthStore, tenant: str, action: str, **details: str) -> None:
    """Token and user changes made from the shell join the tenant's audit trail like the gateway's (kind
    token_use, actor cli:<login name>): who can reach the API must be on record whichever way it changed."""
    await append_async(store.redis, tenant, [AuditEvent("token_use", f"cli:{getpass.getuser()}",
                                                        {"action": action, "token": "", **details},
                                                        datetime.now(UTC))])


def run_tenant_create(args: argparse.Namespace, config: Config) -> int:
    record = _with_store(config, lambda store: store.create_tenant(args.id, args.name))
    print(f"tenant {record['id']} created")
    return 0


def run_tenant_list(args: argparse.Namespace, config: Config) -> int:
    for record in _with_store(config, lambda store: store.tenants()):
        print(f"{record['id']}\t{record.get('name', '')}\t{record.get('created_at', '')}")
    return 0


def run_token_create(args: argparse.Namespace, config: Config) -> int:
    async def work(store: AuthStore) -> tuple[str, dict[str, str]]:
        if not await store.tenant(args.tenant):
            raise AuthError(f"no tenant {args.tenant} (create it with: dialer tenant create {args.tenant})")
        user = await store.user(args.tenant, args.user)
        if user is None:
            await store.create_user(args.tenant, args.user, args.role)
            await _audit(store, args.tenant, "user.create", user=args.user, role=args.role)
        elif user["role"] != args.role:
            raise AuthError(f"user {args.user} has role {user['role']}, not {args.role}; "
                            "change it with PATCH /v1/users/{name} or use that role")
        expires = None
        if args.expires_days is not None:
            if args.expires_days < 1:
                raise AuthError("--expires-days: expected a positive number of days")
            expires = datetime.now(UTC) + timedelta(days=args.expires_days)
        token, record = await store.create_token(args.tenant, args.user, args.label, expires_at=expires)
        await _audit(store, args.tenant, "token.create", created=record["id"], user=args.user)
        return token, record

    token, record = _with_store(config, work)
    if getattr(args, "json", False):
        print(json.dumps({"token": token, "id": record["id"], "tenant": args.tenant, "user": args.user,
                          "role": args.role, "expires_at": record.get("expires_at")}, sort_keys=True))
        return 0
    print(f"token {record['id']} for {args.user} ({args.role}) in tenant {args.tenant}; shown once, keep it safe:")
    print(token)
    return 0


def run_token_list(args: argparse.Namespace, config: Config) -> int:
    for record in _with_store(config, lambda store: store.tokens(args.tenant)):
        print(f"{record['id']}\t{record['user']}\t{record.get('created_at', '')}\t"
              f"last used {record.get('last_used_at', 'never')}\t{record.get('label', '')}")
    return 0


def run_token_revoke(args: argparse.Namespace, config: Config) -> int:
    async def work(store: AuthStore) -> bool:
        if not await store.revoke_token(args.tenant, args.token_id):
            return False
        await _audit(store, args.tenant, "token.revoke", revoked=args.token_id)
        return True

    if not _with_store(config, work):
        raise CommandError(f"no token {args.token_id} in tenant {args.tenant}")
    print(f"token {args.token_id} revoked")
    return 0
