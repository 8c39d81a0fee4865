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

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster

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


class ScriptingClusterPipeline(ClusterPipeline):
    """A cluster pipeline (MULTI or not) that runs our Lua scripts as a plain Redis pipeline does: redis-py's
    cluster pipeline refuses EVAL and queues a registered script's EVALSHA without loading it, so a MULTI would
    hit NOSCRIPT at EXEC (and Redis still runs the transaction's other commands). Scripts are loaded on every
    master before the pipeline is sent (SCRIPT LOAD is replicated, so a promoted replica has them too)."""

    owner: DialerRedisCluster
    _publish: list[tuple[int, Any, Any]]

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Sent right after the pipeline (redis-py's cluster pipeline refuses PUBLISH: it has no key to route by).
        Our messages only say "re-read the keys", so after the writes is when they should arrive anyway."""
        self._publish.append((len(self), channel, message))
        return self

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        deferred, self._publish = self._publish, []
        replies = list(super().execute(raise_on_error)) if len(self) else []
        for position, channel, message in deferred:  # each reply where a plain pipeline would have put it
            replies.insert(position, self.owner.publish(channel, message))
        return replies

    def mget(self, keys: Any, *args: Any) -> Any:  # type: ignore[override]
        """MGET of keys of one slot (e.g. one tenant's `t:{T}:` keys): redis-py's cluster pipeline refuses every
        MGET; the server still refuses keys of two slots (CROSSSLOT)."""
        names = [keys, *args] if isinstance(keys, str | bytes) else [*keys, *args]
        return self.execute_command("MGET", *names)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:  # type: ignore[override]
        self.owner.ensure_loaded(sha)
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:  # type: ignore[override]
        sha = self.owner.remember(script)
        return self.evalsha(sha, numkeys, *keys_and_args)


class _ScriptBodies:
    """The script bodies a cluster client has seen (by SHA1), so its pipelines can load them on every master."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bodies: dict[str, str] = {}
        self._loaded: set[str] = set()

    def remember(self, script: str | bytes) -> str:
        text = script.decode() if isinstance(script, bytes) else script
        sha = hashlib.sha1(text.encode()).hexdigest()
        self._bodies.setdefault(sha, text)
        return sha

    def register_script(self, script: str | bytes) -> Any:
        self.remember(script)
        return super().register_script(script)  # type: ignore[misc]


class DialerRedisCluster(_ScriptBodies, RedisCluster):
    """RedisCluster whose pipelines can run scripts (ScriptingClusterPipeline)."""

    def ensure_loaded(self, sha: str) -> None:
        if sha in self._loaded:
            return
        body = self._bodies.get(sha)
        if body is None:
            raise RedisURLError(f"script {sha} was not registered through this client")
        self.script_load(body)  # every master
        self._loaded.add(sha)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ScriptingClusterPipeline:
        pipe = super().pipeline(transaction=transaction, shard_hint=shard_hint)
        pipe.__class__ = ScriptingClusterPipeline
        pipe.owner = self  # type: ignore[attr-defined]
        pipe._publish = []  # type: ignore[attr-defined]
        return pipe  # type: ignore[return-value]


class AsyncScriptingClusterPipeline(AsyncClusterPipeline):
    """The asyncio counterpart of ScriptingClusterPipeline."""

    owner: DialerAsyncRedisCluster
    _publish: list[tuple[int, Any, Any]]
    _needed: set[str]

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self._publish.append((len(self), channel, message))
        return self

    def mget(self, keys: Any, *args: Any) -> Any:  # type: ignore[override]
        """MGET of keys of one slot (e.g. one tenant's `t:{T}:` keys): redis-py's cluster pipeline refuses every
        MGET; the server still refuses keys of two slots (CROSSSLOT)."""
        names = [keys, *args] if isinstance(keys, str | bytes) else [*keys, *args]
        return self.execute_command("MGET", *names)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:  # type: ignore[override]
        self._needed.add(sha)
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:  # type: ignore[override]
        return self.evalsha(self.owner.remember(script), numkeys, *keys_and_args)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        deferred, self._publish = self._publish, []
        needed, self._needed = self._needed, set()
        for sha in needed:
            await self.owner.ensure_loaded(sha)
        replies = list(await super().execute(raise_on_error, allow_redirections)) if len(self) else []
        for position, channel, message in deferred:
            replies.insert(position, await self.owner.publish(channel, message))
        return replies


class DialerAsyncRedisCluster(_ScriptBodies, AsyncRedisCluster):
    """asyncio RedisCluster whose pipelines can run scripts and PUBLISH (AsyncScriptingClusterPipeline)."""

    async def ensure_loaded(self, sha: str) -> None:
        if sha in self._loaded:
            return
        body = self._bodies.get(sha)
        if body is None:
            raise RedisURLError(f"script {sha} was not registered through this client")
        await self.script_load(body)
        self._loaded.add(sha)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> AsyncScriptingClusterPipeline:
        pipe = super().pipeline(transaction=transaction, shard_hint=shard_hint)
        pipe.__class__ = AsyncScriptingClusterPipeline
        pipe.owner = self  # type: ignore[attr-defined]
        pipe._publish = []  # type: ignore[attr-defined]
        pipe._needed = set()  # type: ignore[attr-defined]
        return pipe  # type: ignore[return-value]


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A synchronous client for `url`: redis.Redis, or redis.cluster.RedisCluster for a cluster URL (the same
    command methods; a cluster routes each command, script and MULTI to the node holding its hash slot).
    kwargs are redis-py connection options (decode_responses, socket_timeout, ...)."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **kwargs)
    target = parse_cluster_url(url)
    nodes = [ClusterNode(host, port) for host, port in target.nodes]
    return DialerRedisCluster(startup_nodes=nodes, **_cluster_kwargs(target, kwargs))  # type: ignore[return-value]


def connect_async(url: str, **kwargs: Any) -> aioredis.Redis:
    """The asyncio counterpart of connect()."""
    if not is_cluster_url(url):
        return aioredis.Redis.from_url(url, **kwargs)
    target = parse_cluster_url(url)
    nodes = [AsyncClusterNode(host, port) for host, port in target.nodes]
    return DialerAsyncRedisCluster(startup_nodes=nodes, **_cluster_kwargs(target, kwargs))  # type: ignore[return-value]


def shown(url: str) -> str:
    """`url` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)
