"""A tenant's webhook endpoints, in Redis (asyncio client, decode_responses=True).

  t:{T}:wh:endpoints   hash endpoint id -> JSON record: id, url, events, description, created_at, secrets
                       (secrets: [{"sealed": ..., "expires_at": null | iso}], newest first; see sealing.py)

The hash existing is what makes facts queue events for the tenant (events.py), so the last endpoint
deleted stops the outbox for that tenant.

Rotation: a new secret is added in front; the previous ones keep signing until their expires_at
(default 24 h), so a receiver can switch at any time in that window without refusing a delivery.
"""

from __future__ import annotations

import json
import secrets as secrets_lib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import WatchError

from dialer.webhooks.addresses import AddressPolicy, url_problem
from dialer.webhooks.events import EVENT_TYPES, endpoints_key
from dialer.webhooks.sealing import SecretBox
from dialer.webhooks.signing import new_secret

MAX_ENDPOINTS = 20
DEFAULT_OVERLAP = timedelta(hours=24)


class EndpointError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Endpoint:
    id: str
    tenant: str
    url: str
    events: tuple[str, ...]
    description: str
    created_at: str
    sealed: tuple[tuple[str, str | None], ...]  # (sealed secret, expires_at), newest first

    def public(self) -> dict[str, Any]:
        """What the API shows: never a secret, only how many are valid and until when."""
        return {"id": self.id, "url": self.url, "events": list(self.events), "description": self.description,
                "created_at": self.created_at,
                "secrets": [{"expires_at": expires} for _, expires in self.sealed]}

    def signing_secrets(self, box: SecretBox, now: datetime) -> list[str]:
        return [box.open(sealed) for sealed, expires in self.sealed if expires is None or _instant(expires) > now]

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


def _parse(tenant: str, raw: str) -> Endpoint:
    data = json.loads(raw)
    return Endpoint(id=data["id"], tenant=tenant, url=data["url"], events=tuple(data["events"]),
                    description=data.get("description", ""), created_at=data["created_at"],
                    sealed=tuple((s["sealed"], s.get("expires_at")) for s in data["secrets"]))


def _dump(endpoint: Endpoint) -> str:
    return json.dumps({"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events),
                       "description": endpoint.description, "created_at": endpoint.created_at,
                       "secrets": [{"sealed": s, "expires_at": e} for s, e in endpoint.sealed]})


def check_events(events: list[str]) -> tuple[str, ...]:
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise EndpointError("events", f"unknown event type {unknown[0]} (known: {', '.join(EVENT_TYPES)})")
    if not events:
        raise EndpointError("events", "subscribe to at least one event type")
    return tuple(dict.fromkeys(events))


class EndpointStore:
    def __init__(self, redis: Any, box: SecretBox, policy: AddressPolicy) -> None:
        self.redis = redis
        self.box = box
        self.policy = policy

    async def create(self, tenant: str, url: str, events: list[str], description: str = "",
                     at: datetime | None = None) -> tuple[Endpoint, str]:
        """Return (the endpoint, its secret: shown once)."""
        problem = url_problem(url, self.policy)
        if problem:
            raise EndpointError("url", problem)
        kinds = check_events(events)
        if await self.redis.hlen(endpoints_key(tenant)) >= MAX_ENDPOINTS:
            raise EndpointError("url", f"a tenant has at most {MAX_ENDPOINTS} endpoints")
        secret = new_secret()
        endpoint = Endpoint(id="ep_" + secrets_lib.token_hex(8), tenant=tenant, url=url, events=kinds,
                            description=description, created_at=_stamp(at or datetime.now(UTC)),
                            sealed=((self.box.seal(secret), None),))
        await self.redis.hset(endpoints_key(tenant), endpoint.id, _dump(endpoint))
        return endpoint, secret

    async def get(self, tenant: str, endpoint_id: str) -> Endpoint | None:
        raw = await self.redis.hget(endpoints_key(tenant), endpoint_id)
        return None if raw is None else _parse(tenant, raw)

    async def list(self, tenant: str) -> list[Endpoint]:
        raw = await self.redis.hgetall(endpoints_key(tenant))
        return sorted((_parse(tenant, v) for v in raw.values()), key=lambda e: (e.created_at, e.id))

    async def update(self, tenant: str, endpoint_id: str, *, url: str | None = None, events: list[str] | None = None,
                     description: str | None = None) -> Endpoint | None:
        """Change the URL, subscriptions or description (secrets untouched). None when there is no such endpoint."""
        if url is not None and (problem := url_problem(url, self.policy)):
            raise EndpointError("url", problem)
        kinds = check_events(events) if events is not None else None
        return await self._replace(tenant, endpoint_id, lambda old: Endpoint(
            id=old.id, tenant=tenant, url=url or old.url, events=kinds or old.events,
            description=old.description if description is None else description,
            created_at=old.created_at, sealed=old.sealed))

    async def _replace(self, tenant: str, endpoint_id: str, change: Callable[[Endpoint], Endpoint]) -> Endpoint | None:
        """Read, change and write one endpoint atomically (read again if another change lands between).
        None when there is no such endpoint."""
        key = endpoints_key(tenant)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, endpoint_id)
                    if raw is None:
                        await pipe.unwatch()
                        return None
                    endpoint = change(_parse(tenant, raw))
                    pipe.multi()
                    pipe.hset(key, endpoint_id, _dump(endpoint))
                    await pipe.execute()
                    return endpoint
                except WatchError:
                    continue

    async def delete(self, tenant: str, endpoint_id: str) -> bool:
        return bool(await self.redis.hdel(endpoints_key(tenant), endpoint_id))

    async def rotate(self, tenant: str, endpoint_id: str, overlap: timedelta = DEFAULT_OVERLAP,
                     at: datetime | None = None) -> tuple[Endpoint, str] | None:
        """A new secret; the current ones stay valid for `overlap`. Returns (endpoint, new secret) or None."""
        now = at or datetime.now(UTC)
        secret = new_secret()

        def rotated(old: Endpoint) -> Endpoint:
            until = _stamp(now + overlap)
            kept = [(s, e if e is not None and _instant(e) < now + overlap else until)
                    for s, e in old.sealed if e is None or _instant(e) > now]
            return Endpoint(id=old.id, tenant=tenant, url=old.url, events=old.events, description=old.description,
                            created_at=old.created_at, sealed=((self.box.seal(secret), None), *kept))

        endpoint = await self._replace(tenant, endpoint_id, rotated)
        return None if endpoint is None else (endpoint, secret)
