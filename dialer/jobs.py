"""RQ plumbing shared by every background job: queue names and how to get a queue.

Queues: imports (contact lists), registry (national opposition registries), exports (CSV exports),
retention (data retention and erasure). `dialer worker` listens on all of them by default
(setting worker.queues); run several workers, on several machines, against the same Redis.
"""

from __future__ import annotations

import redis
from rq import Queue

QUEUES: tuple[str, ...] = ("imports", "registry", "exports", "retention")
IMPORTS, REGISTRY, EXPORTS, RETENTION = QUEUES


def get_queue(client: redis.Redis, name: str) -> Queue:
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r} (known: {', '.join(QUEUES)})")
    return Queue(name, connection=client)
