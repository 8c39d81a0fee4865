"""One-off upgrade of a Redis written before the keys carried hash tags (issue 18, docs/redis.md): rename every
key to its tagged name, on the single Redis it lives on, with every dialer process stopped.

  t:T:...                      -> t:{T}:...                   everything a tenant owns: one cluster slot
  tenant:T                     -> tenant:{T}                  the tenant's record, in the same slot
  reg:NAME:...                 -> reg:{NAME}:...              one registry: one slot (reg:index stays global)
  dialer:agents:PBX:Q:part     -> dialer:agents:{PBX}:Q:part  the queues of one server set: one slot
  dialer:trunk:ADDR:part       -> dialer:trunk:{ADDR}:part    one server's trunk sets: one slot
  login:lock|fail:H            -> login:lock|fail:{H}         one sign-in name's lock and count: one slot
  dialer:agentboard:Q[:waiting] -> dialer:agentboard:{Q}...   a queue's agent board and waiting count: one slot
  wh:outbox (stream)           -> t:{T}:wh:outbox             split by each entry's tenant field
  wh:due (sorted set)          -> t:{T}:wh:due                split by each member's tenant ("T|ep|key")

RENAME keeps each key's value and time to live. Running it twice changes nothing the second time. After it,
the data can be moved to a Redis Cluster as is (e.g. `redis-cli --cluster import`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import redis

from dialer.redisconn import is_cluster

_RULES: tuple[tuple[re.Pattern[bytes], Callable[[re.Match[bytes]], bytes]], ...] = (
    (re.compile(rb"^t:([^:{}]+):(.*)$", re.S), lambda m: b"t:{" + m[1] + b"}:" + m[2]),
    (re.compile(rb"^tenant:([^:{}]+)$"), lambda m: b"tenant:{" + m[1] + b"}"),
    (re.compile(rb"^reg:([a-z0-9_]+):(.+)$", re.S), lambda m: b"reg:{" + m[1] + b"}:" + m[2]),
    (re.compile(rb"^dialer:agents:([^{}]+):([^:{}]+):(calls|owner|demand)$"),
     lambda m: b"dialer:agents:{" + m[1] + b"}:" + m[2] + b":" + m[3]),
    (re.compile(rb"^dialer:trunk:(?!identity:)([^{}]+):(channels|originates|ai)$"),
     lambda m: b"dialer:trunk:{" + m[1] + b"}:" + m[2]),
    (re.compile(rb"^login:(lock|fail):([0-9a-f]+)$"), lambda m: b"login:" + m[1] + b":{" + m[2] + b"}"),
    (re.compile(rb"^dialer:agentboard:([^:{}]+)(:waiting)?$"),
     lambda m: b"dialer:agentboard:{" + m[1] + b"}" + (m[2] or b"")),
)
OLD_OUTBOX, OLD_DUE, OLD_FANOUT_LOCK = b"wh:outbox", b"wh:due", b"wh:fanout:lock"


def new_name(key: bytes) -> bytes | None:
    """The tagged name of a key of the old layout; None for a key that keeps its name."""
    for pattern, rename in _RULES:
        found = pattern.match(key)
        if found:
            return rename(found)
    return None


def _scan(client: redis.Redis) -> Iterator[bytes]:
    for pattern in (b"t:*", b"tenant:*", b"reg:*", b"dialer:agents:*", b"dialer:trunk:*", b"login:*",
                    b"dialer:agentboard:*"):
        yield from client.scan_iter(match=pattern, count=1000)


def _running_engines(client: redis.Redis) -> list[str]:
    return [k.decode() for k in client.scan_iter(match=b"dialer:runtime:process:*", count=1000)]


def retag(client: redis.Redis, *, dry_run: bool = False, force: bool = False) -> Counter[str]:
    """Rename the old layout's keys; returns what was (or, dry_run, would be) done, by kind."""
    if is_cluster(client):
        raise ValueError("run this on the single Redis the old keys live on, before moving them to a cluster")
    running = _running_engines(client)
    if running and not force and not dry_run:
        raise ValueError(f"dialing engines are registered ({', '.join(running[:3])}): stop every dialer process "
                         "first (or wait for their registration to expire)")
    done: Counter[str] = Counter()
    for key in list(_scan(client)):
        target = new_name(key)
        if target is None:
            continue
        if client.exists(target):
            done["conflicts"] += 1  # both names exist: left for an operator (never overwritten)
            continue
        if not dry_run:
            client.rename(key, target)
        done[key.split(b":", 1)[0].decode()] += 1
    done += _split_outbox(client, dry_run)
    done += _split_due(client, dry_run)
    if not dry_run:
        client.delete(OLD_FANOUT_LOCK)
    return done


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _split_outbox(client: redis.Redis, dry_run: bool) -> Counter[str]:
    from dialer.webhooks.events import outbox_key
    from dialer.webhooks.queue import FANOUT_GROUP

    done: Counter[str] = Counter()
    if not client.exists(OLD_OUTBOX):
        return done
    for entry_id, fields in client.xrange(OLD_OUTBOX):
        tenant = _text(fields.get(b"tenant", b""))
        if not tenant:
            done["outbox entries without tenant (kept)"] += 1
            continue
        if not dry_run:  # same entry id: the fan-out is idempotent per (event, endpoint) anyway
            target = outbox_key(tenant)
            pipe = client.pipeline(transaction=True)
            pipe.xadd(target, fields, id=entry_id)
            pipe.xdel(OLD_OUTBOX, entry_id)
            pipe.execute()
            try:
                client.xgroup_create(target, FANOUT_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        done["outbox entries"] += 1
    if not dry_run and client.xlen(OLD_OUTBOX) == 0:
        client.delete(OLD_OUTBOX)
    return done


def _split_due(client: redis.Redis, dry_run: bool) -> Counter[str]:
    from dialer.webhooks.queue import due_key, split_member

    done: Counter[str] = Counter()
    for member, score in client.zrange(OLD_DUE, 0, -1, withscores=True):
        tenant = split_member(_text(member))[0]
        if not dry_run:
            pipe = client.pipeline(transaction=True)
            pipe.zadd(due_key(tenant), {member: score})
            pipe.zrem(OLD_DUE, member)
            pipe.execute()
        done["webhook schedule entries"] += 1
    return done
