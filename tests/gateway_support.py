"""Shared set-up for the gateway tests: a real app on a real Redis, two tenants, one token per role."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from dialer import redisconn
from dialer.config import load_config
from gateway.app import make_app
from gateway.auth import ROLES, AuthStore

TENANTS = ("acme", "globex")


@dataclass
class Gateway:
    client: TestClient
    redis: Any
    redis_url: str = ""
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, role) -> token

    def auth(self, tenant: str = "acme", role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[(tenant, role)]}"}

    async def ensure_list(self, tenant: str, list_id: str) -> None:
        """A campaign may only name lists that exist (issue 16): import a small one unless it is there."""
        if not await self.redis.sismember(f"t:{{{tenant}}}:lists", list_id):
            imported_list(self.redis_url, tenant, list_id)

    async def create_campaign(self, tenant: str = "acme", **config: Any) -> dict[str, Any]:
        body = {"name": "Spring offer", **config}
        resp = await self.client.post("/v1/campaigns", json=body, headers=self.auth(tenant, "supervisor"))
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def ready_campaign(self, tenant: str = "acme") -> dict[str, Any]:
        await self.ensure_list(tenant, "l1")
        return await self.create_campaign(tenant, caller_id="+33162000000", seller_name="Acme SAS", lists=["l1"],
                                          queue="sales")


SECRET_KEY = "test-secret-key-for-the-gateway"


async def start_gateway(redis_url: str, **env: str) -> Gateway:
    # the record (docs/record.md) in a directory of this gateway's own, never the user's data directory
    record_dir = tempfile.mkdtemp(prefix="dialer-record-")
    config = load_config(env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY,
                              "DIALER_GATEWAY_REGISTRY_TENANTS": "acme", "DIALER_GATEWAY_OPERATOR_TENANTS": "acme",
                              "DIALER_RECORD_URL": f"sqlite:///{record_dir}/record.db", **env})
    redis = redisconn.connect_async(redis_url, decode_responses=True)  # a Redis Cluster too (test_redis_cluster)
    store = AuthStore(redis)
    gateway = Gateway(client=TestClient(TestServer(make_app(config, redis))), redis=redis, redis_url=redis_url)
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


SAMPLE_LIST = "phone,first_name,country\n+33145678901,Ann,FR\n+33145678902,Bob,FR\nnot a number,Eve,FR\n"


def imported_list(redis_url: str, tenant: str, list_id: str, text: str = SAMPLE_LIST, *, run: bool = True,
                  campaign: str | None = None) -> str:
    """Import `text` into a list the way a worker would (inline), or only register it (run=False)."""
    import tempfile

    from dialer.contacts.jobs import create_import, run_import_inline

    client = redisconn.connect(redis_url)
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
        fh.write(text)
    try:
        ticket = create_import(client, tenant, fh.name, list_id, region="FR", campaign=campaign)
        if run:
            run_import_inline(client, tenant, ticket.import_id)
        return ticket.import_id
    finally:
        client.close()


async def uploaded_registry(gateway: Gateway, tenant: str, name: str = "bloctel",
                            text: str = "0145678901\n0145678903\n") -> str:
    """Upload a registry file through the API (queued, not run); returns the job id."""
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("file", text.encode(), filename="bloctel.txt", content_type="text/plain")
    resp = await gateway.client.post(f"/v1/registries/{name}/imports", data=form, headers=gateway.auth(tenant))
    assert resp.status == 202, await resp.text()
    return (await resp.json())["id"]


async def audit_events(gateway: Gateway, tenant: str) -> list[dict[str, Any]]:
    """The gateway's events in the tenant's audit chain, oldest first: {kind, action, actor, token, **details}."""
    import asyncio

    from dialer.audit import AuditLog

    def read() -> list[dict[str, Any]]:
        client = redisconn.connect(gateway.redis_url)
        try:
            return [{"kind": e.kind, "actor": e.actor, **e.payload} for e in AuditLog(client).entries(tenant)
                    if "action" in e.payload]
        finally:
            client.close()

    return await asyncio.to_thread(read)


async def audit_entries(gateway: Gateway, tenant: str) -> list[Any]:
    """Every entry of the tenant's audit chain (dialer.audit.AuditEntry), oldest first."""
    import asyncio

    from dialer.audit import AuditLog

    def read() -> list[Any]:
        client = redisconn.connect(gateway.redis_url)
        try:
            return list(AuditLog(client).entries(tenant))
        finally:
            client.close()

    return await asyncio.to_thread(read)
