"""The client's address behind trusted reverse proxies (gateway/proxies.py): X-Forwarded-For is believed only from
a trusted peer, read from the right, so a client cannot pick its own address to dodge the sign-in rate limit."""

from __future__ import annotations

import aiohttp
import pytest

from dialer.config import ConfigError, load_config
from gateway.proxies import client_of, parse_trusted
from tests.gateway_support import start_gateway, stop_gateway

PROXIES = parse_trusted("10.0.0.0/8, 127.0.0.1, ::1")


def test_the_header_counts_only_from_a_trusted_proxy():
    assert client_of("198.51.100.4", ["1.2.3.4"], PROXIES) == "198.51.100.4"  # not a proxy: the peer is the client
    assert client_of("10.1.2.3", ["1.2.3.4"], ()) == "10.1.2.3"  # no trusted proxies: header ignored
    assert client_of("10.1.2.3", ["1.2.3.4"], PROXIES) == "1.2.3.4"
    assert client_of("10.1.2.3", [], PROXIES) == "10.1.2.3"


def test_the_chain_is_read_from_the_right():
    # the client wrote "6.6.6.6" itself; the first proxy appended the address it saw (1.2.3.4), then a second proxy
    assert client_of("10.1.2.3", ["6.6.6.6, 1.2.3.4, 10.9.9.9"], PROXIES) == "1.2.3.4"
    assert client_of("10.1.2.3", ["6.6.6.6", "1.2.3.4"], PROXIES) == "1.2.3.4"  # two header lines: one chain
    assert client_of("10.1.2.3", ["garbage, 10.9.9.9"], PROXIES) == "10.9.9.9"  # nothing past a malformed hop
    assert client_of("::1", ["2001:db8::7"], PROXIES) == "2001:db8::7"
    assert client_of(None, ["1.2.3.4"], PROXIES) == "unknown"


def test_a_bad_proxy_setting_is_refused_at_start():
    with pytest.raises(ConfigError, match=r"gateway\.trusted_proxies: .nginx. is not an IP address"):
        load_config(env={"DIALER_GATEWAY_TRUSTED_PROXIES": "127.0.0.1, nginx"})


async def sign_in_failures(gw, forwarded: list[str]) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as http:
        for i, address in enumerate(forwarded):
            resp = await http.post(str(gw.client.make_url("/v1/session")), headers={"X-Forwarded-For": address},
                                   json={"email": f"x{i}@example.com", "password": "wrong"})
            statuses.append(resp.status)
    return statuses


async def test_rate_limits_count_the_forwarded_client_behind_a_trusted_proxy(redis_url):
    gw = await start_gateway(redis_url, DIALER_GATEWAY_TRUSTED_PROXIES="127.0.0.1")
    try:
        # 31 failures from one client, through the proxy: limited like a direct client (30 a minute)
        assert (await sign_in_failures(gw, ["203.0.113.5"] * 31))[-1] == 429
        # another client behind the same proxy is not
        assert await sign_in_failures(gw, ["203.0.113.6"]) == [401]
    finally:
        await stop_gateway(gw)


async def test_without_trusted_proxies_a_forged_header_changes_nothing(redis_url):
    gw = await start_gateway(redis_url)
    try:
        # each attempt claims another address: the peer (this test) is still one client, limited after 30
        statuses = await sign_in_failures(gw, [f"203.0.113.{i}" for i in range(31)])
        assert statuses[:30] == [401] * 30 and statuses[30] == 429
    finally:
        await stop_gateway(gw)
