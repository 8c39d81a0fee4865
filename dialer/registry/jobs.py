"""The registry import as an RQ job, for files uploaded through the API.

The gateway enqueues `import_registry_job` on the `registry` queue; a `dialer worker` runs it. The job's
result is the load report as a dict (status "committed" or "refused", counts, the first bad lines), so a
refused load is a finished job with a clear answer, not a traceback. Progress is published in job.meta
["progress"] = {"stage": "read"|"write"|"commit", "done": n, "total": n} about once a second.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import redis
from rq import Queue, get_current_job
from rq.job import Job

from dialer import redisconn
from dialer.jobs import jobs_connection
from dialer.registry.loader import (
    DEFAULT_LOCK_TTL,
    DEFAULT_MAX_BAD_SHARE,
    DEFAULT_MAX_SHRINK_SHARE,
    LoadRefused,
    load_registry,
)

QUEUE = "registry"
JOB_TIMEOUT = 2 * 3600  # the full US registry (250 M lines) takes minutes, not RQ's default 3
RESULT_TTL = 7 * 24 * 3600  # the report stays readable for a week


class _JobProgress:
    def __init__(self) -> None:
        self.job = get_current_job()
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self.job is None or (now - self.last < 1.0 and done < total):
            return
        self.last = now
        self.job.meta["progress"] = {"stage": stage, "done": done, "total": total}
        self.job.save_meta()


def import_registry_job(
    redis_url: str,
    name: str,
    path: str,
    delta: bool = False,
    fmt: str | None = None,
    country: str | None = None,
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
    file_name: str | None = None,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    max_shrink_share: float = DEFAULT_MAX_SHRINK_SHARE,
    force: bool = False,
    obtained_at: str | None = None,
) -> dict[str, Any]:
    """Import `path` into registry `name` on the Redis at `redis_url`; returns the load report as a dict.
    `file_name` is the name the user uploaded (recorded in the version instead of the temporary path).
    `obtained_at`: ISO 8601 time (with zone) the file was downloaded from the registry, if known."""
    client = redisconn.connect(redis_url)
    try:
        report = load_registry(
            client, name, path, delta=delta, fmt=fmt, country=country, max_bad_share=max_bad_share,
            progress=_JobProgress(), lock_ttl=lock_ttl, file_name=file_name, max_shrink_share=max_shrink_share,
            force=force, obtained_at=datetime.fromisoformat(obtained_at) if obtained_at else None,
        )
    except LoadRefused as exc:
        return exc.report.as_dict()
    finally:
        client.close()
    return report.as_dict()


def enqueue_import(client: redis.Redis, redis_url: str, name: str, path: str, delta: bool = False,
                   **options: Any) -> Job:
    """Queue an import on the `registry` queue with a timeout long enough for national files.
    `options` are import_registry_job's keyword arguments (fmt, country, max_bad_share, file_name, lock_ttl,
    max_shrink_share, force, obtained_at)."""
    queue = Queue(QUEUE, connection=jobs_connection(client))
    return queue.enqueue(import_registry_job, args=(redis_url, name, path, delta), kwargs=options,
                         job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL,
                         description=f"registry import {name}{' (changes)' if delta else ''}")
