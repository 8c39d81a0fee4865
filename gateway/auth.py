"""Tenants, users, API tokens and roles.

Redis keys:
  tenants                    set of tenant ids
  tenant:{id}                hash: id, name, created_at
  t:{tenant}:users           set of user names
  t:{tenant}:user:{name}     hash: name, role, created_at, disabled ("0"/"1")
  t:{tenant}:tokens          hash: token id -> sha256 of the token (the tenant's index, for listing and revoking)
  token:{sha256}             hash: id, tenant, user, label, created_at, last_used_at, expires_at (optional)

A token is `dlr_<id>_<secret>`: the id (10 hex digits) is public and names the token in listings and
logs; the secret is 256 random bits. Only the SHA-256 of the whole token is stored, so a leaked database
does not leak usable tokens; a plain hash lookup is enough because the token has full entropy (no
password stretching or constant-time compare needed). The token itself is shown once, at creation.

A token acts as its user: the role is read from the user record at every request, so changing or
disabling a user takes effect at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ROLES = ("admin", "supervisor", "uploader", "auditor")

# Who may do what. Data, not code: change a row here to change the policy (tests read it too).
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "me.read": ("admin", "supervisor", "uploader", "auditor"),
    "users.read": ("admin", "auditor"),
    "users.write": ("admin",),
    "tokens.read": ("admin", "auditor"),
    "tokens.write": ("admin",),
    "campaigns.read": ("admin", "supervisor", "uploader", "auditor"),
    "campaigns.write": ("admin", "supervisor"),
    "campaigns.control": ("admin", "supervisor"),
    "stats.read": ("admin", "supervisor", "auditor"),
    "metrics.read": ("admin", "supervisor", "auditor"),
    "optouts.write": ("admin", "supervisor", "uploader"),
    "consents.read": ("admin", "supervisor", "auditor"),
    "consents.write": ("admin", "supervisor", "uploader"),
    "calls.disposition": ("admin", "supervisor"),  # agents' desktops and AI platforms report call outcomes
    # Used by the routes the integration step adds (lists, gate, registries, audit, exports, subjects).
    "lists.read": ("admin", "supervisor", "uploader", "auditor"),
    "lists.write": ("admin", "uploader"),
    "gate.check": ("admin", "supervisor", "auditor"),
    "registry.read": ("admin", "supervisor", "auditor"),
    # Registries are shared by every tenant: also needs the tenant in setting gateway.registry_tenants.
    "registry.write": ("admin",),
    "audit.read": ("admin", "auditor"),
    "exports.create": ("admin", "auditor"),
    "subjects.read": ("admin", "auditor"),  # data subject access, retention policy
    "subjects.manage": ("admin",),  # rectify, erase, change the retention policy
    "webhooks.read": ("admin", "auditor"),
    "webhooks.write": ("admin",),  # endpoints receive people's numbers: only an admin chooses where they go
    "settings.write": ("admin",),  # the tenant's opt-out keywords
    "usage.read": ("admin", "supervisor", "auditor"),  # usage, budgets, holds (issue 19)
    "usage.write": ("admin",),  # the billing rounding rule and budgets
    "campaigns.suspend": ("admin",),  # the tenant admin's kill-switch for a campaign
    # The operator's kill-switch for a whole tenant, over the API: also needs the caller's tenant in setting
    # gateway.operator_tenants (Route.operator; gateway/api/operator.py). A tenant's own admin never has it.
    "tenants.operate": ("admin",),
    "reports.read": ("admin", "supervisor", "auditor"),  # per campaign and day, from the record (counts only)
    "reports.person": ("admin", "auditor"),  # one person's calls and the gate's decisions: personal data
}

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_TOKEN = re.compile(r"^dlr_([0-9a-f]{10})_[A-Za-z0-9_-]{20,}$")


# Permissions that also need the caller's tenant listed in a setting (the installation's operator tenants).
OPERATOR_PERMISSIONS = {"tenants.operate": "gateway.operator_tenants"}


def listed(setting_value: str, tenant: str) -> bool:
    """The tenant is one of a comma-separated setting's tenants."""
    return tenant in {t.strip() for t in setting_value.split(",") if t.strip()}


def permissions_of(role: str, tenant: str, config: Any) -> list[str]:
    """What a user may do, as GET /v1/me and the console's session tell it: the role's permissions, less the
    operators' ones unless the tenant is an operator tenant (the console shows pages from this list)."""
    return sorted(p for p, roles in PERMISSIONS.items() if role in roles
                  and (p not in OPERATOR_PERMISSIONS or listed(config[OPERATOR_PERMISSIONS[p]], tenant)))


def allowed(role: str, permission: str) -> bool:
    """Fail closed: an unknown permission or role allows nothing."""
    return role in PERMISSIONS.get(permission, ())


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from the bearer token at each request."""

    tenant: str
    user: str
    role: str
    token_id: str

    def can(self, permission: str) -> bool:
        return allowed(self.role, permission)


class AuthError(ValueError):
    """A management request that cannot be done (unknown tenant, bad name...). One line for people."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(token id, full token)."""
    token_id = secrets.token_hex(5)
    return token_id, f"dlr_{token_id}_{secrets.token_urlsafe(32)}"


def token_id_of(token: str) -> str | None:
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def _now(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def tenant_key(tenant: str) -> str:
    """`{T}` is the tenant's hash tag: the record shares the slot of the tenant's t:{T}: keys (docs/redis.md)."""
    return f"tenant:{{{tenant}}}"


def user_key(tenant: str, name: str) -> str:
    return f"t:{{{tenant}}}:user:{name}"


def users_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:users"


def tokens_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:tokens"


def token_key(digest: str) -> str:
    return f"token:{digest}"


class AuthStore:
    """Tenants, users and tokens over an asyncio Redis client created with decode_responses=True."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    # --- tenants -------------------------------------------------------------------------------

    async def create_tenant(self, tenant: str, name: str | None = None, at: datetime | None = None) -> dict[str, str]:
        if not TENANT_ID.match(tenant):
            raise AuthError("tenant id: use 1-40 lower-case letters, digits, '-' or '_' (starting with a letter/digit)")
        record = {"id": tenant, "name": name or tenant, "created_at": _now(at)}
        if not await self.redis.hsetnx(tenant_key(tenant), "id", tenant):
            raise AuthError(f"tenant {tenant} already exists")
        await self.redis.hset(tenant_key(tenant), mapping=record)
        await self.redis.sadd("tenants", tenant)
        return record

    async def tenant(self, tenant: str) -> dict[str, str] | None:
        record = await self.redis.hgetall(tenant_key(tenant))
        return record or None

    async def tenants(self) -> list[dict[str, str]]:
        ids = sorted(await self.redis.smembers("tenants"))
        return [r for r in [await self.tenant(t) for t in ids] if r]

    # --- users ---------------------------------------------------------------------------------

    async def create_user(self, tenant: str, name: str, role: str, at: datetime | None = None) -> dict[str, str]:
        if not await self.tenant(tenant):
            raise AuthError(f"no tenant {tenant}")
        if not USER_NAME.match(name):
            raise AuthError("user name: 1-64 letters, digits, '.', '_', '-' or '@'")
        if role not in ROLES:
            raise AuthError(f"role: expected one of {', '.join(ROLES)}")
        record = {"name": name, "role": role, "created_at": _now(at), "disabled": "0"}
        if not await self.redis.hsetnx(user_key(tenant, name), "name", name):
            raise AuthError(f"user {name} already exists")
        await self.redis.hset(user_key(tenant, name), mapping=record)
        await self.redis.sadd(users_key(tenant), name)
        return record

    async def user(self, tenant: str, name: str) -> dict[str, str] | None:
        record = await self.redis.hgetall(user_key(tenant, name))
        return record or None

    async def users(self, tenant: str) -> list[dict[str, str]]:
        names = sorted(await self.redis.smembers(users_key(tenant)))
        return [r for r in [await self.user(tenant, n) for n in names] if r]

    async def update_user(self, tenant: str, name: str, *, role: str | None = None,
                          disabled: bool | None = None) -> dict[str, str] | None:
        if not await self.user(tenant, name):
            return None
        if role is not None:
            if role not in ROLES:
                raise AuthError(f"role: expected one of {', '.join(ROLES)}")
            await self.redis.hset(user_key(tenant, name), "role", role)
        if disabled is not None:
            await self.redis.hset(user_key(tenant, name), "disabled", "1" if disabled else "0")
        return await self.user(tenant, name)

    # --- tokens --------------------------------------------------------------------------------

    async def create_token(self, tenant: str, user: str, label: str = "", at: datetime | None = None,
                           expires_at: datetime | None = None) -> tuple[str, dict[str, str]]:
        """Return (the token, shown once; its stored record). A token with expires_at stops working then."""
        if not await self.user(tenant, user):
            raise AuthError(f"no user {user} in tenant {tenant}")
        token_id, token = new_token()
        digest = token_hash(token)
        record = {"id": token_id, "tenant": tenant, "user": user, "label": label, "created_at": _now(at)}
        if expires_at is not None:
            record["expires_at"] = _now(expires_at)
        # Two steps, not one MULTI: the token record is global (found by the token alone), the index is in the
        # tenant's hash slot, and a Redis Cluster cannot join them in a transaction. Index first: a crash in
        # between leaves an index entry naming no token (listed as nothing), never a token no one can revoke.
        await self.redis.hset(tokens_key(tenant), token_id, digest)
        await self.redis.hset(token_key(digest), mapping=record)
        return token, record

    async def tokens(self, tenant: str) -> list[dict[str, str]]:
        index = await self.redis.hgetall(tokens_key(tenant))
        records = [await self.redis.hgetall(token_key(d)) for _, d in sorted(index.items())]
        return [r for r in records if r]

    async def revoke_token(self, tenant: str, token_id: str) -> bool:
        """Delete the token. Only the owning tenant's index can name it, so no cross-tenant revoke."""
        digest = await self.redis.hget(tokens_key(tenant), token_id)
        if digest is None:
            return False
        await self.redis.delete(token_key(digest))  # first: it stops working (see create_token())
        await self.redis.hdel(tokens_key(tenant), token_id)
        return True

    async def authenticate(self, token: str, at: datetime | None = None) -> Principal | None:
        """The caller behind a bearer token, or None (unknown, revoked, user gone or disabled, tenant gone)."""
        if not token_id_of(token):
            return None
        record = await self.redis.hgetall(token_key(token_hash(token)))
        if not record.get("tenant") or not record.get("user"):
            return None  # absent, or a husk left by a revoke racing the last_used_at write
        if record.get("expires_at") and _parse(record["expires_at"]) <= (at or datetime.now(UTC)):
            return None
        tenant, name = record["tenant"], record["user"]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(user_key(tenant, name))
        pipe.exists(tenant_key(tenant))
        pipe.hset(token_key(token_hash(token)), "last_used_at", _now(at))
        user, tenant_exists, _ = await pipe.execute()
        if not user or not tenant_exists or user.get("disabled") == "1" or user.get("role") not in ROLES:
            return None
        return Principal(tenant=tenant, user=name, role=user["role"], token_id=record["id"])
