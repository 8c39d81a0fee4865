"""Several Asterisk servers at once: one AMIClient and one CallTracker per configured server.

The pool wires each client's events into its server's tracker, delivers every outcome and
opt-out to the sinks it was given, reconciles a server's in-flight attempts after each
reconnect, and sweeps stale attempts while the server is connected (never while it is
down: events lost in a disconnection are the reconciliation's business, not the sweep's).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from dialer.ami.astdb import DEFAULT_INTERVAL, AstDBSync, Resolver
from dialer.ami.calls import CallTracker, OptOut, Outcome, Record
from dialer.ami.client import AMIClient, AMIError
from dialer.ami.originate import OriginateRequest, OriginateResult, originate
from dialer.ami.protocol import Message
from dialer.ami.reconcile import DEFAULT_MIN_AGE, reconcile
from dialer.config import AsteriskServer

log = logging.getLogger(__name__)

OutcomeSink = Callable[[str, Outcome], object]  # (server name, outcome); may return an awaitable
OptOutSink = Callable[[str, OptOut], object]


class AMIPool:
    def __init__(
        self,
        servers: Iterable[AsteriskServer],
        *,
        on_outcome: OutcomeSink | None = None,
        on_optout: OptOutSink | None = None,
        clock: Callable[[], float] = time.time,
        sweep_interval: float = 1.0,
        reconcile_min_age: float = DEFAULT_MIN_AGE,
        tracker_options: Mapping[str, float] | None = None,
        resolve_number: Resolver | None = None,
        astdb_interval: float = DEFAULT_INTERVAL,
        **client_options: object,
    ) -> None:
        """resolve_number(tenant, call_id) -> E.164 or None: the number of a call this process did not place (the
        runtime passes the gate's call index), for opt-outs read back from AstDB (dialer/ami/astdb.py).
        astdb_interval: seconds between AstDB reads besides the one after each login (0: no AstDB reads)."""
        self.clock = clock
        self.on_outcome = on_outcome
        self.on_optout = on_optout
        self.sweep_interval = sweep_interval
        self.reconcile_min_age = reconcile_min_age
        self.clients: dict[str, AMIClient] = {}
        self.trackers: dict[str, CallTracker] = {}
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None
        self.astdb: dict[str, AstDBSync] = {}
        self._astdb_tasks: list[asyncio.Task] = []
        for server in servers:
            if server.name in self.clients:
                raise ValueError(f"two Asterisk servers are named {server.name!r}")
            client = AMIClient.from_server(server, **client_options)
            tracker = CallTracker(**(tracker_options or {}))
            self.clients[server.name] = client
            self.trackers[server.name] = tracker
            client.on_event(self._feeder(server.name, tracker))
            client.on_reconnect(self._reconciler(server.name, tracker))
            if on_optout is not None and astdb_interval > 0:
                self.astdb[server.name] = AstDBSync(server.name, client, tracker, on_optout, resolve_number,
                                                    astdb_interval)

    def _feeder(self, name: str, tracker: CallTracker) -> Callable[[Message], None]:
        def feed(message: Message) -> None:
            self._deliver(name, tracker.feed(message, self.clock()))

        return feed

    def _reconciler(self, name: str, tracker: CallTracker) -> Callable[[AMIClient], object]:
        async def after_reconnect(client: AMIClient) -> None:
            outcomes = await reconcile(client, tracker, clock=self.clock, min_age=self.reconcile_min_age)
            if outcomes:
                log.warning("AMI %s: %d in-flight attempts settled by reconciliation", name, len(outcomes))
            self._deliver(name, outcomes)

        return after_reconnect

    def _deliver(self, name: str, records: Iterable[Record]) -> None:
        for record in records:
            sink = self.on_optout if isinstance(record, OptOut) else self.on_outcome
            if sink is None:
                continue
            try:
                result = sink(name, record)  # type: ignore[arg-type]
            except Exception:
                log.exception("AMI %s: sink failed for call %s", name, record.call_id)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("AMI sink task failed", exc_info=task.exception())

    async def start(self) -> None:
        """Connect every server; one that is down keeps retrying in the background."""

        async def one(client: AMIClient) -> None:
            try:
                await client.connect()
            except AMIError as exc:
                log.error("AMI %s: %s; retrying in the background", client.name, exc)
                client.start()

        await asyncio.gather(*(one(c) for c in self.clients.values()))
        if self._sweeper is None and self.sweep_interval > 0:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="ami-sweep")
        if not self._astdb_tasks:
            self._astdb_tasks = [asyncio.create_task(sync.run(self.clock), name=f"ami-astdb-{name}")
                                 for name, sync in self.astdb.items()]

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            for name, client in self.clients.items():
                if client.connected:
                    self._deliver(name, self.trackers[name].sweep(self.clock()))

    def connected(self) -> list[str]:
        return [name for name, client in self.clients.items() if client.connected]

    async def originate(
        self, server: str, request: OriginateRequest, *, timeout: float | None = None
    ) -> OriginateResult:
        """Originate on one server. A refused Originate (status "refused") has no outcome: no call existed."""
        result = await originate(
            self.clients[server], self.trackers[server], request, clock=self.clock, timeout=timeout
        )
        if result.outcome is not None:
            self._deliver(server, [result.outcome])
        return result

    async def close(self) -> None:
        for sync in self.astdb.values():
            sync.stopping = True
        for task in self._astdb_tasks:
            task.cancel()
        if self._astdb_tasks:
            await asyncio.wait(self._astdb_tasks, timeout=5.0)
        self._astdb_tasks = []
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await asyncio.gather(*(c.close() for c in self.clients.values()))
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

    async def __aenter__(self) -> AMIPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
