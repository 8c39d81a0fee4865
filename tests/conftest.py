"""Shared fixtures. Redis is always a real redis-server, never a fake.

The session uses the server named by $DIALER_TEST_REDIS_URL (as .ci/run starts one) or
starts its own on a free loopback port. Under pytest-xdist (`-n N`) every worker starts its own
server whatever the environment says: pub/sub channels (stop requests, opt-outs, live figures)
are not per database, so two workers on one server would hear each other. Each test gets a
flushed database, so tests never see one another's keys. Tests that need persistence,
restarts or kills start their own server with `redis_factory`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from dialer.redisproc import RedisProcess


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A real PostgreSQL (Debian's package) for this test session: initdb into a temp dir, postgres on a free
    loopback port with its unix socket in that dir. Never the system cluster."""
    from dialer.record.pgproc import PostgresProcess, find_pg_bin

    if find_pg_bin() is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    server = PostgresProcess().start()
    yield server
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: object) -> str:
    """URL of a fresh, empty database on the session's PostgreSQL."""
    import uuid

    return postgres_server.create_database("t_" + uuid.uuid4().hex[:12])  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    url = os.environ.get("DIALER_TEST_REDIS_URL")
    if url and not os.environ.get("PYTEST_XDIST_WORKER"):
        yield url
        return
    with RedisProcess() as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """URL of a flushed database on the session's real redis-server."""
    # ASYNC: the server frees the keys in a background thread. A blocking FLUSHDB of a big import took longer
    # than redis-py's 5 s socket timeout on a loaded machine and kept the server busy for the next test.
    client = redis.Redis.from_url(redis_server_url, socket_timeout=60)
    client.flushdb(asynchronous=True)
    yield redis_server_url
    client.flushdb(asynchronous=True)
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_factory() -> Iterator[type]:
    """Start extra redis-servers (persistent ones, ones to kill); all are stopped after the test."""
    started: list[RedisProcess] = []

    class Factory:
        @staticmethod
        def start(persistent: bool = False, directory: str | None = None, port: int | None = None) -> RedisProcess:
            server = RedisProcess(port=port, persistent=persistent, directory=directory).start()
            started.append(server)
            return server

    yield Factory
    for server in started:
        server.cleanup()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("DIALER_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set DIALER_SLOW_TESTS=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
