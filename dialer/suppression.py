"""The suppression list: keyed hashes of erased numbers, so an erased person is never called or imported again.

Erasure (dialer/privacy.py) removes a person's number from every store, but we must still recognise the
number if it comes back (a re-import, a campaign list bought elsewhere): otherwise erasing a person who
opted out would make them callable again. So erasure keeps only

    ref = HMAC-SHA256(security.secret_key, E.164), first 32 hex digits

which is the same person reference the audit trail uses (dialer.audit.AuditLog.person_ref). Without the
key nobody can enumerate phone numbers to reverse it; with the key we can only test a number we already
hold. The key is required: without it we refuse to erase (fail closed) rather than keep the raw number.

Keys (per tenant):
  t:{T}:suppression       hash ref -> JSON {at, reason, actor, optouts: [...]} (no number, no name)
  t:{T}:suppression:key   fingerprint of the key the refs were made with: a process holding another key
                          cannot check the list, and says so instead of letting numbers through
  t:{T}:suppression:ver   bumped with every entry written: an import staging a chunk against a snapshot of the
                          list sees an erasure made meanwhile (dialer/contacts/staging.py)

Jobs that run without a Config (RQ imports) get the key from `configure()` (called by `dialer worker` and
the CLI at start) or, failing that, from the settings in the environment (DIALER_SECRET_KEY/DIALER_CONFIG).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import redis

from dialer.audit import iso

_FINGERPRINT_INPUT = b"dialer suppression list key check v1"
_process_key: bytes | None = None


class SuppressionUnavailable(Exception):
    """The tenant has suppressed numbers but this process cannot check them (no key, or another key)."""


def configure(secret_key: str | bytes) -> None:
    """Set the key jobs of this process use (dialer worker and CLI commands call it with security.secret_key)."""
    global _process_key
    _process_key = secret_key.encode() if isinstance(secret_key, str) else secret_key


def process_key() -> bytes:
    """The configured key, else security.secret_key from the environment's settings; b"" when unset."""
    if _process_key is not None:
        return _process_key
    try:
        from dialer.config import load_config

        return str(load_config()["security.secret_key"]).encode()
    except Exception:  # unreadable settings: no key; callers fail closed when they need one
        return b""


def suppression_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:suppression"


def fingerprint_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:suppression:key"


def version_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:suppression:ver"


def version(client: redis.Redis, tenant: str) -> int:
    """The list's version (read it before a snapshot: a change after the read is then seen by the next read)."""
    return int(client.get(version_key(tenant)) or 0)


def person_ref(key: bytes, e164: str) -> str:
    """Keyed hash of a number; identical to AuditLog.person_ref (same key, same truncation)."""
    return hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()[:32]


@lru_cache(maxsize=16)
def key_fingerprint(key: bytes) -> str:
    return hmac.new(key, _FINGERPRINT_INPUT, hashlib.sha256).hexdigest()[:16]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Suppression:
    """Read and write a tenant's suppression list. `secret_key`: security.secret_key (None: process_key())."""

    def __init__(self, client: redis.Redis, secret_key: str | bytes | None = None) -> None:
        self.redis = client
        if secret_key is None:
            secret_key = process_key()
        self.key = secret_key.encode() if isinstance(secret_key, str) else secret_key

    def require_key(self, what: str) -> None:
        if not self.key:
            raise SuppressionUnavailable(f"setting security.secret_key is required to {what}")

    def ref(self, e164: str) -> str:
        self.require_key("compute suppression hashes")
        return person_ref(self.key, e164)

    def queue_add(self, pipe: Any, tenant: str, e164: str, at: datetime, *, reason: str, actor: str,
                  optouts: Sequence[Mapping[str, Any]] = ()) -> str:
        """Queue the suppression of a number on the caller's pipeline (erasure writes it in its transaction).
        The entry keeps only what the law needs: when, why, by whom, and the person's opt-outs (dates,
        scope, source) as evidence that the objection was honoured."""
        ref = self.ref(e164)
        record = {"at": iso(at), "reason": reason, "actor": actor, "optouts": list(optouts)}
        pipe.hset(suppression_key(tenant), ref, json.dumps(record, sort_keys=True, separators=(",", ":")))
        pipe.set(fingerprint_key(tenant), key_fingerprint(self.key))
        pipe.incr(version_key(tenant))
        return ref

    def check_key(self, tenant: str) -> bool:
        """True when the list is empty (nothing to check), False when it has entries; raises when it has
        entries that this process cannot check."""
        count, stored = self.redis.hlen(suppression_key(tenant)), self.redis.get(fingerprint_key(tenant))
        if not count:
            return True
        self.require_key(f"check the {count} suppressed (erased) numbers of tenant {tenant}")
        if stored is not None and _s(stored) != key_fingerprint(self.key):
            raise SuppressionUnavailable(f"the suppression list of tenant {tenant} was written with another "
                                         "security.secret_key: numbers cannot be checked against it")
        return False

    def snapshot(self, tenant: str) -> frozenset[str]:
        """Every suppressed ref of the tenant (one read; an import checks a whole chunk against it)."""
        if self.check_key(tenant):
            return frozenset()
        return frozenset(_s(k) for k in self.redis.hkeys(suppression_key(tenant)))

    def contains_many(self, tenant: str, e164s: Sequence[str]) -> list[bool]:
        if not e164s or self.check_key(tenant):
            return [False] * len(e164s)
        found = self.redis.hmget(suppression_key(tenant), [self.ref(e) for e in e164s])
        return [value is not None for value in found]

    def contains(self, tenant: str, e164: str) -> bool:
        return self.contains_many(tenant, [e164])[0]

    def entry(self, tenant: str, e164: str) -> dict[str, Any] | None:
        if not self.key:
            return None
        raw = self.redis.hget(suppression_key(tenant), self.ref(e164))
        return None if raw is None else json.loads(raw)

    def count(self, tenant: str) -> int:
        return int(self.redis.hlen(suppression_key(tenant)))
