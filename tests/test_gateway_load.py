"""Issue 16 point 7 (and the outage part of point 9): the real gateway (`dialer serve`) under 200 concurrent
clients on a real redis-server never answers 500: its Redis pool is sized from settings, requests queue for a
free connection, a saturated gateway answers 503 `busy` with Retry-After, and Redis down is 503
`redis_unavailable` without a traceback in the log. Speed is measured in bench/gateway_load.py, not here."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from dialer.redisproc import RedisProcess
from gateway.auth import AuthStore
from tests.gateway_process import serve


async def _token(url: str) -> str:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = AuthStore(client)
    await store.create_tenant("acme")
    await store.create_user("acme", "boss", "admin")
    token, _ = await store.create_token("acme", "boss")
    await client.aclose()
    return token


async def _hammer(base: str, token: str, clients: int, each: int) -> tuple[Counter[int], list[dict[str, Any]]]:
    statuses: Counter[int] = Counter()
    refusals: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"Authorization": f"Bearer {token}"}) as session:
        async def client() -> None:
            for i in range(each):
                path = "/v1/me" if i % 2 == 0 else "/v1/campaigns"
                async with session.get(base + path) as resp:
                    statuses[resp.status] += 1
                    if resp.status != 200:
                        refusals.append({"status": resp.status, "retry_after": resp.headers.get("Retry-After"),
                                         "body": await resp.json()})

        await asyncio.gather(*[client() for _ in range(clients)])
    return statuses, refusals


def test_200_concurrent_clients_are_all_served(tmp_path: Path) -> None:
    with RedisProcess() as server:
        token = asyncio.run(_token(server.url))
        gateway = serve(server.url, tmp_path / "gateway.log", DIALER_GATEWAY_REDIS_WAIT_SECONDS=60)
        try:
            statuses, refusals = asyncio.run(_hammer(gateway.base, token, clients=200, each=5))
        finally:
            gateway.stop()
    assert statuses == {200: 1000}, refusals[:3]
    assert "Traceback" not in gateway.log()


def test_a_saturated_pool_answers_503_busy_with_retry_after_never_500(tmp_path: Path) -> None:
    with RedisProcess() as server:
        token = asyncio.run(_token(server.url))
        gateway = serve(server.url, tmp_path / "gateway.log", DIALER_GATEWAY_REDIS_MAX_CONNECTIONS=1,
                        DIALER_GATEWAY_REDIS_WAIT_SECONDS=0.001)
        try:
            statuses, refusals = asyncio.run(_hammer(gateway.base, token, clients=200, each=3))
        finally:
            gateway.stop()
    assert set(statuses) <= {200, 503} and statuses[503] > 0, statuses
    assert all(r["retry_after"] == "1" and r["body"]["error"]["code"] == "busy" for r in refusals), refusals[:3]
    log = gateway.log()
    assert "Traceback" not in log and "gateway saturated" in log
    assert log.count("gateway saturated") < statuses[503]  # one line per few seconds, not one per request


def test_redis_down_is_503_redis_unavailable_without_traceback(tmp_path: Path) -> None:
    server = RedisProcess().start()
    try:
        token = asyncio.run(_token(server.url))
        gateway = serve(server.url, tmp_path / "gateway.log")
        try:
            server.stop()
            statuses, refusals = asyncio.run(_hammer(gateway.base, token, clients=5, each=4))
        finally:
            gateway.stop()
    finally:
        server.cleanup()
    assert statuses == {503: 20}, statuses
    assert all(r["retry_after"] == "5" and r["body"]["error"]["code"] == "redis_unavailable" for r in refusals)
    log = gateway.log()
    assert "Traceback" not in log and "Redis unavailable" in log


@pytest.mark.parametrize("setting", ["DIALER_GATEWAY_REDIS_MAX_CONNECTIONS", "DIALER_GATEWAY_REDIS_WAIT_SECONDS"])
def test_pool_settings_are_checked(setting: str) -> None:
    from dialer.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=setting.lower().removeprefix("dialer_").replace("_", ".", 1)):
        load_config(env={setting: "0"})
