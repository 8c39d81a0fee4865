"""`dialer tenant` and `dialer token` against a real Redis; the printed token works on the API."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from dialer.cli import main
from gateway.auth import AuthStore, token_hash


@pytest.fixture
def cli(redis_url, monkeypatch, capsys):
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.delenv("DIALER_CONFIG", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def authenticate(redis_url: str, token: str):
    async def go():
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await AuthStore(client).authenticate(token)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_tenant_and_token_lifecycle(cli, redis_url):
    assert cli("tenant", "create", "acme", "--name", "Acme SAS")[0] == 0
    status, _, err = cli("tenant", "create", "acme")
    assert status == 1 and "already exists" in err
    status, _, err = cli("tenant", "create", "Bad Name")
    assert status == 1 and "tenant id" in err
    assert "acme\tAcme SAS" in cli("tenant", "list")[1]

    status, out, _ = cli("token", "create", "--tenant", "acme", "--user", "ann", "--role", "supervisor")
    assert status == 0
    token = out.strip().splitlines()[-1]
    who = authenticate(redis_url, token)
    assert (who.tenant, who.user, who.role) == ("acme", "ann", "supervisor")

    status, _, err = cli("token", "create", "--tenant", "acme", "--user", "ann", "--role", "admin")
    assert status == 1 and "has role supervisor" in err
    status, _, err = cli("token", "create", "--tenant", "nope", "--user", "ann", "--role", "admin")
    assert status == 1 and "no tenant nope" in err

    status, out, _ = cli("token", "list", "--tenant", "acme")
    assert status == 0 and who.token_id in out and token not in out and token_hash(token) not in out
    status, _, err = cli("token", "revoke", "--tenant", "other", who.token_id)
    assert status == 1 and authenticate(redis_url, token) is not None
    assert cli("token", "revoke", "--tenant", "acme", who.token_id)[0] == 0
    assert authenticate(redis_url, token) is None


def test_unreachable_redis_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("DIALER_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["tenant", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dialer: cannot reach Redis") and "Traceback" not in err
