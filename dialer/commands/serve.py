"""`dialer serve`: run the HTTP gateway (API + dashboard) on gateway.host:gateway.port (loopback by default)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from dialer.cli import CommandError
from dialer.config import Config
from dialer.private_files import UnsafeDirectory, data_dir, private_dir
from gateway import pool
from gateway.app import make_app

log = logging.getLogger(__name__)


class AccessLogger(AbstractAccessLogger):
    """One line per request with the client address, without the query string (it may hold a phone number) or
    any header."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # "200 in 1041ms": the words keep the status and duration from reading as one phone-like digit run,
        # which the masking filter would hide.
        self.logger.info("%s %s %s in %dms from %s", request.method, request.path, response.status,
                         round(time * 1000), getattr(request, "remote", None) or "unknown")


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="run the HTTP gateway and dashboard")
    parser.add_argument("--host", help="bind address (default: gateway.host)")
    parser.add_argument("--port", type=int, help="port (default: gateway.port)")
    parser.set_defaults(func=run)


async def build(config: Config) -> web.Application:
    client = pool.request_client(config)
    live = pool.live_client(config)
    app = make_app(config, client, live_redis=live)
    # The gateway's events (token use, campaign control, users and tokens) go to the tenant's hash-chained
    # audit trail rather than the plain inbox (opt-outs and consents are audited by the fact store).
    from dialer.audit_events import gateway_sink
    from gateway import trail

    trail.set_sink(gateway_sink)

    async def close(app: web.Application) -> None:
        await client.aclose()
        await live.aclose()

    app.on_cleanup.append(close)
    return app


def run(args: argparse.Namespace, config: Config) -> int:
    host = args.host or config["gateway.host"]
    port = args.port or config["gateway.port"]
    try:  # staged uploads hold personal data: never in a directory anyone may write to
        private_dir(config["gateway.upload_dir"] or data_dir(config) / "uploads")
    except (UnsafeDirectory, OSError) as exc:
        raise CommandError(f"setting gateway.upload_dir: {exc}") from None
    print(f"gateway on http://{host}:{port}/ (API under /v1, OpenAPI at /v1/openapi.json)", flush=True)
    web.run_app(build(config), host=host, port=port, access_log_class=AccessLogger, print=None,
                shutdown_timeout=5)
    return 0
