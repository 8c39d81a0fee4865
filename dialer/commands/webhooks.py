"""`dialer webhooks`: run the webhook delivery worker until SIGINT/SIGTERM (dialer/webhooks/delivery.py)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from dialer import redisconn
from dialer.cli import CommandError
from dialer.config import Config
from dialer.webhooks.delivery import DeliveryWorker
from dialer.webhooks.sealing import SecretBoxError
from dialer.webhooks.settings import address_policy, retry_policy, secret_box


def register(sub: Any) -> None:
    parser = sub.add_parser("webhooks", help="deliver signed webhooks to tenants' endpoints (run one or more)")
    parser.set_defaults(func=run)


async def _serve(config: Config) -> None:
    try:
        box = secret_box(config)
    except SecretBoxError as exc:
        raise CommandError(str(exc)) from None
    client = redisconn.connect_async(config.redis_url, decode_responses=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with DeliveryWorker(client, box, address_policy(config), retry_policy(config)) as worker:
            await worker.run(stop)
    finally:
        await client.aclose()


def run(args: argparse.Namespace, config: Config) -> int:
    asyncio.run(_serve(config))
    return 0
