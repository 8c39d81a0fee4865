"""The delivery queues in Redis: one FIFO per (endpoint, ordering key), scheduled through one sorted set.

  t:{T}:wh:outbox               stream of the tenant's events (events.py); consumer group "fanout"
  t:{T}:wh:d:{ep}:{evt}         hash: one delivery (event to endpoint): body, type, key, created_at, attempts,
                                state (pending, delivered, dead), last_status, last_error, last_at
  t:{T}:wh:q:{ep}:{key}         list of event ids waiting for that endpoint, in order, head first
  t:{T}:wh:due                  sorted set "T|ep|key" -> when its head may be tried (epoch seconds)
  t:{T}:wh:dead                 sorted set "ep:evt" -> when it was given up

Everything is per tenant, in the tenant's hash slot (`{T}`), so every script and MULTI here stays in one slot
of a Redis Cluster; the worker walks the tenants that have endpoints (`tenants` set).

Only the head of a queue is ever in flight, so deliveries with the same key arrive in order. A worker
claims a queue by pushing its due time forward by a lease: a worker that dies mid-delivery loses the
lease and the head is tried again (at least once; the receiver dedupes on webhook-id). Every move
between states is one Lua script, so a fan-out and a completion can never strand a queue.
"""

from __future__ import annotations

from typing import Any

FANOUT_GROUP = "fanout"
DELIVERED_TTL = 7 * 86400  # a delivered record stays visible for a week


def delivery_key(tenant: str, endpoint: str, event_id: str) -> str:
    return f"t:{{{tenant}}}:wh:d:{endpoint}:{event_id}"


def queue_key(tenant: str, endpoint: str, key: str) -> str:
    return f"t:{{{tenant}}}:wh:q:{endpoint}:{key}"


def dead_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:wh:dead"


def due_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:wh:due"


def member(tenant: str, endpoint: str, key: str) -> str:
    return f"{tenant}|{endpoint}|{key}"


def split_member(value: str) -> tuple[str, str, str]:
    tenant, endpoint, key = value.split("|", 2)
    return tenant, endpoint, key


# KEYS: delivery, queue, due. ARGV: member, now, event id, then field/value pairs.
ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[1])
return 1
"""

# KEYS: queue, due. ARGV: member, now, lease until. Returns the head event id, or false.
CLAIM = """
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then redis.call('ZREM', KEYS[2], ARGV[1]) return false end
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
return head
"""

# Head done (delivered or dead): pop it, schedule the next one now, or forget an empty queue.
# KEYS: queue, due. ARGV: member, now, event id.
ADVANCE = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[3] then redis.call('LPOP', KEYS[1]) end
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1])
else redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
return 1
"""

# Manual redelivery of a dead one: back to pending at the tail of its queue. KEYS: delivery, queue, due, dead.
# ARGV: member, now, event id, dead member. Returns 0 when it is not dead (absent, or redelivered already).
REDELIVER = """
if redis.call('HGET', KEYS[1], 'state') ~= 'dead' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'created_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'first_attempt_at')
redis.call('PERSIST', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[1])
return 1
"""


class Scripts:
    def __init__(self, redis: Any) -> None:
        self.enqueue = redis.register_script(ENQUEUE)
        self.claim = redis.register_script(CLAIM)
        self.advance = redis.register_script(ADVANCE)
        self.redeliver = redis.register_script(REDELIVER)


def queue_erasure(client: Any, pipe: Any, tenant: str, number: str) -> int:
    """Queue on `pipe` (a sync transaction) the removal of every undelivered webhook about `number`: its
    pending queues and their delivery records, and its dead letters. Returns how many deliveries go. Delivered
    records expire on their own (DELIVERED_TTL); an erased person is not sent anywhere any more."""
    from dialer.webhooks.events import endpoints_key

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    gone = 0
    for endpoint in map(text, client.hkeys(endpoints_key(tenant))):
        qkey = queue_key(tenant, endpoint, number)
        for event_id in map(text, client.lrange(qkey, 0, -1)):
            pipe.delete(delivery_key(tenant, endpoint, event_id))
            gone += 1
        pipe.delete(qkey)
        pipe.zrem(due_key(tenant), member(tenant, endpoint, number))
    for value in map(text, client.zrange(dead_key(tenant), 0, -1)):
        endpoint, _, event_id = value.partition(":")
        dkey = delivery_key(tenant, endpoint, event_id)
        if client.hget(dkey, "key") in (number, number.encode()):
            pipe.delete(dkey)
            pipe.zrem(dead_key(tenant), value)
            gone += 1
    return gone
