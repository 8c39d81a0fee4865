"""Failed authentications are rate-limited per client address and per token id.

Each failure (401 with a token presented: a request without one is not a guess) adds one to two counters
that expire WINDOW seconds after their first failure:
`gateway:authfail:addr:{address}` and, when the presented token has the shape of ours, `gateway:authfail:
token:{token id}` (the id is public; guessing the 256-bit secret behind it is what is being slowed). Once either
reaches `gateway.auth_failures_per_minute`, requests from that address or naming that token id get 429
`too_many_failures` with Retry-After, without their token being checked, until the window ends. Requests
that authenticate never count. The first 429 of a window is audited (gateway/audit_policy.py); the rest are
counted by the same counters.
"""

from __future__ import annotations

from typing import Any

WINDOW = 60


def addr_key(address: str) -> str:
    return f"gateway:authfail:addr:{address}"


def token_key(token_id: str) -> str:
    return f"gateway:authfail:token:{token_id}"


def _keys(address: str, token_id: str | None) -> list[str]:
    return [addr_key(address)] + ([token_key(token_id)] if token_id else [])


async def blocked(redis: Any, address: str, token_id: str | None, limit: int) -> int:
    """Seconds to wait when this address or token id is over the limit, else 0."""
    keys = _keys(address, token_id)
    pipe = redis.pipeline(transaction=False)  # not MGET: the keys are in different Redis Cluster slots
    for key in keys:
        pipe.get(key)
    counts = await pipe.execute()
    over = [key for key, count in zip(keys, counts, strict=True) if count is not None and int(count) >= limit]
    if not over:
        return 0
    pipe = redis.pipeline(transaction=False)
    for key in over:
        pipe.ttl(key)
    return max(1, *[int(t) for t in await pipe.execute() if t is not None and int(t) > 0])


async def failed(redis: Any, address: str, token_id: str | None, limit: int) -> bool:
    """Count one failure; True when this failure reached the limit (the moment to audit)."""
    pipe = redis.pipeline(transaction=False)
    for key in _keys(address, token_id):
        pipe.set(key, 0, ex=WINDOW, nx=True)  # the window starts at the first failure (EXPIRE NX needs Redis 7)
        pipe.incr(key)
    replies = await pipe.execute()
    return any(int(count) == limit for count in replies[1::2])
