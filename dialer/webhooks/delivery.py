"""The delivery worker: fans outbox events out to endpoints, then sends each queue's head, signed.

A small asyncio loop (one per `dialer webhooks` process; several may run: claims are leased in Redis).
Time and randomness are injected (`clock`, `jitter`) so tests drive them; the HTTP client is real.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from dialer.webhooks import queue as q
from dialer.webhooks.addresses import AddressCheckingResolver, AddressPolicy, AddressRefused, url_problem
from dialer.webhooks.backoff import RetryPolicy
from dialer.webhooks.endpoints import Endpoint, EndpointStore
from dialer.webhooks.events import endpoints_key, outbox_key
from dialer.webhooks.sealing import SecretBox
from dialer.webhooks.signing import headers as signed_headers

log = logging.getLogger(__name__)

CONSUMER = "worker"
TENANTS = "tenants"  # set of tenant ids (gateway/auth.py)


def fanout_lock(tenant: str) -> str:
    return f"t:{{{tenant}}}:wh:fanout:lock"
LEASE_MARGIN = 50.0  # a claimed head is tried again this long after its attempt could have timed out
BATCH = 100
FANOUT_BATCHES = 10


@dataclass
class AttemptResult:
    ok: bool
    status: int | None
    error: str


class DeliveryWorker:
    def __init__(self, redis: Any, box: SecretBox, policy: AddressPolicy, retry: RetryPolicy | None = None,
                 clock: Callable[[], float] = time.time, jitter: Callable[[], float] = random.random,
                 concurrency: int = 20) -> None:
        """redis: asyncio client with decode_responses=True."""
        self.redis = redis
        self.box = box
        self.policy = policy
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.jitter = jitter
        self.endpoints = EndpointStore(redis, box, policy)
        self.scripts = q.Scripts(redis)
        self.limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DeliveryWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = AddressCheckingResolver(self.policy)
            # No pooled keep-alive: each attempt resolves (and checks) the name again.
            connector = aiohttp.TCPConnector(resolver=resolver, force_close=True, use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    # --- fan-out ---------------------------------------------------------------------------------

    async def _ensure_group(self, outbox: str) -> None:
        try:
            await self.redis.xgroup_create(outbox, q.FANOUT_GROUP, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: exists already
            if "BUSYGROUP" not in str(exc):
                raise

    async def _webhook_tenants(self) -> list[str]:
        """Tenants with endpoints, or with an outbox left (endpoints deleted since): the ones to fan out and try."""
        found = []
        for tenant in sorted(await self.redis.smembers(TENANTS)):
            if await self.redis.exists(endpoints_key(tenant), outbox_key(tenant), q.due_key(tenant)):
                found.append(tenant)
        return found

    async def fan_out(self, tenants: list[str] | None = None) -> int:
        """Turn outbox events into per-endpoint deliveries. Idempotent per (event, endpoint), so an event
        read again after a crash (pending, not yet acknowledged) is not queued twice."""
        done = 0
        for tenant in await self._webhook_tenants() if tenants is None else tenants:
            outbox, lock = outbox_key(tenant), fanout_lock(tenant)
            await self._ensure_group(outbox)
            # One fan-out at a time across processes: two would interleave their batches and could queue one
            # contact's events out of order. The lock expires on its own if its holder dies.
            token = repr(self.jitter())
            if not await self.redis.set(lock, token, nx=True, px=30_000):
                continue
            try:
                done += await self._fan_out_batches(outbox)
            finally:
                if await self.redis.get(lock) == token:
                    await self.redis.delete(lock)
        return done

    async def _fan_out_batches(self, outbox: str) -> int:
        done = 0
        # First the unacknowledged entries a crashed fan-out left, then new ones, a few batches per pass.
        for start in ("0", *[">"] * FANOUT_BATCHES):
            replies = await self.redis.xreadgroup(q.FANOUT_GROUP, CONSUMER, {outbox: start}, count=BATCH)
            read = 0
            for _, entries in replies or []:
                for entry_id, fields in entries:
                    if fields:
                        await self._fan_out_one(fields)
                    await self.redis.xack(outbox, q.FANOUT_GROUP, entry_id)
                    await self.redis.xdel(outbox, entry_id)
                    read += 1
            done += read
            if start == ">" and read < BATCH:
                break
        return done

    async def _fan_out_one(self, event: dict[str, str]) -> None:
        tenant, now = event["tenant"], self.clock()
        for endpoint in await self.endpoints.list(tenant):
            if not endpoint.wants(event["type"]):
                continue
            fields = {"tenant": tenant, "endpoint": endpoint.id, "event_id": event["id"], "type": event["type"],
                      "key": event["key"], "body": event["body"], "created_at": repr(now), "attempts": "0",
                      "state": "pending"}
            flat = [x for pair in fields.items() for x in pair]
            await self.scripts.enqueue(
                keys=[q.delivery_key(tenant, endpoint.id, event["id"]), q.queue_key(tenant, endpoint.id, event["key"]),
                      q.due_key(tenant)],
                args=[q.member(tenant, endpoint.id, event["key"]), repr(now), event["id"], *flat])

    # --- delivery --------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One pass: fan out, then try due queue heads once. Returns events fanned out + heads tried (0: idle)."""
        tenants = await self._webhook_tenants()
        fanned = await self.fan_out(tenants)
        now = self.clock()
        due = []
        for tenant in tenants:
            due += await self.redis.zrangebyscore(q.due_key(tenant), "-inf", repr(now), start=0, num=BATCH)
        results = await asyncio.gather(*(self._try_queue(m, now) for m in due))
        return sum(results) + fanned

    async def run(self, stop: asyncio.Event, idle: float = 0.5) -> None:
        while not stop.is_set():
            try:
                tried = await self.run_once()
            except Exception:  # Redis away: wait and try again; nothing is lost (it is all in Redis)
                log.exception("webhook delivery pass failed")
                tried = 0
            if not tried:
                try:
                    await asyncio.wait_for(stop.wait(), idle)
                except TimeoutError:
                    pass

    async def _try_queue(self, member: str, now: float) -> int:
        tenant, endpoint_id, key = q.split_member(member)
        qkey = q.queue_key(tenant, endpoint_id, key)
        lease_until = now + self.retry.timeout + LEASE_MARGIN
        due = q.due_key(tenant)
        head = await self.scripts.claim(keys=[qkey, due], args=[member, repr(now), repr(lease_until)])
        if not head:
            return 0
        dkey = q.delivery_key(tenant, endpoint_id, head)
        delivery = await self.redis.hgetall(dkey)
        endpoint = await self.endpoints.get(tenant, endpoint_id)
        if not delivery or endpoint is None:
            # The endpoint was deleted (its deliveries go with it) or the record is gone: skip the head.
            await self.redis.delete(dkey)
            await self.scripts.advance(keys=[qkey, due], args=[member, repr(self.clock()), head])
            return 1
        async with self.limit:
            result = await self.attempt(endpoint, delivery)
        await self._settle(tenant, endpoint_id, member, qkey, dkey, head, delivery, result)
        return 1

    async def attempt(self, endpoint: Endpoint, delivery: dict[str, str]) -> AttemptResult:
        """One signed POST. Never follows a redirect; refuses forbidden addresses before connecting."""
        problem = url_problem(endpoint.url, self.policy)
        if problem:
            return AttemptResult(False, None, f"refused: {problem}")
        body = delivery["body"].encode()
        stamp = int(self.clock())
        secrets = endpoint.signing_secrets(self.box, datetime.fromtimestamp(self.clock(), UTC))
        sent = {**signed_headers(secrets, delivery["event_id"], stamp, body), "content-type": "application/json",
                "user-agent": "dialer-webhooks/1"}
        try:
            timeout = aiohttp.ClientTimeout(total=self.retry.timeout)
            async with self.session().post(endpoint.url, data=body, headers=sent, allow_redirects=False,
                                           timeout=timeout) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return AttemptResult(True, resp.status, "")
                if 300 <= resp.status < 400:
                    return AttemptResult(False, resp.status, "redirect not followed")
                return AttemptResult(False, resp.status, f"HTTP {resp.status}")
        except AddressRefused as exc:
            return AttemptResult(False, None, f"refused: {exc}")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                return AttemptResult(False, None, f"refused: {exc.os_error}")
            return AttemptResult(False, None, "connection failed")
        except TimeoutError:
            return AttemptResult(False, None, "timed out")
        except aiohttp.ClientError as exc:
            return AttemptResult(False, None, f"failed: {type(exc).__name__}")

    async def _settle(self, tenant: str, endpoint_id: str, member: str, qkey: str, dkey: str, head: str,
                      delivery: dict[str, str], result: AttemptResult) -> None:
        now = self.clock()
        attempts = int(delivery.get("attempts", "0")) + 1
        first = float(delivery.get("first_attempt_at") or now)
        record = {"attempts": str(attempts), "first_attempt_at": repr(first), "last_at": repr(now),
                  "last_status": str(result.status or ""), "last_error": result.error}
        if result.ok:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(dkey, mapping={**record, "state": "delivered"})
                pipe.expire(dkey, q.DELIVERED_TTL)
                await pipe.execute()
            await self.scripts.advance(keys=[qkey, q.due_key(tenant)], args=[member, repr(now), head])
            return
        if self.retry.gives_up(first, now):
            log.warning("webhook %s to %s dead-lettered after %d attempts: %s", head, endpoint_id, attempts,
                        result.error)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(dkey, mapping={**record, "state": "dead"})
                pipe.zadd(q.dead_key(tenant), {f"{endpoint_id}:{head}": now})
                await pipe.execute()
            await self.scripts.advance(keys=[qkey, q.due_key(tenant)], args=[member, repr(now), head])
            return
        await self.redis.hset(dkey, mapping=record)
        wait = self.retry.delay(attempts, self.jitter())
        await self.redis.zadd(q.due_key(tenant), {member: now + wait}, xx=True)


async def redeliver(redis: Any, tenant: str, endpoint_id: str, event_id: str, now: float) -> bool:
    """Put a dead-lettered delivery back at the tail of its queue; False when there is no such dead one."""
    dkey = q.delivery_key(tenant, endpoint_id, event_id)
    key = await redis.hget(dkey, "key")
    if key is None:
        return False
    scripts = q.Scripts(redis)
    done = await scripts.redeliver(
        keys=[dkey, q.queue_key(tenant, endpoint_id, key), q.due_key(tenant), q.dead_key(tenant)],
        args=[q.member(tenant, endpoint_id, key), repr(now), event_id, f"{endpoint_id}:{event_id}"])
    return bool(done)


async def dead_letters(redis: Any, tenant: str, limit: int = 100) -> list[dict[str, str]]:
    """The tenant's dead-lettered deliveries, oldest first, without bodies."""
    members = await redis.zrange(q.dead_key(tenant), 0, limit - 1)
    out = []
    for value in members:
        endpoint_id, _, event_id = value.partition(":")
        record = await redis.hgetall(q.delivery_key(tenant, endpoint_id, event_id))
        if record:
            out.append({k: record.get(k, "") for k in ("endpoint", "event_id", "type", "attempts", "last_status",
                                                       "last_error", "last_at")})
    return out
