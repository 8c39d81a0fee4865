"""Shared set-up for the gateway tests: a real app on a real Redis, two tenants, one token per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from dialer.config import load_config
from gateway.app import make_app
from gateway.auth import ROLES, AuthStore

TENANTS = ("acme", "globex")


@dataclass
class Gateway:
    client: TestClient
    redis: Any
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, role) -> token

    def auth(self, tenant: str = "acme", role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[(tenant, role)]}"}

    async def create_campaign(self, tenant: str = "acme", **config: Any) -> dict[str, Any]:
        body = {"name": "Spring offer", **config}
        resp = await self.client.post("/v1/campaigns", json=body, headers=self.auth(tenant, "supervisor"))
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def ready_campaign(self, tenant: str = "acme") -> dict[str, Any]:
        return await self.create_campaign(tenant, caller_id="+33145678900", seller_name="Acme SAS", lists=["l1"],
                                          queue="sales")


async def start_gateway(redis_url: str) -> Gateway:
    config = load_config(env={"DIALER_REDIS_URL": redis_url})
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = AuthStore(redis)
    gateway = Gateway(client=TestClient(TestServer(make_app(config, redis))), redis=redis)
    for tenant in TENANTS:
        await store.create_tenant(tenant, tenant.capitalize())
        for role in ROLES:
            await store.create_user(tenant, f"{role}-user", role)
            token, _ = await store.create_token(tenant, f"{role}-user")
            gateway.tokens[(tenant, role)] = token
    await gateway.client.start_server()
    return gateway


async def stop_gateway(gateway: Gateway) -> None:
    await gateway.client.close()
    await gateway.redis.aclose()
