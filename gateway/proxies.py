"""Which address a request came from when the gateway sits behind reverse proxies it trusts.

Sign-in rate limits, lockouts, the audit trail and the access log all name the client's address. Behind a proxy
(nginx, a load balancer) the peer is the proxy, so every client would share one address and one rate limit. The
proxy says who its client was in `X-Forwarded-For`; anyone can send that header, so it is believed only when the
peer is one of `gateway.trusted_proxies` (CIDRs), and then read from the right: each trusted proxy appends the
address it saw, and the first address from the right that is not a trusted proxy is the client. With no trusted
proxies (the default) the header is ignored and the peer is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Set on the original request too, so the access logger (which sees the original, not the clone) can read it.
CLIENT = web.RequestKey("client_address", str)


def parse_trusted(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1` -> networks. ValueError names the entry that is not an address or CIDR."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (CIDR)") from None
    return tuple(networks)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_of(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the right-most address of the
    X-Forwarded-For chain that is not a trusted proxy (a malformed entry stops the walk: it is what the client
    or an untrusted hop wrote, so the last trusted hop's peer before it is the best we know)."""
    if not peer or not trusted or not _trusted(peer, trusted):
        return peer or "unknown"
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        client = hop
        if not _trusted(hop, trusted):
            break
    return client


def forwarded_client(trusted: Sequence[Network]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: the request's `remote` becomes the client's address (see the module's docstring)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        client = client_of(request.remote, request.headers.getall("X-Forwarded-For", []), trusted)
        request[CLIENT] = client
        if client != request.remote:
            request = request.clone(remote=client)
        return await handler(request)

    return middleware
