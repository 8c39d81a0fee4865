"""`dialer serve`: run the HTTP gateway (API + dashboard) on gateway.host:gateway.port (loopback by default)."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
from typing import Any

import redis
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from dialer.cli import CommandError, redis_unreachable
from dialer.config import Config
from dialer.private_files import UnsafeDirectory, data_dir, private_dir
from gateway import pool
from gateway.app import make_app
from gateway.proxies import CLIENT

log = logging.getLogger(__name__)


class AccessLogger(AbstractAccessLogger):
    """One line per request with the client address, without the query string (it may hold a phone number) or
    any header."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # "200 in 1041ms": the words keep the status and duration from reading as one phone-like digit run,
        # which the masking filter would hide.
        self.logger.info("%s %s %s in %dms from %s", request.method, request.path, response.status,
                         round(time * 1000), request.get(CLIENT) or getattr(request, "remote", None) or "unknown")


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="run the HTTP gateway and dashboard")
    parser.add_argument("--host", help="bind address (default: gateway.host)")
    parser.add_argument("--port", type=int, help="port (default: gateway.port; 0: any free port, printed at start)")
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


def migrate_record(config: Config) -> None:
    """Bring the record's schema up to date (docs/record.md). A record that is down is not fatal: its routes answer
    503 until it is back, and the rest of the gateway serves as usual."""
    from dialer.record.store import Record, RecordUnavailable

    try:
        with Record.from_config(config) as record:
            record.migrate()
    except (RecordUnavailable, OSError) as exc:
        logging.getLogger(__name__).warning("record not migrated (its reports answer 503 until it is): %s", exc)


def run(args: argparse.Namespace, config: Config) -> int:
    host = args.host or config["gateway.host"]
    port = config["gateway.port"] if args.port is None else args.port  # --port 0: any free port
    try:  # staged uploads hold personal data: never in a directory anyone may write to
        private_dir(config["gateway.upload_dir"] or data_dir(config) / "uploads")
    except (UnsafeDirectory, OSError) as exc:
        raise CommandError(f"setting gateway.upload_dir: {exc}") from None
    check_redis(config.redis_url)
    migrate_record(config)
    sock = listen(host, port)
    host, port = sock.getsockname()[:2]
    print(f"gateway on http://{host}:{port}/ (API under /v1, OpenAPI at /v1/openapi.json)", flush=True)
    web.run_app(build(config), sock=sock, access_log_class=AccessLogger, print=None, shutdown_timeout=5)
    return 0


def check_redis(url: str) -> None:
    """Refuse to start without Redis: a gateway that answers every request with an error is worse than none."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise redis_unreachable(url, exc) from None
    finally:
        client.close()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or one line saying why not (port in use, address not on this machine)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "port already in use (another gateway?)" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CommandError(f"cannot listen on {host}:{port}: {why}; choose another with --port "
                           "(--port 0 picks a free one)") from None
    return sock
