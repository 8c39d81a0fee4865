"""`dialer user ...`: console accounts from the shell (the first admin: nobody can sign in before one exists).

  dialer user create --tenant T --email E --role R [--password-stdin]   (asks for the password twice)
  dialer user password --tenant T --email E [--password-stdin]           (ends the user's sessions, unlocks)
  dialer user reset-mfa --tenant T --email E                             (ends the user's sessions)

Each change joins the tenant's audit trail (actor cli:<login name>), like `dialer token`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from dialer.cli import CommandError
from dialer.commands.tenants import _audit, _with_store
from dialer.config import Config
from gateway.accounts import AccountStore
from gateway.auth import ROLES, AuthError, AuthStore
from gateway.credentials import password_problem
from gateway.sessions import SessionStore


def register(sub: Any) -> None:
    user = sub.add_parser("user", help="console accounts: create, set password, reset MFA")
    user_sub = user.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    create = user_sub.add_parser("create", help="create a user who signs in to the console with a password")
    create.add_argument("--tenant", required=True, help="tenant the user belongs to")
    create.add_argument("--email", required=True, help="the user's email address (their sign-in name)")
    create.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.set_defaults(func=run_user_create)
    password = user_sub.add_parser("password", help="set a user's password (ends their sessions)")
    password.add_argument("--tenant", required=True, help="tenant the user belongs to")
    password.add_argument("--email", required=True, help="the user's email address")
    password.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    password.set_defaults(func=run_user_password)
    reset = user_sub.add_parser("reset-mfa", help="remove a user's second factor (they enrol again)")
    reset.add_argument("--tenant", required=True, help="tenant the user belongs to")
    reset.add_argument("--email", required=True, help="the user's email address")
    reset.set_defaults(func=run_user_reset_mfa)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CommandError("the two passwords differ")
    problem = password_problem(password)
    if problem:
        raise CommandError(f"password: {problem}")
    return password


def run_user_create(args: argparse.Namespace, config: Config) -> int:
    password = _read_password(args)

    async def work(store: AuthStore) -> None:
        if not await store.tenant(args.tenant):
            raise AuthError(f"no tenant {args.tenant} (create it with: dialer tenant create {args.tenant})")
        accounts = AccountStore(store.redis)
        if await accounts.find(args.email):
            raise AuthError(f"{args.email} already has an account")
        await store.create_user(args.tenant, args.email, args.role)
        try:
            await accounts.set_password(args.tenant, args.email, password)
        except AuthError:
            await store.update_user(args.tenant, args.email, disabled=True)  # no half-made account that works
            raise
        await _audit(store, args.tenant, "user.create", user=args.email, role=args.role)
        await _audit(store, args.tenant, "password.reset", user=args.email)

    _with_store(config, work)
    extra = " (a second factor is set up at first sign-in)" if args.role == "admin" else ""
    print(f"user {args.email} ({args.role}) created in tenant {args.tenant}{extra}")
    return 0


def run_user_password(args: argparse.Namespace, config: Config) -> int:
    password = _read_password(args)

    async def work(store: AuthStore) -> None:
        if not await store.user(args.tenant, args.email):
            raise AuthError(f"no user {args.email} in tenant {args.tenant}")
        accounts = AccountStore(store.redis)
        await accounts.set_password(args.tenant, args.email, password)
        await accounts.unlock(args.email)
        await SessionStore(store.redis).revoke_all(args.tenant, args.email)
        await _audit(store, args.tenant, "password.reset", user=args.email)

    _with_store(config, work)
    print(f"password of {args.email} set; their sessions ended")
    return 0


def run_user_reset_mfa(args: argparse.Namespace, config: Config) -> int:
    async def work(store: AuthStore) -> None:
        if not await store.user(args.tenant, args.email):
            raise AuthError(f"no user {args.email} in tenant {args.tenant}")
        await AccountStore(store.redis).reset_mfa(args.tenant, args.email)
        await SessionStore(store.redis).revoke_all(args.tenant, args.email)
        await _audit(store, args.tenant, "mfa.reset", user=args.email)

    _with_store(config, work)
    print(f"second factor of {args.email} removed; they set one up at next sign-in")
    return 0
