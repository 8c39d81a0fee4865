"""`dialer config check`: load and validate the settings, print them (secrets hidden)."""

from __future__ import annotations

import argparse
from typing import Any

from dialer import redisconn
from dialer.config import SETTINGS, Config


def register(sub: Any) -> None:
    parser = sub.add_parser("config", help="check the settings")
    parser.add_argument("action", choices=["check"], help="check: validate and print the settings")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, config: Config) -> int:
    print(f"settings from {config.source}: OK")
    for setting in SETTINGS:
        value = config[setting.name]
        if "secret" in setting.name and value:
            value = "(set)"
        print(f"  {setting.name} = {value!r}  [{setting.env}]")
    for server in config.asterisk:
        print(f"  asterisk {server.name}: {server.username}@{server.host}:{server.port} auth={server.auth}")
    check_redis_persistence(config)
    return 0


def check_redis_persistence(config: Config) -> None:
    """Say what the Redis server keeps across a restart: without AOF fsync'ed on every write, a crash loses the
    last opt-outs, claims and reservations, and the engines stop dialing until an operator confirms the data
    (docs/runtime.md, "Redis persistence")."""
    import redis

    from dialer.runtime.datastate import persistence_of

    client = redisconn.connect(config.redis_url, socket_timeout=3, socket_connect_timeout=3)
    if redisconn.is_cluster(client):
        client.close()
        print("redis: a Redis Cluster: a master's failover can lose its last acknowledged writes (replication is "
              "asynchronous); the engines then stop dialing the tenants it served until `dialer runtime resume "
              "--after-data-loss` (docs/redis.md). RQ queues: " + redisconn.shown(config.jobs_url))
        return
    try:
        persistence = persistence_of(client)
    except redis.RedisError as exc:
        print(f"WARNING: Redis at {config.redis_url} not reachable ({exc}): its persistence was not checked")
        return
    finally:
        client.close()
    if persistence.loses_nothing:
        print(f"redis persistence: {persistence.describe()} (no acknowledged write lost at a crash)")
    elif persistence.aof and persistence.appendfsync == "everysec":
        print(f"WARNING: redis persistence: {persistence.describe()}: a crash can lose the last second of writes "
              "(opt-outs, calls placed); the engines then stop dialing until `dialer runtime resume "
              "--after-data-loss`. Production: appendonly yes, appendfsync always (docs/runtime.md)")
    else:
        print(f"WARNING: redis persistence: {persistence.describe()}: a Redis restart loses opt-outs, consents and "
              "the record of calls placed. Production: appendonly yes, appendfsync always, and a replica "
              "(docs/runtime.md)")
