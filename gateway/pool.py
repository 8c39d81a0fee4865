"""The gateway's Redis clients, sized from settings, and what a request gets when Redis cannot serve it.

Requests share one asyncio pool of `gateway.redis_max_connections` connections. A request that finds every
connection busy waits up to `gateway.redis_wait_seconds` for one to come back (a queue, not an error); past
that the gateway is saturated and answers 503 `busy` with `Retry-After`. Live streams (Server-Sent Events)
hold a connection each for as long as they stay open, so they take theirs from a second pool of
`gateway.max_live_streams`: a room full of dashboards can never starve the API, and one stream too many is a
503 too. Redis refusing connections, timing out or loading its data is 503 `redis_unavailable`, never a 500
with a traceback; it is logged once per few seconds (with the count), not once per request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rx

from dialer.config import Config
from dialer.redisconn import connect_async, is_cluster_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0  # seconds to open a connection: a black-holed Redis must not hang every request
COMMAND_TIMEOUT = 15.0  # seconds for one reply (the gateway sends no blocking commands on this pool)
RETRY_AFTER_BUSY = 1
RETRY_AFTER_DOWN = 5


def request_client(config: Config) -> aioredis.Redis:
    if is_cluster_url(config.redis_url):
        # A cluster client keeps one pool per node and has no blocking pool: past max_connections on a node a
        # request gets MaxConnectionsError at once (503 busy) instead of waiting gateway.redis_wait_seconds.
        return connect_async(config.redis_url, decode_responses=True,
                             max_connections=config["gateway.redis_max_connections"],
                             socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=COMMAND_TIMEOUT)
    pool = aioredis.BlockingConnectionPool.from_url(
        config.redis_url, decode_responses=True, max_connections=config["gateway.redis_max_connections"],
        timeout=config["gateway.redis_wait_seconds"], socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT)
    return aioredis.Redis(connection_pool=pool)


def live_client(config: Config) -> aioredis.Redis:
    # Not blocking: a stream over the limit is refused at once (MaxConnectionsError) rather than queued.
    if is_cluster_url(config.redis_url):
        return connect_async(config.redis_url, decode_responses=True,
                             max_connections=config["gateway.max_live_streams"], socket_connect_timeout=CONNECT_TIMEOUT)
    pool = aioredis.ConnectionPool.from_url(
        config.redis_url, decode_responses=True, max_connections=config["gateway.max_live_streams"],
        socket_connect_timeout=CONNECT_TIMEOUT)
    return aioredis.Redis(connection_pool=pool)


def is_saturation(exc: BaseException) -> bool:
    """The pool had no free connection in time (ours), as opposed to Redis being unreachable."""
    return isinstance(exc, rx.MaxConnectionsError) or (
        isinstance(exc, rx.ConnectionError) and "No connection available" in str(exc))


UNAVAILABLE = (rx.ConnectionError, rx.TimeoutError, rx.BusyLoadingError, rx.ReadOnlyError)


class RateLimitedLog:
    """One log line per `every` seconds for a repeating condition, with how many times it happened."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: Any) -> None:
        self._count[key] = self._count.get(key, 0) + 1
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.every:
            count, self._count[key] = self._count[key], 0
            self._last[key] = now
            log.warning(message + " (%d request(s) answered 503 since the last such line)", *args, count)


unavailable_log = RateLimitedLog()
