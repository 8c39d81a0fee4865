"""Console accounts: the sign-in credentials of a tenant's users, kept in Redis next to the user record.

A console account is a user of gateway/auth.py (same tenants, same roles, same `disabled` flag) whose name
is an email address and which has a password. Redis keys (besides the user hash of gateway/auth.py):
  logins                         hash: lower-case email -> "tenant/name" (an email signs in to one tenant)
  t:{tenant}:user:{name}         fields added here: password (Argon2id), totp_secret, totp_pending,
                                 totp_last_step, mfa ("1" when enrolled)
  t:{tenant}:user:{name}:recovery  set of SHA-256 of unused recovery codes
  tenant:{id}                    field mfa_required ("1": every user of the tenant needs a second factor)
  login:fail:{sha256(email)}     failed attempts in the current window (expires)
  login:lock:{sha256(email)}     present while the email is locked out (expires)
  login:ip:{address}             sign-in attempts from one address in the current minute (expires)

Failures are counted by email, known or not, so a locked-out answer says nothing about whether the account
exists. Admins always need a second factor; other roles when their tenant requires it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from gateway import credentials
from gateway.auth import AuthError, tenant_key, user_key

LOGINS = "logins"


@dataclass(frozen=True)
class LoginLimits:
    max_failures: int = 5  # failed attempts on one email before it is locked
    window_seconds: int = 900  # failures older than this are forgotten
    lockout_seconds: int = 900
    per_address_per_minute: int = 30  # attempts from one client address, whatever the email


def email_key(email: str) -> str:
    return email.strip().lower()


def _h(email: str) -> str:
    return hashlib.sha256(email_key(email).encode()).hexdigest()


def recovery_key(tenant: str, name: str) -> str:
    return f"{user_key(tenant, name)}:recovery"


def mfa_needed(role: str, tenant_record: dict[str, str]) -> bool:
    return role == "admin" or tenant_record.get("mfa_required") == "1"


class AccountStore:
    def __init__(self, redis: Any, limits: LoginLimits | None = None) -> None:
        self.redis = redis
        self.limits = limits or LoginLimits()

    # --- who an email is ------------------------------------------------------------------------

    async def find(self, email: str) -> tuple[str, str] | None:
        owner = await self.redis.hget(LOGINS, email_key(email))
        if not owner:
            return None
        tenant, _, name = owner.partition("/")
        return tenant, name

    async def set_password(self, tenant: str, name: str, password: str) -> None:
        """Give the user a password (and its email a login). Raises AuthError in words."""
        problem = credentials.password_problem(password)
        if problem:
            raise AuthError(f"password: {problem}")
        if "@" not in name:
            raise AuthError("only users named by an email address can sign in with a password")
        if not await self.redis.exists(user_key(tenant, name)):
            raise AuthError(f"no user {name} in tenant {tenant}")
        owner = f"{tenant}/{name}"
        taken = not await self.redis.hsetnx(LOGINS, email_key(name), owner)
        if taken and await self.redis.hget(LOGINS, email_key(name)) != owner:
            raise AuthError(f"{name} already signs in to another tenant")
        await self.redis.hset(user_key(tenant, name), "password", credentials.hash_password(password))

    # --- MFA --------------------------------------------------------------------------------------

    async def start_enrolment(self, tenant: str, name: str) -> str:
        secret = credentials.new_totp_secret()
        await self.redis.hset(user_key(tenant, name), "totp_pending", secret)
        return secret

    async def confirm_enrolment(self, tenant: str, name: str, code: str, now: float) -> list[str] | None:
        """Turn on TOTP when `code` matches the pending secret; returns the new recovery codes (shown once)."""
        user = await self.redis.hgetall(user_key(tenant, name))
        secret = user.get("totp_pending")
        if not secret:
            return None
        step = credentials.totp_step(secret, code, now, 0)
        if step is None:
            return None
        codes = credentials.new_recovery_codes()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(user_key(tenant, name), mapping={"totp_secret": secret, "mfa": "1", "totp_last_step": str(step)})
        pipe.hdel(user_key(tenant, name), "totp_pending")
        pipe.delete(recovery_key(tenant, name))
        pipe.sadd(recovery_key(tenant, name), *[credentials.recovery_hash(c) for c in codes])
        await pipe.execute()
        return codes

    async def check_second_factor(self, tenant: str, name: str, code: str, now: float) -> str | None:
        """"totp" or "recovery" when the code is good (and is then used up), else None."""
        user = await self.redis.hgetall(user_key(tenant, name))
        if credentials.is_recovery_code(code):
            removed = await self.redis.srem(recovery_key(tenant, name), credentials.recovery_hash(code))
            return "recovery" if removed else None
        secret = user.get("totp_secret")
        if not secret:
            return None
        step = credentials.totp_step(secret, code, now, int(user.get("totp_last_step") or 0))
        if step is None:
            return None
        # Compare-and-set so two requests racing with one code cannot both pass.
        script = ("local last = tonumber(redis.call('HGET', KEYS[1], 'totp_last_step') or '0') "
                  "if tonumber(ARGV[1]) > last then redis.call('HSET', KEYS[1], 'totp_last_step', ARGV[1]) "
                  "return 1 end return 0")
        if not await self.redis.eval(script, 1, user_key(tenant, name), str(step)):
            return None
        return "totp"

    async def reset_mfa(self, tenant: str, name: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(user_key(tenant, name), "totp_secret", "totp_pending", "totp_last_step", "mfa")
        pipe.delete(recovery_key(tenant, name))
        await pipe.execute()

    async def recovery_left(self, tenant: str, name: str) -> int:
        return int(await self.redis.scard(recovery_key(tenant, name)))

    # --- tenant policy ------------------------------------------------------------------------------

    async def set_mfa_required(self, tenant: str, required: bool) -> None:
        await self.redis.hset(tenant_key(tenant), "mfa_required", "1" if required else "0")

    async def mfa_required(self, tenant: str) -> bool:
        return await self.redis.hget(tenant_key(tenant), "mfa_required") == "1"

    # --- rate limits and lockout --------------------------------------------------------------------

    async def locked_for(self, email: str) -> int:
        """Seconds the email stays locked out (0: not locked)."""
        ttl = await self.redis.ttl(f"login:lock:{{{_h(email)}}}")
        return max(0, int(ttl))

    async def address_over_limit(self, address: str) -> bool:
        key = f"login:ip:{address}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, 0, ex=60, nx=True)  # SET NX EX, not EXPIRE NX: Redis 6.2 has no EXPIRE NX
        pipe.incr(key)
        _, count = await pipe.execute()
        return int(count) > self.limits.per_address_per_minute

    async def note_failure(self, email: str) -> bool:
        """Count a failed attempt; True when this one locks the email."""
        fail = f"login:fail:{{{_h(email)}}}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(fail, 0, ex=self.limits.window_seconds, nx=True)
        pipe.incr(fail)
        _, count = await pipe.execute()
        if int(count) < self.limits.max_failures:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(f"login:lock:{{{_h(email)}}}", "1", ex=self.limits.lockout_seconds)
        pipe.delete(fail)
        await pipe.execute()
        return True

    async def note_success(self, email: str) -> None:
        await self.redis.delete(f"login:fail:{{{_h(email)}}}")

    async def unlock(self, email: str) -> None:
        await self.redis.delete(f"login:lock:{{{_h(email)}}}", f"login:fail:{{{_h(email)}}}")
