"""`dialer tenant ...` and `dialer token ...`: manage tenants and API tokens from the shell.

  dialer tenant create ID [--name "Display name"]
  dialer tenant list
  dialer tenant suspend T --reason TEXT [--by NAME]   (alias: dialer tenants ...) the operator's kill-switch
  dialer tenant resume T --reason TEXT [--by NAME] [--budget]
  dialer tenant holds T
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

from dialer import holds
from dialer.audit import AuditEvent, append_async
from dialer.cli import CommandError, redis_unreachable
from dialer.config import Config
from gateway.auth import ROLES, AuthError, AuthStore


def register(sub: Any) -> None:
    tenant = sub.add_parser("tenant", aliases=["tenants"], help="create, list, suspend and resume tenants")
    tenant_sub = tenant.add_subparsers(dest="tenant_action", required=True, metavar="ACTION")
    create = tenant_sub.add_parser("create", help="create a tenant")
    create.add_argument("id", help="tenant id: lower-case letters, digits, - and _")
    create.add_argument("--name", help="display name (default: the id)")
    create.set_defaults(func=run_tenant_create)
    tenant_sub.add_parser("list", help="list tenants").set_defaults(func=run_tenant_list)
    suspend = tenant_sub.add_parser("suspend", help="stop every dialer process from placing calls for the tenant at "
                                    "once (calls up finish) and refuse new work in the API; audited")
    suspend.add_argument("id", help="tenant id")
    suspend.add_argument("--reason", required=True, help="why: shown to the tenant and kept in the audit trail")
    suspend.add_argument("--by", help="who decided (default: your login name)")
    suspend.set_defaults(func=run_tenant_suspend)
    resume = tenant_sub.add_parser("resume", help="lift the tenant's suspension; audited")
    resume.add_argument("id", help="tenant id")
    resume.add_argument("--reason", required=True, help="why it is lifted (audit trail)")
    resume.add_argument("--by", help="who decided (default: your login name)")
    resume.add_argument("--budget", action="store_true", help="lift a budget hard stop instead (until the plan or "
                        "the period changes, the next metered call may hold it again)")
    resume.set_defaults(func=run_tenant_resume)
    held = tenant_sub.add_parser("holds", help="the holds in force for a tenant and its campaigns")
    held.add_argument("id", help="tenant id")
    held.set_defaults(func=run_tenant_holds)
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
        client = aioredis.Redis.from_url(config.redis_url, decode_responses=True)
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


def _sync(config: Config, work: Any) -> Any:
    import redis as redis_sync

    client = redis_sync.Redis.from_url(config.redis_url, decode_responses=True, socket_connect_timeout=3)
    try:
        return work(client)
    except redis_sync.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    except holds.HoldError as exc:
        raise CommandError(exc.message) from None
    finally:
        client.close()


def _known(client: Any, tenant: str) -> None:
    if not client.sismember("tenants", tenant):
        raise CommandError(f"no tenant {tenant} (dialer tenant list shows them)")


def run_tenant_suspend(args: argparse.Namespace, config: Config) -> int:
    def work(client: Any) -> holds.Hold:
        _known(client, args.id)
        return holds.suspend_tenant(client, args.id, reason=args.reason, by=f"operator:{args.by or getpass.getuser()}",
                                    at=datetime.now(UTC))

    hold = _sync(config, work)
    print(f"tenant {args.id} suspended: no new call from any dialer process; calls up finish. {hold.text()}")
    return 0


def run_tenant_resume(args: argparse.Namespace, config: Config) -> int:
    def work(client: Any) -> bool:
        _known(client, args.id)
        lift = holds.lift_budget_hold if args.budget else holds.resume_tenant
        return lift(client, args.id, reason=args.reason, by=f"operator:{args.by or getpass.getuser()}",
                    at=datetime.now(UTC))

    if not _sync(config, work):
        raise CommandError(f"tenant {args.id} has no {'budget hold' if args.budget else 'suspension'} to lift")
    print(f"tenant {args.id}: {'budget hold' if args.budget else 'suspension'} lifted")
    return 0


def run_tenant_holds(args: argparse.Namespace, config: Config) -> int:
    def work(client: Any) -> list[holds.Hold]:
        _known(client, args.id)
        from dialer.campaigns import CampaignStore

        found = holds.tenant_holds(client, args.id)
        for campaign in CampaignStore(client).ids(args.id):
            hold = holds.campaign_hold(client, args.id, campaign)
            if hold is not None:
                found.append(hold)
        return found

    found = _sync(config, work)
    for hold in found:
        print(f"{hold.campaign or '(tenant)'}\t{hold.code}\t{hold.text()}")
    if not found:
        print(f"tenant {args.id}: no holds")
    return 0
