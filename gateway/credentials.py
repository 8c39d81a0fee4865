"""Passwords and TOTP second factors of people who sign in to the console (pure: no Redis, no clock read).

Passwords are hashed with Argon2id (argon2-cffi's defaults: RFC 9106 low-memory profile). TOTP is RFC 6238
(30 s steps, 6 digits, SHA-1: what every authenticator app reads from an otpauth URI). A code is accepted
for the step before, the current one and the one after (clock drift of a phone), and only for a step later
than the last one accepted, so a code seen over a shoulder cannot be replayed. Recovery codes have 50 random
bits each; only their SHA-256 is stored (full entropy, and sign-in is rate limited, so no stretching needed).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import re
import secrets
from base64 import b64encode

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

PASSWORD_MIN = 12
PASSWORD_MAX = 256
STEP_SECONDS = 30
ISSUER = "Compliance dialer"
RECOVERY_CODES = 10

_hasher = PasswordHasher()  # type Argon2id
_TOTP_CODE = re.compile(r"^\d{6}$")
_RECOVERY = re.compile(r"^[a-z2-7]{5}-?[a-z2-7]{5}$")


# The rule a refused password breaks, as figures (API errors carry them: the console words them).
PASSWORD_RULE = {"min": PASSWORD_MIN, "max": PASSWORD_MAX}


def password_problem(password: str) -> str | None:
    """Why a new password is refused, in words, or None."""
    if len(password) < PASSWORD_MIN:
        return f"use at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"use at most {PASSWORD_MAX} characters"
    if password.strip() != password:
        return "no spaces at the start or end"
    return None


@functools.cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so an unknown account costs the same time as a wrong password.

    Made on first use, not at import: every `dialer` command imports this module, and an Argon2id hash costs
    about 0.2 CPU-seconds that most commands never need."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches; a missing or damaged hash matches nothing (and costs the same time)."""
    try:
        if not stored:
            _hasher.verify(_dummy_hash(), password)
            return False
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    return pyotp.random_base32()  # 160 bits


def otpauth_uri(secret: str, account: str, tenant: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=f"{account} ({tenant})", issuer_name=ISSUER)


def qr_svg_data_uri(text: str) -> str:
    """The text as a QR code, an SVG data URI for an <img> (the page's CSP allows data: images, no script)."""
    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="svg", scale=5, border=2, xmldecl=False)
    return "data:image/svg+xml;base64," + b64encode(buffer.getvalue()).decode()


def totp_step(secret: str, code: str, now: float, last_step: int) -> int | None:
    """The time step `code` belongs to (within one step of `now`, later than `last_step`), or None."""
    code = code.strip().replace(" ", "")
    if not _TOTP_CODE.match(code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now // STEP_SECONDS)
    for step in (current - 1, current, current + 1):
        if step > last_step and hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def is_recovery_code(code: str) -> bool:
    return bool(_RECOVERY.match(code.strip().lower()))


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    codes = []
    for _ in range(n):
        raw = "".join(secrets.choice(alphabet) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def recovery_hash(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()
