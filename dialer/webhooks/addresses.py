"""Which endpoint URLs and addresses a delivery may reach (SSRF protection).

By default only https:// URLs whose every resolved address is public. The name is resolved by the
delivery's own resolver (AddressCheckingResolver), so the addresses checked are the ones connected to
(no second lookup a DNS rebinding could answer differently). Redirects are never followed. The operator
may allow plain http and private addresses (webhooks.allow_http, webhooks.allow_private_addresses),
for tests and closed networks only.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver


class AddressRefused(Exception):
    """A URL or address the policy forbids. The message names why (shown to the tenant and in the log)."""


@dataclass(frozen=True)
class AddressPolicy:
    allow_http: bool = False
    allow_private: bool = False


def address_problem(address: str, policy: AddressPolicy) -> str | None:
    """None when `address` may be connected to; else why not."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if policy.allow_private:
        return None
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return f"{ip} is not a public address"
    return None


def url_problem(url: str, policy: AddressPolicy) -> str | None:
    """None when the URL's form is acceptable (its name is checked again when resolved); else why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("https", "http"):
        return "the URL must start with https://"
    if parts.scheme == "http" and not policy.allow_http:
        return "the URL must start with https:// (plain http is not allowed by the operator)"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username or parts.password:
        return "the URL must not carry a user name or password"
    if port == 0:
        return "the URL's port is 0"
    try:
        ipaddress.ip_address(parts.hostname.split("%", 1)[0])
    except ValueError:
        return None  # a name: checked at resolution
    return address_problem(parts.hostname, policy)


class AddressCheckingResolver(AbstractResolver):
    """Resolves like aiohttp's, then refuses the whole name if any address is forbidden."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            problem = address_problem(result["host"], self.policy)
            if problem:
                raise AddressRefused(f"{host} resolves to a refused address: {problem}")
        return results

    async def close(self) -> None:
        await self.inner.close()
