"""Console sessions: a random cookie naming a server-side record in Redis, expired and revoked there.

Redis keys:
  session:{sha256(cookie)}          hash: id, tenant, user, stage, csrf, created_at, expires_at, last_seen
                                    (epoch seconds); its TTL is the idle timeout, never past expires_at
  t:{tenant}:user:{name}:sessions   hash: session id -> sha256 (the user's sessions, to list and revoke them)

The cookie is `<id>.<secret>` (the id is public: it names the session in the audit trail; the secret has
256 bits, so a plain SHA-256 is enough). A session's `stage` is "full", or "enrol" for a user who signed
in but must still set up a second factor, or "code" for a user who signed in through single sign-on
(gateway/api/oidc.py) and must still give their TOTP or recovery code: such sessions reach only the
enrolment routes (and POST /v1/session/mfa/verify). Every state-changing request made with a session
cookie must carry the session's CSRF token in the X-CSRF-Token header (the page reads it from
GET /v1/session; another site cannot).
Expiry is checked against the stored instants at each request (the TTL only cleans up).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from gateway.auth import ROLES, Principal, tenant_key, user_key

COOKIE = "dialer_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class SessionPolicy:
    idle_seconds: int = 1800
    max_seconds: int = 12 * 3600


@dataclass(frozen=True)
class Session:
    id: str
    tenant: str
    user: str
    stage: str
    csrf: str
    expires_at: float


def session_key(digest: str) -> str:
    return f"session:{digest}"


def sessions_key(tenant: str, name: str) -> str:
    return f"{user_key(tenant, name)}:sessions"


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def csrf_ok(session: Session, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(session.csrf, header or "")


class SessionStore:
    def __init__(self, redis: Any, policy: SessionPolicy | None = None) -> None:
        self.redis = redis
        self.policy = policy or SessionPolicy()

    async def create(self, tenant: str, user: str, stage: str, now: float) -> tuple[str, Session]:
        """(the cookie value, the session)."""
        sid = secrets.token_hex(8)
        cookie = f"{sid}.{secrets.token_urlsafe(32)}"
        digest = _digest(cookie)
        session = Session(sid, tenant, user, stage, secrets.token_urlsafe(32), now + self.policy.max_seconds)
        record = {"id": sid, "tenant": tenant, "user": user, "stage": stage, "csrf": session.csrf,
                  "created_at": f"{now:.3f}", "expires_at": f"{session.expires_at:.3f}", "last_seen": f"{now:.3f}"}
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(session_key(digest), mapping=record)
        pipe.expire(session_key(digest), self._ttl(session, now))
        pipe.hset(sessions_key(tenant, user), sid, digest)
        await pipe.execute()
        return cookie, session

    def _ttl(self, session: Session, now: float) -> int:
        return max(1, int(min(self.policy.idle_seconds, session.expires_at - now)) + 1)

    async def get(self, cookie: str, now: float) -> Session | None:
        """The live session behind a cookie, its idle clock restarted; None if unknown, expired or revoked."""
        if not cookie or "." not in cookie or len(cookie) > 200:
            return None
        digest = _digest(cookie)
        record = await self.redis.hgetall(session_key(digest))
        if not record.get("tenant") or not record.get("user"):
            return None
        session = Session(record["id"], record["tenant"], record["user"], record.get("stage", ""),
                          record.get("csrf", ""), float(record.get("expires_at") or 0))
        last_seen = float(record.get("last_seen") or 0)
        if now >= session.expires_at or now - last_seen >= self.policy.idle_seconds:
            await self._delete(session, digest)
            return None
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(session_key(digest), "last_seen", f"{now:.3f}")
        pipe.expire(session_key(digest), self._ttl(session, now))
        await pipe.execute()
        return session

    async def principal(self, session: Session) -> Principal | None:
        """Who the session acts as: read from the user record at each request, like a token."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(user_key(session.tenant, session.user))
        pipe.exists(tenant_key(session.tenant))
        user, tenant_exists = await pipe.execute()
        if not user or not tenant_exists or user.get("disabled") == "1" or user.get("role") not in ROLES:
            return None
        return Principal(tenant=session.tenant, user=session.user, role=user["role"], token_id=f"session:{session.id}")

    async def _delete(self, session: Session, digest: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(session_key(digest))
        pipe.hdel(sessions_key(session.tenant, session.user), session.id)
        await pipe.execute()

    async def revoke(self, tenant: str, user: str, sid: str) -> bool:
        """End one session of a user of `tenant` (only that tenant's index can name it)."""
        digest = await self.redis.hget(sessions_key(tenant, user), sid)
        if digest is None:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(session_key(digest))
        pipe.hdel(sessions_key(tenant, user), sid)
        await pipe.execute()
        return True

    async def revoke_all(self, tenant: str, user: str) -> int:
        index = await self.redis.hgetall(sessions_key(tenant, user))
        if not index:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        for digest in index.values():
            pipe.delete(session_key(digest))
        pipe.delete(sessions_key(tenant, user))
        await pipe.execute()
        return len(index)

    async def list(self, tenant: str, user: str) -> list[dict[str, str]]:
        index = await self.redis.hgetall(sessions_key(tenant, user))
        out = []
        for sid, digest in sorted(index.items()):
            record = await self.redis.hgetall(session_key(digest))
            if record:
                out.append({k: record[k] for k in ("id", "stage", "created_at", "expires_at", "last_seen")})
            else:
                await self.redis.hdel(sessions_key(tenant, user), sid)  # expired: tidy the index
        return out
