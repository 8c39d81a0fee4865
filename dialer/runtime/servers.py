"""Whether each Asterisk server takes calls now: a server that refuses Originates is draining.

What Asterisk 22 does when it stops (main/asterisk.c, main/manager.c; seen on the lab PBX, issue 14): from the
moment `core stop|restart now|gracefully` begins, every action is answered `Response: Error` / `Message: Asterisk is
shutting down` (gracefully: until the last call has ended); then a `Shutdown` event, and the connection closes. After
a restart it accepts a login and, once every module is loaded, says `FullyBooted` (right after the login, or later as
an event). An Originate refused with `Response: Error` created no channel: it is not a call (dialer.ami.originate),
and the server that refused it is draining. Nothing is originated there until it is back:

* shutting down (that message, or a `Shutdown` event): back at the next `FullyBooted` (at the re-login after the
  restart, or as an event once the restarted Asterisk has booted), or when it answers a Ping again on the same
  connection (the shutdown was cancelled);
* any other refusal (permission denied, extension does not exist while it boots, ...): back at a `FullyBooted`, or
  after `retry_seconds`, when the next tick tries again (a configuration fixed by hand; a refusal is never counted).

Each episode is logged once (WARNING, naming the server and Asterisk's message) and its end once (INFO). The state is
published in Redis for `dialer trunk status` and the dashboard (ServerWatch; read back with `draining_servers`).

ServerStates is pure: the runtime feeds it refusals, events and Ping answers with the connection number and `now`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dialer.ami.protocol import Message

log = logging.getLogger(__name__)

SHUTTING_DOWN = "Asterisk is shutting down"
RETRY_SECONDS = 30.0


@dataclass
class ServerState:
    name: str
    draining: bool = False
    shutting_down: bool = False  # Asterisk is stopping: wait for it to be fully booted again (no probe by Originate)
    message: str = ""  # Asterisk's own words (or the Shutdown event's)
    since: float = 0.0  # wall seconds
    last_refusal: float = 0.0
    connection: int = 0  # the client's connection number when the episode began
    refused: int = 0  # Originates refused in this episode


class ServerStates:
    """The dialing state of every server of this process. Methods that change it return a log line (or None)."""

    def __init__(self, names: Iterable[str], retry_seconds: float = RETRY_SECONDS) -> None:
        self.retry_seconds = retry_seconds
        self.servers = {name: ServerState(name) for name in names}

    def usable(self, name: str, now: float) -> bool:
        state = self.servers.get(name)
        if state is None or not state.draining:
            return True
        return not state.shutting_down and now - state.last_refusal >= self.retry_seconds

    def draining(self) -> list[ServerState]:
        return [s for s in self.servers.values() if s.draining]

    def refused(self, name: str, message: str, connection: int, now: float, what: str = "an Originate") -> str | None:
        """An Originate was answered `Response: Error` (no channel existed), or another action `Asterisk is shutting
        down`."""
        state = self.servers[name]
        shutting = SHUTTING_DOWN.lower() in message.lower()
        new = not state.draining
        if new:
            state.draining, state.since, state.refused, state.connection = True, now, 0, connection
        state.shutting_down = state.shutting_down or shutting
        state.message = message if (new or shutting) else state.message
        state.last_refusal = now
        state.refused += 1
        if not new:
            return None
        until = ("until it is fully booted again" if shutting else
                 f"until it says it is fully booted, or for {self.retry_seconds:g} s")
        return (f"server {name} is draining: Asterisk refused {what} ({message or 'no message'}); no calls are "
                f"placed there {until}; the refused contacts go back to their queue, no attempt counted")

    def accepted(self, name: str, now: float) -> str | None:
        """An Originate was queued: a server that was only being probed (not shutting down) is back."""
        state = self.servers.get(name)
        if state is None or not state.draining or state.shutting_down:
            return None
        return self._resume(state, now, "accepts Originates again")

    def on_event(self, name: str, message: Message, connection: int, now: float) -> str | None:
        """`Shutdown` starts (or confirms) a drain; `FullyBooted` on a later connection ends it."""
        state = self.servers.get(name)
        if state is None:
            return None
        if message.name == "Shutdown":
            text = f"Shutdown event ({message.get('Shutdown') or '?'}, restart {message.get('Restart') or '?'})"
            if state.draining:
                state.shutting_down = True
                return None
            state.draining, state.shutting_down, state.message = True, True, text
            state.since, state.last_refusal, state.refused, state.connection = now, now, 0, connection
            return f"server {name} is draining: {text}; no calls are placed there until it is fully booted again"
        if message.name == "FullyBooted" and state.draining:
            # Sent right after a login (so before any refusal on that connection: it cannot end a later drain), or
            # as an event when a booting Asterisk has loaded everything: either way it takes calls again.
            return self._resume(state, now, "is fully booted again")
        return None

    def ping_answered(self, name: str, connection: int, now: float) -> str | None:
        """A Ping answered Success on the connection the drain began on: the shutdown was cancelled."""
        state = self.servers.get(name)
        if state is None or not state.draining or connection != state.connection:
            return None
        return self._resume(state, now, "answers actions again (its shutdown was cancelled)")

    def _resume(self, state: ServerState, now: float, why: str) -> str:
        line = (f"server {state.name} {why}: dialing resumes (drained {now - state.since:.1f} s, "
                f"{state.refused} Originates refused and given back)")
        state.draining = state.shutting_down = False
        state.refused = 0
        return line


# -- Redis: what `dialer trunk status` and the dashboard show ------------------------------------------------------


# One small hash for every server (field: host:port), so a reader (the dashboard, each second) never scans keys.
# Each value carries `until`: a process that died stops refreshing it and readers ignore it after that.
DRAINING_KEY = "dialer:servers:draining"


def current_draining(raw: dict[Any, Any], now: float) -> dict[str, dict[str, Any]]:
    """{host:port: state} from the hash's contents, without the entries nobody refreshed in time."""
    out = {}
    for field_, value in raw.items():
        address = field_.decode() if isinstance(field_, bytes) else str(field_)
        try:
            state = json.loads(value)
        except ValueError:
            continue
        if float(state.get("until", 0)) >= now:
            out[address] = state
    return out


def draining_servers(client: Any, addresses: dict[str, str], now: float | None = None) -> dict[str, dict[str, Any]]:
    """{server name: {server, message, since, refused, process, ...}} for the servers (name -> host:port) some
    process sees draining now."""
    found = current_draining(client.hgetall(DRAINING_KEY), time.time() if now is None else now)
    return {name: found[address] for name, address in addresses.items() if address in found}


class ServerWatch:
    """The I/O around ServerStates for one engine: events and Pings from the AMI clients, the log lines, and the
    state in Redis (refreshed every `every` seconds, expiring when nobody refreshes it)."""

    def __init__(self, clients: dict[str, Any], addresses: dict[str, str], redis_client: Any, process_id: str,
                 *, retry_seconds: float = RETRY_SECONDS, every: float = 1.0, ttl: float = 60.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.clients = clients
        self.addresses = addresses
        self.redis = redis_client
        self.process_id = process_id
        self.states = ServerStates(clients, retry_seconds)
        self.every = every
        self.ttl = ttl
        self.wall = wall
        self._published: set[str] = set()
        for name, client in clients.items():
            client.on_event(self._feeder(name), names=["Shutdown", "FullyBooted"])

    def _feeder(self, name: str) -> Callable[[Message], None]:
        def feed(message: Message) -> None:
            self._log(self.states.on_event(name, message, self.clients[name].opened, self.wall()))

        return feed

    @staticmethod
    def _log(line: str | None, level: int = logging.INFO) -> None:
        if line:
            log.log(logging.WARNING if "is draining" in line else level, line)

    def usable(self, names: Iterable[str]) -> list[str]:
        now = self.wall()
        return [name for name in names if self.states.usable(name, now)]

    def refused(self, name: str, message: str, what: str = "an Originate") -> None:
        self._log(self.states.refused(name, message, self.clients[name].opened, self.wall(), what))

    def check_refusal(self, name: str, exc: Exception) -> bool:
        """An action other than Originate failed: True (and the server drains) when Asterisk is shutting down."""
        response = getattr(exc, "response", None)
        message = (response.get("Message") or "") if response is not None else ""
        if SHUTTING_DOWN.lower() not in message.lower():
            return False
        self.refused(name, message, f"an action ({getattr(exc, 'action', '?')})")
        return True

    def accepted(self, name: str) -> None:
        state = self.states.servers.get(name)
        if state is not None and state.draining:
            self._log(self.states.accepted(name, self.wall()))

    async def run(self) -> None:
        """Probe draining servers (a Ping on the same connection says whether the shutdown was cancelled) and keep
        the published state current. Runs until cancelled."""
        while True:
            for state in self.states.draining():
                client = self.clients[state.name]
                if client.connected and client.opened == state.connection:
                    try:
                        answer = await client.action("Ping", timeout=2.0, check=False)
                    except Exception:  # not connected, timed out: the reconnect and FullyBooted decide
                        answer = None
                    if answer is not None and (answer.name or "").lower() == "success":
                        self._log(self.states.ping_answered(state.name, client.opened, self.wall()))
            try:
                await asyncio.to_thread(self.publish)
            except Exception as exc:  # Redis down: the display lags, dialing decisions do not depend on it
                log.debug("server states not published (%s)", exc)
            await asyncio.sleep(self.every)

    def publish(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        now = self.wall()
        current = set()
        for state in self.states.draining():
            address = self.addresses[state.name]
            current.add(address)
            value = {"server": state.name, "message": state.message, "since": state.since, "process": self.process_id,
                     "refused": state.refused, "shutting_down": state.shutting_down, "at": now,
                     "until": now + self.ttl}
            pipe.hset(DRAINING_KEY, address, json.dumps(value))
        for address in self._published - current:
            pipe.hdel(DRAINING_KEY, address)
        pipe.execute()
        self._published = current

    def clear(self) -> None:
        """At shutdown: this process no longer vouches for what it published."""
        if self._published:
            self.redis.hdel(DRAINING_KEY, *self._published)
            self._published = set()
