"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure: no I/O, time passed in.

A delivery carries three headers: webhook-id (the idempotency id: the same on every retry of one
message), webhook-timestamp (integer seconds of this attempt) and webhook-signature, a space-separated
list of "v1,<base64 HMAC-SHA256 of 'id.timestamp.body'>", one per secret that is valid now (two while a
secret is being rotated). A receiver accepts a delivery when any listed signature matches one of its
secrets and the timestamp is within its replay window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as secrets_lib
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
REPLAY_WINDOW_SECONDS = 300  # Standard Webhooks' suggested tolerance, both ways


class VerificationError(ValueError):
    """A delivery that must not be trusted. The message says why, for the receiver's log."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets_lib.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    if not secrets:
        raise ValueError("no valid secret to sign with")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }


def verify(secrets: Sequence[str], received: Mapping[str, str], body: bytes, now: int,
           tolerance: int = REPLAY_WINDOW_SECONDS) -> str:
    """Check a delivery; return its webhook-id or raise VerificationError. `received` is case-insensitive
    if the caller's mapping is (aiohttp's is); plain dicts must use lower-case names."""
    msg_id = received.get("webhook-id")
    stamp = received.get("webhook-timestamp")
    listed = received.get("webhook-signature")
    if not msg_id or not stamp or not listed:
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise VerificationError("webhook-timestamp is not an integer") from None
    if timestamp < now - tolerance:
        raise VerificationError("timestamp too old (outside the replay window)")
    if timestamp > now + tolerance:
        raise VerificationError("timestamp too far in the future")
    offered = [part.partition(",")[2] for part in listed.split() if part.startswith("v1,")]
    for secret in secrets:
        expected = sign(secret, msg_id, timestamp, body).partition(",")[2]
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return msg_id
    raise VerificationError("no matching signature")
