"""`dialer webhooks`: run the webhook delivery worker until SIGINT/SIGTERM (dialer/webhooks/delivery.py).

It also sweeps the data-subject request register every SWEEP_SECONDS (dialer/subject_requests.py): reminders
before a deadline and overdue alerts are webhooks, so they go out wherever webhooks are delivered."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis

from dialer import subject_requests
from dialer.cli import CommandError
from dialer.config import Config
from dialer.webhooks.delivery import DeliveryWorker
from dialer.webhooks.sealing import SecretBoxError
from dialer.webhooks.settings import address_policy, retry_policy, secret_box


def register(sub: Any) -> None:
    parser = sub.add_parser("webhooks", help="deliver signed webhooks to tenants' endpoints (run one or more)")
    parser.set_defaults(func=run)


SWEEP_SECONDS = 300.0
log = logging.getLogger(__name__)


async def _sweep_requests(config: Config, stop: asyncio.Event) -> None:
    client = redis.Redis.from_url(config.redis_url, decode_responses=True, socket_connect_timeout=3)
    try:
        while not stop.is_set():
            try:
                sent = await asyncio.to_thread(subject_requests.sweep_all, client, datetime.now(UTC))
                if sent["reminder"] or sent["overdue"]:
                    log.info("subject requests: %d reminders, %d overdue alerts queued", sent["reminder"],
                             sent["overdue"])
            except redis.RedisError as exc:
                log.warning("subject requests not swept (%s); retried in %.0f s", exc, SWEEP_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_SECONDS)
    finally:
        client.close()


async def _serve(config: Config) -> None:
    try:
        box = secret_box(config)
    except SecretBoxError as exc:
        raise CommandError(str(exc)) from None
    client = aioredis.Redis.from_url(config.redis_url, decode_responses=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sweeper = asyncio.create_task(_sweep_requests(config, stop))
    try:
        async with DeliveryWorker(client, box, address_policy(config), retry_policy(config)) as worker:
            await worker.run(stop)
    finally:
        stop.set()
        await sweeper
        await client.aclose()


def run(args: argparse.Namespace, config: Config) -> int:
    asyncio.run(_serve(config))
    return 0
