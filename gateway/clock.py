"""The gateway's "now" is Redis's clock, as the engine's is (dialer/runtime/clockguard.py).

Every dialer process and the gateway share one Redis, so its `TIME` is the one clock they agree on. A gateway
machine whose clock is off must neither answer a what-if gate check at the wrong hour ("callable" at 07:00
believing it is 10:00) nor stamp an opt-out or a consent with a time that disagrees with the engine's.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from gateway.routing import redis_of


async def now(request: web.Request) -> datetime:
    """Redis's clock (TIME), as an aware UTC datetime. Redis down raises, which the gateway answers with 503."""
    seconds, micros = await redis_of(request).time()
    return datetime.fromtimestamp(int(seconds) + int(micros) / 1e6, UTC)


async def instant(request: web.Request, value: str | None) -> datetime:
    """An instant the client gave (validated ISO 8601 text), or now on Redis's clock."""
    if not value:
        return await now(request)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
