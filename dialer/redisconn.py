"""Every Redis client of the dialer, the workers and the gateway is made here: a plain Redis or a Redis Cluster,
chosen by the URL's scheme (docs/redis.md).

  redis://host:port/db, rediss://..., unix:///path?db=N    one Redis (redis-py's own URL forms)
  redis+cluster://[user:password@]host:port[,host:port...]  a Redis Cluster: the seed nodes (any one answering
  rediss+cluster://...                                      is enough; the client learns the rest), TLS with rediss

A cluster URL has no database (a cluster has only database 0; `/0` is accepted, anything else refused) and no
query options: what we would not apply is refused rather than ignored (fail closed).

RQ does not run on a cluster (its job, queue and registry keys carry no hash tags and it writes them together in
MULTI blocks): the `redis.jobs_url` setting names the plain Redis the RQ queues live on (see jobs_url()).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
PLAIN_SCHEMES = ("redis", "rediss", "unix")


class RedisURLError(ValueError):
    """A redis URL we cannot honour exactly; the message names what is wrong."""


@dataclass(frozen=True)
class ClusterTarget:
    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterTarget:
    """The seed nodes and credentials of a redis+cluster:// URL; RedisURLError for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in CLUSTER_SCHEMES:
        raise RedisURLError(f"expected redis+cluster://host:port[,host:port...], got scheme {parts.scheme!r}")
    if parts.query or parts.fragment:
        raise RedisURLError("a cluster URL takes no ?options or #fragment (they would be ignored)")
    if parts.path not in ("", "/", "/0"):
        raise RedisURLError(f"a Redis Cluster has only database 0, got path {parts.path!r}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisURLError(f"cluster node {item.strip()!r}: expected host:port")
        nodes.append((host, int(port)))
    return ClusterTarget(tuple(nodes), username, password, CLUSTER_SCHEMES[scheme])


def check_url(url: str) -> None:
    """Raise RedisURLError unless `url` is a redis URL we can connect with."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in CLUSTER_SCHEMES:
        parse_cluster_url(url)
    elif scheme not in PLAIN_SCHEMES:
        raise RedisURLError(f"expected redis://host:port/db or redis+cluster://host:port[,host:port...], got {url!r}")


def _cluster_kwargs(target: ClusterTarget, kwargs: dict[str, Any]) -> dict[str, Any]:
    options = dict(kwargs)
    if target.username:
        options["username"] = target.username
    if target.password is not None:
        options["password"] = target.password
    if target.tls:
        options["ssl"] = True
    return options


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A synchronous client for `url`: redis.Redis, or redis.cluster.RedisCluster for a cluster URL (the same
    command methods; a cluster routes each command, script and MULTI to the node holding its hash slot).
    kwargs are redis-py connection options (decode_responses, socket_timeout, ...)."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **kwargs)
    target = parse_cluster_url(url)
    nodes = [ClusterNode(host, port) for host, port in target.nodes]
    return RedisCluster(startup_nodes=nodes, **_cluster_kwargs(target, kwargs))  # type: ignore[return-value]


def connect_async(url: str, **kwargs: Any) -> aioredis.Redis:
    """The asyncio counterpart of connect()."""
    if not is_cluster_url(url):
        return aioredis.Redis.from_url(url, **kwargs)
    target = parse_cluster_url(url)
    nodes = [AsyncClusterNode(host, port) for host, port in target.nodes]
    return AsyncRedisCluster(startup_nodes=nodes, **_cluster_kwargs(target, kwargs))  # type: ignore[return-value]


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)
