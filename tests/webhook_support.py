"""A real HTTP receiver for webhook tests (aiohttp on a free loopback port) and a clock the test moves."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with the next planned behaviour (a status, or ("sleep", seconds)), then 200."""

    plan: list[Any] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)  # every request that reached the handler
    port: int = 0
    on_request: Callable[[web.Request], None] | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
        step = self.plan.pop(0) if self.plan else 200
        if isinstance(step, tuple) and step[0] == "sleep":
            await asyncio.sleep(step[1])
            return web.Response(status=200)
        if isinstance(step, tuple) and step[0] == "redirect":
            return web.Response(status=302, headers={"Location": step[1]})
        return web.Response(status=step)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        app.router.add_post("/elsewhere", self.handle)
        # A handler planned to sleep is cut short at stop: a test receiver need not wait for it (aiohttp's default
        # grace is 60 s, which made a test's teardown wait out the sleep).
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def events(self) -> list[dict[str, Any]]:
        return [r.event for r in self.received]
