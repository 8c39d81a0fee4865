"""An asyncio AMI client for one Asterisk server, on top of the pure parser in protocol.py.

What it guarantees (and why we wrote it instead of using asterisk-ami or panoramisk, see
docs/ami-client.md):
- bytes are framed by `Parser` before decoding, so UTF-8 split across reads survives;
- one reader task per connection; a subscriber callback that raises is logged and the
  reader carries on; async callbacks run as tasks whose errors are logged too;
- every action carries an ActionID and waits on its own future with its own timeout;
  event lists (`EventList: start` ... `EventList: Complete`) come back as one result;
- writes go through one lock, so two coroutines never interleave bytes on the socket;
- a keepalive Ping with a reply deadline detects half-open connections (no FIN, no RST);
- after a loss it reconnects with exponential backoff and full jitter, logs in again and
  runs the `on_reconnect` hooks (reconciliation of in-flight calls);
- `close()` never hangs: every wait in it is bounded.

Actions are never queued while disconnected and never re-sent after a loss: a caller gets
`NotConnected` (nothing was written) or `ConnectionLost` (it may have reached Asterisk).
The difference matters for Originate: see dialer.ami.originate.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dialer.ami.protocol import MAX_MESSAGE_BYTES, Banner, Fields, Message, Oversized, Parser, encode_action, md5_key

if TYPE_CHECKING:
    from dialer.config import AsteriskServer

log = logging.getLogger(__name__)
# What Asterisk answers every action once its shutdown has begun (main/manager.c process_message), lower case.
SHUTTING_DOWN = "asterisk is shutting down"

EventCallback = Callable[[Message], object]  # may return an awaitable
ReconnectHook = Callable[["AMIClient"], Awaitable[None]]


class AMIError(Exception):
    """Base of every error this client raises."""


class NotConnected(AMIError):
    """The client has no live session: nothing was sent."""


class SendBlocked(NotConnected):
    """The action could not even be written within its deadline: another write is stuck behind a peer that
    stopped reading (a half-open connection with a full send buffer). Nothing was written."""


class ConnectionLost(AMIError):
    """The connection dropped after the action was written: it may or may not have run."""


class AuthenticationError(AMIError):
    """Asterisk refused the login (wrong user or secret, or the address is not permitted)."""


class OversizedReply(AMIError):
    """The reply was longer than the parser's limit (MAX_MESSAGE_BYTES) and was dropped."""


class ActionTimeout(AMIError):
    """No response within the action's deadline."""


class ActionFailed(AMIError):
    """Asterisk answered `Response: Error`."""

    def __init__(self, action: str, response: Message) -> None:
        self.action = action
        self.response = response
        detail = response.get("Message") or "no message"
        if response.output:  # a failed Command says why in its Output lines
            detail = f"{detail}: {' / '.join(response.output)}"
        super().__init__(f"AMI action {action} failed: {detail}")


@dataclass
class EventListResult:
    """The response of a list action and the events it announced, in order."""

    response: Message
    events: list[Message] = field(default_factory=list)


@dataclass
class _Pending:
    action: str
    future: asyncio.Future
    collect: bool  # an event-list action: complete on the `EventList: Complete` event
    response: Message | None = None
    events: list[Message] = field(default_factory=list)


class _Subscription:
    def __init__(self, client: AMIClient, names: frozenset[str] | None, maxsize: int) -> None:
        self.client = client
        self.names = names
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1  # a slow consumer loses events, never the reader; counted and logged
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("AMI %s: subscriber queue full, %d events dropped", self.client.name, self.dropped)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        message = await self.queue.get()
        if message is None:
            raise StopAsyncIteration
        return message

    def close(self) -> None:
        self.client._subscriptions.discard(self)
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class AMIClient:
    """One AMI session to one server, kept alive until close()."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        auth: str = "md5",
        name: str | None = None,
        events: str = "on",
        connect_timeout: float = 5.0,
        action_timeout: float = 10.0,
        ping_interval: float = 15.0,
        ping_timeout: float = 5.0,
        reconnect: bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if auth not in ("md5", "plain"):
            raise ValueError(f"auth must be md5 or plain, not {auth!r}")
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.auth = auth
        self.name = name or f"{host}:{port}"
        self.events_mask = events
        self.connect_timeout = connect_timeout
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect_enabled = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self.banner: Banner | None = None
        self.connections = 0  # successful logins so far (1 after connect, +1 per reconnect)
        self.opened = 0  # connections opened so far: numbers the current one from its first byte (events at login)
        self._ids = itertools.count(1)
        self._prefix = f"{random.getrandbits(32):08x}"
        self._pending: dict[str, _Pending] = {}
        self._callbacks: list[tuple[frozenset[str] | None, EventCallback]] = []
        self._subscriptions: set[_Subscription] = set()
        self._reconnect_hooks: list[ReconnectHook] = []
        self._send_lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._ping_task: asyncio.Task | None = None
        self._reconnect_task: asyncio.Task | None = None
        self._callback_tasks: set[asyncio.Task] = set()
        self._logged_in = False
        self._closing = False
        # Asterisk sent `Shutdown`, or answered "Asterisk is shutting down", on this connection: its close is expected
        self._shutdown_announced = False
        self._banner_event = asyncio.Event()
        self._ready = asyncio.Event()

    @classmethod
    def from_server(cls, server: AsteriskServer, **options: object) -> AMIClient:
        """Build from a dialer.config.AsteriskServer."""
        return cls(
            server.host, server.port, server.username, server.secret, auth=server.auth, name=server.name, **options
        )  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<AMIClient {self.name} {'up' if self.connected else 'down'}>"

    # -- state ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._logged_in and self._writer is not None and not self._writer.is_closing()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a session is up (after a reconnect, for example)."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # -- subscriptions ----------------------------------------------------------------
    def on_event(self, callback: EventCallback, names: Iterable[str] | None = None) -> Callable[[], None]:
        """Call `callback(message)` for every event (or only those named). Returns an unsubscribe.

        A callback that raises is logged and never stops the reader. A callback returning an
        awaitable runs as a task; its exception is logged too. Callbacks run in the reader,
        so keep synchronous ones quick.
        """
        entry = (frozenset(names) if names is not None else None, callback)
        self._callbacks.append(entry)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(entry)

        return unsubscribe

    def subscribe(self, names: Iterable[str] | None = None, maxsize: int = 0) -> _Subscription:
        """An async iterator of events (`async for event in client.subscribe(): ...`).

        Unbounded by default; with maxsize, a full queue drops (and counts) events rather than
        blocking the reader. `close()` on it ends the iteration.
        """
        sub = _Subscription(self, frozenset(names) if names is not None else None, maxsize)
        self._subscriptions.add(sub)
        return sub

    def on_reconnect(self, hook: ReconnectHook) -> None:
        """Run `await hook(client)` after every successful re-login (not the first login)."""
        self._reconnect_hooks.append(hook)

    # -- connection -------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the connection and log in. Raises AuthenticationError, NotConnected, ActionTimeout."""
        if self._closing:
            raise NotConnected(f"AMI {self.name}: client is closed")
        await self._open()

    async def _open(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise NotConnected(f"AMI {self.name}: cannot connect to {self.host}:{self.port}: {exc}") from None
        self._reader, self._writer = reader, writer
        self.opened += 1
        self._shutdown_announced = False
        self._banner_event = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read_loop(reader, writer), name=f"ami-reader-{self.name}")
        try:
            try:
                await asyncio.wait_for(self._banner_event.wait(), self.connect_timeout)
            except TimeoutError:
                raise NotConnected(
                    f"AMI {self.name}: no AMI banner from {self.host}:{self.port} within {self.connect_timeout:g} s"
                ) from None
            await self._login()
        except BaseException:
            await self._drop(writer, reason="login failed")
            raise
        self._logged_in = True
        self.connections += 1
        self._ready.set()
        if self.ping_interval > 0:
            self._ping_task = asyncio.create_task(self._ping_loop(writer), name=f"ami-ping-{self.name}")
        log.info("AMI %s: logged in as %s (%s)", self.name, self.username, self.banner.text if self.banner else "")

    async def _login(self) -> None:
        timeout = self.connect_timeout
        try:
            if self.auth == "md5":
                challenge = await self._request("Challenge", {"AuthType": "MD5"}, timeout=timeout, login=True)
                if not _ok(challenge) or not challenge.get("Challenge"):
                    raise AuthenticationError(
                        f"AMI {self.name}: MD5 challenge refused: {challenge.get('Message') or 'no challenge'}"
                    )
                fields = {
                    "AuthType": "MD5",
                    "Username": self.username,
                    "Key": md5_key(challenge["Challenge"], self._secret),
                    "Events": self.events_mask,
                }
            else:
                fields = {"Username": self.username, "Secret": self._secret, "Events": self.events_mask}
            response = await self._request("Login", fields, timeout=timeout, login=True)
        except ConnectionLost as exc:
            # Asterisk closes the socket right after a refused login on some versions.
            raise AuthenticationError(f"AMI {self.name}: connection closed during login ({exc})") from None
        if not _ok(response):
            raise AuthenticationError(
                f"AMI {self.name}: login as {self.username!r} refused: {response.get('Message') or 'no reason given'}"
            )

    async def close(self) -> None:
        """Log off and close. Bounded: never waits more than about a second."""
        self._closing = True
        for task in (self._reconnect_task, self._ping_task):
            await _cancel(task)
        writer = self._writer
        if writer is not None and self.connected:
            with contextlib.suppress(AMIError, OSError, TimeoutError):
                await self._request("Logoff", (), timeout=0.5)
        if writer is not None:
            await self._drop(writer, reason="closed")
        for task in list(self._callback_tasks):
            task.cancel()
        for sub in list(self._subscriptions):
            sub.close()

    async def __aenter__(self) -> AMIClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _drop(self, writer: asyncio.StreamWriter, reason: str) -> None:
        """Tear down one connection: fail its pending actions, stop its tasks."""
        if writer is not self._writer:
            return
        self._logged_in = False
        self._ready.clear()
        self._writer = None
        writer.transport.abort()  # abort, not close: a half-open peer would keep close() waiting
        for task in (self._reader_task, self._ping_task):
            await _cancel(task)
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(ConnectionLost(f"AMI {self.name}: {reason}"))
        if not self._closing and self.reconnect_enabled and self.connections and self._reconnect_task is None:
            log.info("AMI %s: reconnecting", self.name)
            self._reconnect_task = asyncio.create_task(self._reconnect_loop(), name=f"ami-reconnect-{self.name}")

    async def _lost(self, writer: asyncio.StreamWriter, reason: str) -> None:
        if writer is self._writer:
            if self._closing:  # our own Logoff: Asterisk says Goodbye and closes
                log.debug("AMI %s: connection closed after Logoff", self.name)
            elif self._shutdown_announced:  # Asterisk said it stops: expected, not a fault
                log.info("AMI %s: connection closed by Asterisk, which said it is shutting down", self.name)
            else:
                log.warning("AMI %s: connection lost (%s)", self.name, reason)
            await self._drop(writer, reason)

    def backoff(self, attempt: int) -> float:
        """Seconds before reconnect attempt n (0-based): exponential, capped, full jitter."""
        ceiling = min(self.backoff_max, self.backoff_initial * (2**attempt))
        return self._rng.uniform(ceiling / 2, ceiling)

    def start(self) -> None:
        """Connect in the background, retrying with backoff until it works (or close())."""
        if self._reconnect_task is None and not self.connected and not self._closing:
            self._reconnect_task = asyncio.create_task(self._reconnect_loop(first=True), name=f"ami-start-{self.name}")

    async def _reconnect_loop(self, first: bool = False) -> None:
        attempt = 0
        try:
            while not self._closing:
                if not (first and attempt == 0):
                    await asyncio.sleep(self.backoff(attempt - 1 if first else attempt))
                attempt += 1
                try:
                    await self._open()
                except AuthenticationError as exc:
                    log.error("%s (retrying)", exc)
                    continue
                except (AMIError, OSError) as exc:
                    log.warning("AMI %s: reconnect attempt %d failed: %s", self.name, attempt, exc)
                    continue
                except Exception:  # whatever it was, this loop must not die: it is the only way back
                    log.exception("AMI %s: reconnect attempt %d failed", self.name, attempt)
                    continue
                self._reconnect_task = None
                if first and self.connections == 1:
                    return  # a first login: nothing to reconcile
                for hook in list(self._reconnect_hooks):
                    try:
                        await hook(self)
                    except Exception:
                        log.exception("AMI %s: reconnect hook failed", self.name)
                return
        finally:
            if self._reconnect_task is asyncio.current_task():
                self._reconnect_task = None

    # -- reading ----------------------------------------------------------------------
    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = Parser()
        reason = "closed by the server"
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for item in parser.feed(data):
                    if isinstance(item, Banner):
                        self.banner = item
                        self._banner_event.set()
                    elif isinstance(item, Oversized):
                        self._oversized(item)
                    else:
                        self._dispatch(item)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.IncompleteReadError) as exc:
            reason = f"read error: {exc}"
        except Exception:  # a bug in dispatch must not leave a dead reader behind a live socket
            log.exception("AMI %s: reader failed", self.name)
            reason = "reader failed"
        self._spawn(self._lost(writer, reason))

    def _oversized(self, item: Oversized) -> None:
        """One line for a message dropped for its size; the action it answered fails now, not at its timeout."""
        pending = self._pending.pop(item.action_id, None) if item.action_id else None
        log.error("AMI %s: dropped a message longer than %d bytes (%r, ActionID %s)%s; the messages after it "
                  "are read normally", self.name, MAX_MESSAGE_BYTES, item.first_line, item.action_id or "none",
                  f": action {pending.action} fails" if pending else "")
        if pending is not None and not pending.future.done():
            pending.future.set_exception(OversizedReply(
                f"AMI {self.name}: the reply to {pending.action} was longer than {MAX_MESSAGE_BYTES} bytes and "
                "was dropped"))

    def _dispatch(self, message: Message) -> None:
        if message.is_response and SHUTTING_DOWN in (message.get("Message") or "").lower():
            # Asterisk refuses every action once its shutdown began; its `Shutdown` event may never reach us (on the
            # lab, `core restart gracefully` sometimes closed the socket before flushing it): the close is expected
            self._shutdown_announced = True
        action_id = message.get("ActionID")
        if action_id is not None:
            pending = self._pending.get(action_id)
            if pending is not None and self._complete_pending(action_id, pending, message):
                return
        if message.is_event:
            if message.name == "Shutdown":
                self._shutdown_announced = True
            self._publish(message)

    def _complete_pending(self, action_id: str, pending: _Pending, message: Message) -> bool:
        """Feed a message to the action waiting on its ActionID. True if it was consumed."""
        if message.is_response:
            if pending.response is not None:
                return False
            pending.response = message
            listing = (message.get("EventList") or "").lower() == "start"
            if not (pending.collect and listing and _ok(message)):
                self._pending.pop(action_id, None)
                if not pending.future.done():
                    pending.future.set_result(EventListResult(message) if pending.collect else message)
            return True
        if pending.collect and pending.response is not None:
            if (message.get("EventList") or "").lower() == "complete":
                self._pending.pop(action_id, None)
                if not pending.future.done():
                    pending.future.set_result(EventListResult(pending.response, pending.events))
            else:
                pending.events.append(message)
            return True
        return False

    def _publish(self, message: Message) -> None:
        name = message.name
        for names, callback in list(self._callbacks):
            if names is not None and name not in names:
                continue
            try:
                result = callback(message)
            except Exception:
                log.exception("AMI %s: event callback %r failed on %s", self.name, callback, name)
                continue
            if result is not None and inspect.isawaitable(result):
                self._spawn(result)
        for sub in list(self._subscriptions):
            if sub.names is None or name in sub.names:
                sub.put(message)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._callback_tasks.add(task)
        task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Task) -> None:
        self._callback_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("AMI %s: async event callback failed", self.name, exc_info=task.exception())

    # -- keepalive --------------------------------------------------------------------
    async def _ping_loop(self, writer: asyncio.StreamWriter) -> None:
        while writer is self._writer:
            await asyncio.sleep(self.ping_interval)
            try:
                await self._request("Ping", (), timeout=self.ping_timeout)
            except (ActionTimeout, SendBlocked):
                # No reply in time, or the Ping could not even be sent (writes stuck behind a peer that stopped
                # reading): the peer is gone without a FIN/RST (half-open). Drop it.
                self._spawn(self._lost(writer, f"no Ping reply within {self.ping_timeout:g} s"))
                return
            except (ConnectionLost, NotConnected):
                return

    # -- actions ----------------------------------------------------------------------
    def next_action_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def _write(self, data: bytes, *, login: bool = False, timeout: float | None = None) -> None:
        """Write one action. The deadline covers the wait for the send lock and the flush: a peer that stopped
        reading (half-open, send buffer full) must not hold a caller, or the keepalive Ping, forever."""
        writer = self._writer
        if writer is None or writer.is_closing() or not (self._logged_in or login):
            raise NotConnected(f"AMI {self.name}: not connected")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            await asyncio.wait_for(self._send_lock.acquire(), timeout)
        except TimeoutError:
            raise SendBlocked(f"AMI {self.name}: could not send within {timeout:g} s (writes blocked)") from None
        try:
            if writer is not self._writer or writer.is_closing():
                raise NotConnected(f"AMI {self.name}: not connected")
            writer.write(data)
            try:
                await asyncio.wait_for(writer.drain(), None if deadline is None else max(0.0, deadline - loop.time()))
            except TimeoutError:
                # Written into the transport's buffer, not flushed: it may still reach Asterisk.
                raise ActionTimeout(f"AMI {self.name}: write not flushed within {timeout:g} s") from None
            except (OSError, RuntimeError) as exc:
                raise ConnectionLost(f"AMI {self.name}: write failed: {exc}") from None
        finally:
            self._send_lock.release()

    async def _request(
        self,
        action: str,
        fields: Fields,
        *,
        timeout: float | None = None,
        action_id: str | None = None,
        collect: bool = False,
        login: bool = False,
    ) -> Message:
        action_id = action_id or self.next_action_id()
        if action_id in self._pending:
            raise ValueError(f"ActionID {action_id} is already waiting for a response")
        data = encode_action(action, action_id, fields)
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._pending[action_id] = _Pending(action, future, collect)
        limit = timeout if timeout is not None else self.action_timeout
        deadline = None if limit is None else loop.time() + limit
        try:
            await self._write(data, login=login, timeout=limit)
        except BaseException:
            pending = self._pending.get(action_id)
            if pending is not None and pending.future is future:
                del self._pending[action_id]
            raise
        try:
            return await asyncio.wait_for(future, None if deadline is None else max(0.0, deadline - loop.time()))
        except TimeoutError:
            pending = self._pending.get(action_id)
            if pending is not None and pending.future is future:
                del self._pending[action_id]
            raise ActionTimeout(
                f"AMI {self.name}: no response to {action} within {timeout or self.action_timeout:g} s"
            ) from None

    async def action(
        self,
        action: str,
        fields: Fields = (),
        *,
        timeout: float | None = None,
        action_id: str | None = None,
        check: bool = True,
    ) -> Message:
        """Send one action and return its response. `Response: Error` raises ActionFailed (check=False: returned)."""
        response = await self._request(action, fields, timeout=timeout, action_id=action_id)
        if check and (response.name or "").lower() == "error":
            raise ActionFailed(action, response)
        return response

    async def event_list(
        self, action: str, fields: Fields = (), *, timeout: float | None = None, check: bool = True
    ) -> EventListResult:
        """A list action (CoreShowChannels, QueueStatus, ...): its response and every listed event."""
        result = await self._request(action, fields, timeout=timeout, collect=True)
        assert isinstance(result, EventListResult)
        if check and (result.response.name or "").lower() == "error":
            raise ActionFailed(action, result.response)
        return result

    async def command(self, command: str, *, timeout: float | None = None) -> list[str]:
        """A CLI command's output lines (new `Output:` style or old `Response: Follows`)."""
        response = await self.action("Command", {"Command": command}, timeout=timeout)
        return list(response.output)

    async def ping(self, timeout: float | None = None) -> Message:
        return await self.action("Ping", timeout=timeout if timeout is not None else self.ping_timeout)


async def _cancel(task: asyncio.Task | None, wait: float = 0.5) -> None:
    """Cancel a task and wait a bounded time for it to finish (never the current task)."""
    if task is None or task is asyncio.current_task() or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(asyncio.shield(task), wait)


def _ok(message: Message) -> bool:
    return (message.name or "").lower() in ("success", "follows")
