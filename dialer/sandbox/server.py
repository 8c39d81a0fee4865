"""The sandbox PBX's AMI server: asyncio TCP, speaking the manager protocol as Asterisk 22 does.

    server = SandboxServer(SandboxSettings(port=0, time_scale=0.05, seed=1))
    await server.start()          # server.port is the bound port
    ...
    await server.stop()

Framing: banner `Asterisk Call Manager/11.0.0\\r\\n`, then `Key: Value\\r\\n` lines ended by an empty
line, in both directions (encoded with dialer.ami.protocol.encode). Events go to every logged-in
connection whose `Events` setting lets them through, as Asterisk does.

Test hooks: `restart()` (a crash: calls lost without events, connections closed, optionally down
for a while), `shutdown()` (`core restart now` / `core stop gracefully` as Asterisk does them: every
action refused while it stops, calls hung up with their events, a `Shutdown` event, connections
closed, `FullyBooted` after the restart), `drop_connections()`, `freeze()` / `unfreeze()` (stop
reading and writing without closing: a half-open connection as the client sees it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterable

from dialer.ami.protocol import encode, md5_key
from dialer.sandbox.dialplan import split_args
from dialer.sandbox.events import Fields
from dialer.sandbox.pbx import OriginateRequest, Pbx
from dialer.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
# main/manager.c process_message(): while ast_shutting_down(), every action (Login included) gets this answer.
SHUTTING_DOWN = "Asterisk is shutting down"
VERSION = "22.10.1"
MAX_ACTION_BYTES = 1024 * 1024
MAX_PENDING_BYTES = 32 * 1024 * 1024
EVENT_CLASSES = (
    "system",
    "call",
    "log",
    "verbose",
    "command",
    "agent",
    "user",
    "config",
    "dtmf",
    "reporting",
    "cdr",
    "dialplan",
    "originate",
    "agi",
    "cc",
    "aoc",
    "test",
    "security",
    "message",
)


# The classes an action is registered with in Asterisk (any one of them grants it); absent: none needed.
ACTION_CLASSES = {
    "originate": {"originate"},
    "hangup": {"system", "call"},
    "coreshowchannels": {"system", "reporting"},
    "getvar": {"call", "reporting"},
    "corestatus": {"system", "reporting"},
    "command": {"command"},
    # main/db.c (Asterisk 22): reads need system or reporting, writes system.
    "dbget": {"system", "reporting"},
    "dbgettree": {"system", "reporting"},
    "dbput": {"system"},
    "dbdel": {"system"},
    "dbdeltree": {"system"},
    "queuepause": {"agent"},  # apps/app_queue.c registers it with EVENT_FLAG_AGENT
}


class Action:
    """One action from the client: fields in order, keys matched case-insensitively."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields

    def get(self, key: str, default: str = "") -> str:
        lower = key.lower()
        for k, v in self.fields:
            if k.lower() == lower:
                return v
        return default

    def getall(self, key: str) -> list[str]:
        lower = key.lower()
        return [v for k, v in self.fields if k.lower() == lower]

    @property
    def name(self) -> str:
        return self.get("Action").strip()

    @property
    def action_id(self) -> str | None:
        value = self.get("ActionID", "")
        return value if any(k.lower() == "actionid" for k, _ in self.fields) else None


def parse_actions(buffer: bytearray) -> list[Action]:
    """Take complete actions (ended by an empty line) out of `buffer`."""
    out = []
    while True:
        crlf, lf = buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")
        if crlf < 0 and lf < 0:
            return out
        if crlf >= 0 and (lf < 0 or crlf <= lf):
            end, sep = crlf, 4
        else:
            end, sep = lf, 2
        block = bytes(buffer[:end]).decode("utf-8", "replace")
        del buffer[: end + sep]
        fields = []
        for line in block.replace("\r", "").split("\n"):
            key, colon, value = line.partition(":")
            if colon and key.strip():
                fields.append((key.strip(), value[1:] if value.startswith(" ") else value))
        if fields:
            out.append(Action(fields))


class Session:
    """One AMI connection."""

    def __init__(self, server: SandboxServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.authenticated = False
        self.challenge: str | None = None
        self.events: set[str] | None = None  # None: all classes; empty: off
        self.closed = False

    def send(self, fields: Fields) -> None:
        if self.closed or self.server.frozen:
            return
        self.send_bytes(encode(fields))

    def send_bytes(self, data: bytes) -> None:
        if self.closed or self.server.frozen:
            return
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError):
            self.closed = True
            return
        if self.writer.transport.get_write_buffer_size() > MAX_PENDING_BYTES:
            # A client that does not read: Asterisk gives up on it (writetimeout) rather than queue forever.
            log.warning("sandbox PBX: AMI client not reading, connection closed")
            self.abort()

    def wants(self, privilege: str) -> bool:
        if not self.authenticated:
            return False
        read = self.server.settings.read
        if "all" not in read and privilege.split(",")[0] not in read:
            return False
        if self.events is None:
            return True
        return bool(self.events) and privilege.split(",")[0] in self.events

    def respond(self, action: Action, status: str, fields: Iterable[tuple[str, str]] = ()) -> None:
        out: Fields = [("Response", status)]
        if action.action_id is not None:
            out.append(("ActionID", action.action_id))
        out.extend(fields)
        self.send(out)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()

    def abort(self) -> None:
        self.closed = True
        transport = self.writer.transport
        with contextlib.suppress(Exception):
            transport.abort()


def _encode_event(fields: Fields) -> bytes:
    """protocol.encode's output, faster: events are the bulk of the traffic (a call is ~80 of them).
    The line count proves no value carried a line break; if one did, protocol.encode refuses it."""
    text = "".join([f"{k}: {v}\r\n" for k, v in fields])
    if text.count("\n") != len(fields):
        return encode(fields)  # raises ProtocolError: a value would inject AMI lines
    return (text + "\r\n").encode("utf-8")


def _event_mask(value: str) -> set[str] | None:
    value = value.strip().lower()
    if value in ("on", "yes", "true", "all", "1"):
        return None
    if value in ("off", "no", "false", "0", ""):
        return set()
    return {part.strip() for part in value.split(",") if part.strip() in EVENT_CLASSES}


def machine_eid() -> str:
    """Asterisk's default entity id: a MAC address of this machine (main/netsock.c), 02:fc:... style."""
    import uuid

    node = uuid.getnode()
    return ":".join(f"{(node >> shift) & 0xFF:02x}" for shift in range(40, -8, -8))


class SandboxServer:
    """The sandbox PBX listening for AMI clients. See the module docstring for use in tests."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.pbx = Pbx(settings, self._broadcast)
        self.sessions: set[Session] = set()
        self.frozen = False
        self._unfrozen = asyncio.Event()
        self._unfrozen.set()
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = settings.port
        self.actions_handled = 0
        self.events_sent = 0
        self.last_reload = 0
        self.etc_dir = f"/etc/asterisk-sandbox-{secrets.token_hex(4)}"  # this instance's, as ASTETCDIR says
        self.shutting_down = False  # ast_begin_shutdown() was called: every action is refused
        self.booting = False  # listening, not fully booted yet: no FullyBooted at login, no dialplan

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.settings.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("sandbox PBX listening on %s:%s", self.settings.host, self.port)

    async def stop(self) -> None:
        self.unfreeze()
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.abort()
        self.pbx.reset()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    # -- test hooks -----------------------------------------------------------------------------------------

    def reload_queues(self, queues: dict[str, int]) -> None:
        """queues.conf edited, then `queue reload all` (queue name -> number of agents): see Pbx.reload_queues."""
        self.pbx.reload_queues(queues)

    def drop_connections(self) -> None:
        """Close every AMI connection at once (as a network cut would, with a reset)."""
        for session in list(self.sessions):
            session.abort()
        self.sessions.clear()

    async def restart(self, down_for: float = 0.0) -> None:
        """Asterisk restarts: connections dropped, every call lost without events, queues reset.
        With down_for > 0 the port refuses connections for that many (wall-clock) seconds."""
        self.unfreeze()
        self.drop_connections()
        self.pbx.reset()
        if down_for > 0 and self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            await asyncio.sleep(down_for)
            self._server = await asyncio.start_server(self._handle, self.settings.host, self.port)

    async def shutdown(self, *, restart: bool = True, graceful: bool = False, down_for: float = 0.5,
                       boot_for: float = 0.0, final_pause: float = 0.2, wait_limit: float = 60.0) -> None:
        """Asterisk 22 stopping (main/asterisk.c can_safely_quit and really_quit), times in wall seconds:
        1. ast_begin_shutdown(): from now on every action, Login and Ping included, is answered `Response: Error`,
           `Message: Asterisk is shutting down` (main/manager.c process_message);
        2. `core restart now` (graceful False): every channel is hung up at once, with its events; `core restart
           gracefully`: the calls in progress go on until they end by themselves (up to wait_limit here), but no new
           channel can be created: a call that reaches Dial() (AI endpoint) gets CHANUNAVAIL and one waiting in a
           queue reaches no agent (both take the abandon path, as on the lab PBX);
        3. if calls were up, a pause (Asterisk sleeps 1 s), then the `Shutdown` event (`Shutdown: Cleanly` or
           `Uncleanly`, `Restart: True|False`), every connection closed, the port closed;
        4. restart: down for down_for seconds, then listening again, booting for boot_for seconds (logins work, no
           FullyBooted, Originates refused `Extension does not exist.`: the dialplan is not loaded yet), then fully
           booted: the `FullyBooted` event to whoever is logged in, and at each later login. Queues start empty,
           calls are gone, AstDB is kept. Without restart the port stays closed (start() boots it again)."""
        self.unfreeze()
        self.shutting_down = True
        self.pbx.refusing_channels = True
        loop = asyncio.get_running_loop()
        waited = bool(self.pbx.calls)
        if not graceful:
            for call in list(self.pbx.calls):
                call.request_hangup(16)
        deadline = loop.time() + wait_limit
        while self.pbx.calls and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if waited and final_pause > 0:
            await asyncio.sleep(final_pause)
        self._broadcast([("Event", "Shutdown"), ("Privilege", "system,all"),
                         ("Shutdown", "Uncleanly" if self.pbx.calls else "Cleanly"),
                         ("Restart", "True" if restart else "False")])
        await asyncio.sleep(0)  # let the writers flush what they hold before the process "exits"
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.writer.drain(), 0.5)
            session.close()
        self.sessions.clear()
        self.pbx.reset()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if not restart:
            self.shutting_down = False
            return
        await asyncio.sleep(down_for)
        self.shutting_down = False
        self.booting = boot_for > 0
        self.pbx.reset()
        self._server = await asyncio.start_server(self._handle, self.settings.host, self.port)
        if boot_for > 0:
            await asyncio.sleep(boot_for)
            self.booting = False
            self._broadcast(self._fully_booted())

    def _fully_booted(self) -> Fields:
        return [("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", str(self.pbx.uptime)),
                ("LastReload", str(self.pbx.uptime)), ("Status", "Fully Booted")]

    def freeze(self) -> None:
        """Stop answering and sending, keep connections open (half-open from the client's side)."""
        self.frozen = True
        self._unfrozen.clear()

    def unfreeze(self) -> None:
        self.frozen = False
        self._unfrozen.set()

    # -- events ---------------------------------------------------------------------------------------------

    def _broadcast(self, fields: Fields) -> None:
        if self.frozen or not self.sessions:
            return
        privilege = fields[1][1] if len(fields) > 1 and fields[1][0] == "Privilege" else ""
        data = _encode_event(fields)
        for session in list(self.sessions):
            if session.wants(privilege):
                session.send_bytes(data)
                self.events_sent += 1

    # -- connections ----------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        session = Session(self, reader, writer)
        self.sessions.add(session)
        buffer = bytearray()
        try:
            session.send_bytes(BANNER)
            while not session.closed:
                data = await reader.read(65536)
                if not data:
                    break
                await self._unfrozen.wait()
                buffer += data
                if len(buffer) > MAX_ACTION_BYTES:
                    break
                for action in parse_actions(buffer):
                    self.actions_handled += 1
                    if not await self._dispatch(session, action):
                        session.closed = True
                        break
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self.sessions.discard(session)
            session.close()
            if task is not None:
                self._handlers.discard(task)

    async def _dispatch(self, session: Session, action: Action) -> bool:
        """Handle one action. False closes the connection."""
        name = action.name.lower()
        if self.shutting_down:
            session.respond(action, "Error", [("Message", SHUTTING_DOWN)])
            return True
        if name == "login":
            return self._login(session, action)
        if name == "challenge":
            if action.get("AuthType").lower() != "md5":
                session.respond(action, "Error", [("Message", "Must specify AuthType")])
                return True
            session.challenge = str(secrets.randbelow(10**9))
            session.respond(action, "Success", [("Challenge", session.challenge)])
            return True
        if name == "logoff":
            session.respond(action, "Goodbye", [("Message", "Thanks for all the fish.")])
            return False
        if not session.authenticated:
            session.respond(action, "Error", [("Message", "Authentication Required")])
            return True
        handler = getattr(self, f"_action_{name}", None)
        if handler is None:
            session.respond(action, "Error", [("Message", "Invalid/unknown command")])
            return True
        needed = ACTION_CLASSES.get(name)
        write = set(self.settings.write)
        if needed and "all" not in write and not needed & write:
            session.respond(action, "Error", [("Message", "Permission denied")])
            return True
        handler(session, action)
        return True

    def _login(self, session: Session, action: Action) -> bool:
        username = action.get("Username")
        ok = hmac.compare_digest(username.encode(), self.settings.username.encode())
        if action.get("AuthType").lower() == "md5":
            key = action.get("Key")
            expected = md5_key(session.challenge or "", self.settings.secret) if session.challenge else ""
            ok = ok and bool(expected) and hmac.compare_digest(key.encode(), expected.encode())
        else:
            ok = ok and hmac.compare_digest(action.get("Secret").encode(), self.settings.secret.encode())
        if not ok:
            # Asterisk answers and then closes the connection.
            session.respond(action, "Error", [("Message", "Authentication failed")])
            log.info("sandbox PBX: failed AMI login")
            return False
        session.authenticated = True
        if any(k.lower() == "events" for k, _ in action.fields):
            session.events = _event_mask(action.get("Events"))
        session.respond(action, "Success", [("Message", "Authentication accepted")])
        if session.wants("system") and not self.booting:  # manager.c action_login: only once ast_fully_booted
            session.send(self._fully_booted())
        return True

    # -- actions (authenticated) ----------------------------------------------------------------------------

    def _action_ping(self, session: Session, action: Action) -> None:
        session.respond(action, "Success", [("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")])

    def _action_events(self, session: Session, action: Action) -> None:
        session.events = _event_mask(action.get("EventMask"))
        session.respond(action, "Success", [("Events", "Off" if session.events == set() else "On")])

    def _action_originate(self, session: Session, action: Action) -> None:
        channel = action.get("Channel").strip()
        if not channel:
            session.respond(action, "Error", [("Message", "Channel not specified")])
            return
        if "/" not in channel:
            session.respond(action, "Error", [("Message", "Invalid channel")])
            return
        context, exten = action.get("Context").strip(), action.get("Exten").strip()
        if action.get("Application"):
            session.respond(action, "Error", [("Message", "The sandbox PBX runs Originate to an extension only")])
            return
        if not context or not exten:
            session.respond(action, "Error", [("Message", "Context and Exten must be specified")])
            return
        if self.booting or self.pbx.dialplan.extension(context, exten) is None:
            # manager.c action_originate checks the extension before any channel exists
            session.respond(action, "Error", [("Message", "Extension does not exist.")])
            return
        timeout_text = action.get("Timeout", "30000").strip() or "30000"
        if not timeout_text.isdigit():
            session.respond(action, "Error", [("Message", "Invalid timeout")])
            return
        if action.get("Async").strip().lower() not in ("true", "yes", "1", "on"):
            session.respond(action, "Error", [("Message", "The sandbox PBX supports Async: true only")])
            return
        variables: dict[str, str] = {}
        for header in action.getall("Variable"):
            # As Asterisk does (astman_get_variables): one header may hold several NAME=value, comma-separated.
            for value in split_args(header):
                name, eq, val = value.partition("=")
                if eq and name.strip():
                    variables[name.strip()] = val
        req = OriginateRequest(
            action_id=action.action_id or "",
            channel=channel,
            context=context,
            exten=exten,
            priority=action.get("Priority", "1").strip() or "1",
            timeout_ms=int(timeout_text),
            callerid=action.get("CallerID"),
            variables=variables,
        )
        session.respond(action, "Success", [("Message", "Originate successfully queued")])
        self.pbx.originate(req)

    def _action_hangup(self, session: Session, action: Action) -> None:
        name = action.get("Channel").strip()
        cause_text = action.get("Cause", "16").strip() or "16"
        cause = int(cause_text) if cause_text.isdigit() else 16
        if not name:
            session.respond(action, "Error", [("Message", "No channel specified")])
        elif self.pbx.hangup_channel(name, cause):
            session.respond(action, "Success", [("Message", "Channel Hungup")])
        else:
            session.respond(action, "Error", [("Message", "No such channel")])

    def _list_start(self, session: Session, action: Action, message: str) -> None:
        session.respond(action, "Success", [("EventList", "start"), ("Message", message)])

    def _list_item(self, session: Session, action: Action, event: str, fields: Fields, id_last: bool = False) -> None:
        aid = [("ActionID", action.action_id)] if action.action_id is not None else []
        session.send([("Event", event), *([] if id_last else aid), *fields, *(aid if id_last else [])])

    def _list_complete(self, session: Session, action: Action, event: str, count: int) -> None:
        aid = [("ActionID", action.action_id)] if action.action_id is not None else []
        session.send([("Event", event), *aid, ("EventList", "Complete"), ("ListItems", str(count))])

    def _action_coreshowchannels(self, session: Session, action: Action) -> None:
        self._list_start(session, action, "Channels will follow")
        now = self.pbx.now()
        channels = list(self.pbx.channels.values())
        for chan in channels:
            seconds = int(max(0.0, now - chan.created))
            duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            self._list_item(
                session,
                action,
                "CoreShowChannel",
                [
                    *self.pbx.snap(chan),
                    ("BridgeId", chan.bridge_id),
                    ("Application", chan.application),
                    ("ApplicationData", chan.appdata),
                    ("Duration", duration),
                ],
            )
        self._list_complete(session, action, "CoreShowChannelsComplete", len(channels))

    def _action_queuesummary(self, session: Session, action: Action) -> None:
        wanted = action.get("Queue").strip()
        self._list_start(session, action, "Queue summary will follow")
        count = 0
        for queue in self.pbx.queues.values():
            if wanted and queue.name.lower() != wanted.lower():  # strcasecmp, as app_queue.c
                continue
            count += 1
            available = self.pbx.reported_available(queue)
            longest = int(max((self.pbx.now() - w.joined for w in queue.waiting), default=0))
            self._list_item(
                session,
                action,
                "QueueSummary",
                [
                    ("Queue", queue.name),
                    ("LoggedIn", str(len(queue.members))),
                    ("Available", str(available)),
                    ("Callers", str(len(queue.waiting))),
                    ("HoldTime", str(int(queue.holdtime))),
                    ("TalkTime", str(int(queue.talktime))),
                    ("LongestHoldTime", str(longest)),
                ],
                id_last=True,
            )
        self._list_complete(session, action, "QueueSummaryComplete", count)

    def _action_queuestatus(self, session: Session, action: Action) -> None:
        wanted = action.get("Queue").strip()
        self._list_start(session, action, "Queue status will follow")
        count = 0
        for queue in self.pbx.queues.values():
            if wanted and queue.name.lower() != wanted.lower():  # strcasecmp, as app_queue.c
                continue
            count += 1
            self._list_item(
                session,
                action,
                "QueueParams",
                [
                    ("Queue", queue.name),
                    ("Max", "0"),
                    ("Strategy", "rrmemory"),
                    ("Calls", str(len(queue.waiting))),
                    ("Holdtime", str(int(queue.holdtime))),
                    ("TalkTime", str(int(queue.talktime))),
                    ("Completed", str(queue.completed)),
                    ("Abandoned", str(queue.abandoned)),
                    ("ServiceLevel", "0"),
                    ("ServicelevelPerf", "0.0"),
                    ("ServicelevelPerf2", "0.0"),
                    ("Weight", "0"),
                ],
                id_last=True,
            )
            for m in queue.members:
                count += 1
                # As app_queue.c reports a member: Status is its device state (1 NOT_INUSE, 2 INUSE), InCall whether
                # it is in a call now, Wrapuptime the member's own wrap-up setting (0: none set; the queue's
                # wrapuptime is reported nowhere). A member in wrap-up is Status 1, InCall 0: nothing says it.
                self._list_item(
                    session,
                    action,
                    "QueueMember",
                    [
                        ("Queue", queue.name),
                        ("Name", m.name),
                        ("Location", m.interface),
                        ("StateInterface", m.state_interface),
                        ("Membership", "static"),
                        ("Penalty", "0"),
                        ("CallsTaken", str(m.calls_taken)),
                        ("LastCall", str(m.last_call)),
                        ("LastPause", "0"),
                        ("LoginTime", str(m.login_time)),
                        ("InCall", "1" if m.in_call else "0"),
                        ("Status", str(m.status)),
                        ("Paused", "1" if m.paused else "0"),
                        ("PausedReason", ""),
                        ("Wrapuptime", "0"),
                    ],
                    id_last=True,
                )
            for position, waiter in enumerate(queue.waiting, start=1):
                chan = waiter.call.one
                if chan is None:
                    continue
                count += 1
                self._list_item(
                    session,
                    action,
                    "QueueEntry",
                    [
                        ("Queue", queue.name),
                        ("Position", str(position)),
                        ("Channel", chan.name),
                        ("Uniqueid", chan.uniqueid),
                        ("CallerIDNum", chan.cid_num),
                        ("CallerIDName", chan.cid_name),
                        ("ConnectedLineNum", chan.conn_num),
                        ("ConnectedLineName", chan.conn_name),
                        ("Wait", str(int(self.pbx.now() - waiter.joined))),
                        ("Priority", "0"),
                    ],
                    id_last=True,
                )
        self._list_complete(session, action, "QueueStatusComplete", count)

    def _action_getvar(self, session: Session, action: Action) -> None:
        # main/manager.c action_getvar: no channel -> the builtin and global variables (pbx_variables.c); unknown
        # variables answer an empty value.
        variable = action.get("Variable")
        if not variable:
            session.respond(action, "Error", [("Message", "No variable specified")])
            return
        channel = action.get("Channel")
        if channel and channel not in self.pbx.channels:
            session.respond(action, "Error", [("Message", "No such channel")])
            return
        builtins = {"SYSTEMNAME": self.settings.system_name, "ENTITYID": self.settings.entity_id or machine_eid(),
                    "ASTETCDIR": self.etc_dir}
        value = builtins.get(variable, "") if not channel else ""
        session.respond(action, "Success", [("Variable", variable), ("Value", value)])

    def _action_command(self, session: Session, action: Action) -> None:
        command = " ".join(action.get("Command").split()).lower()
        if command == "core show version":
            lines = [f"Asterisk {VERSION} (dialer sandbox PBX) built by python on a simulated host"]
        elif command == "core show uptime" or command == "core show uptime seconds":
            lines = [f"System uptime: {self.pbx.uptime}", f"Last reload: {self.pbx.uptime}"]
        elif command == "core show channels" or command == "core show channels count":
            n = len(self.pbx.channels)
            lines = [
                f"{n} active channels",
                f"{len(self.pbx.calls)} active calls",
                f"{self.pbx.originates} calls processed",
            ]
        else:
            session.respond(
                action,
                "Error",
                [
                    ("Message", "Command output follows"),
                    (
                        "Output",
                        f"No such command '{action.get('Command')}' (type 'core show help "
                        f"{action.get('Command')}' for other possible commands)",
                    ),
                ],
            )
            return
        session.respond(action, "Success", [("Message", "Command output follows"), *(("Output", x) for x in lines)])

    # -- AstDB (main/db.c: the same answers, messages and event fields as Asterisk 22) ----------------------

    def _action_dbput(self, session: Session, action: Action) -> None:
        family, key = action.get("Family"), action.get("Key")
        if not family:
            session.respond(action, "Error", [("Message", "No family specified")])
        elif not key:
            session.respond(action, "Error", [("Message", "No key specified")])
        elif not self.pbx.astdb.put(family, key, action.get("Val")):
            session.respond(action, "Error", [("Message", "Failed to update entry")])
        else:
            session.respond(action, "Success", [("Message", "Updated database successfully")])

    def _action_dbget(self, session: Session, action: Action) -> None:
        family, key = action.get("Family"), action.get("Key")
        if not family:
            session.respond(action, "Error", [("Message", "No family specified.")])
            return
        if not key:
            session.respond(action, "Error", [("Message", "No key specified.")])
            return
        value = self.pbx.astdb.get(family, key)
        if value is None:
            session.respond(action, "Error", [("Message", "Database entry not found")])
            return
        self._list_start(session, action, "Result will follow")
        self._list_item(session, action, "DBGetResponse", [("Family", family), ("Key", key), ("Val", value)],
                        id_last=True)
        self._list_complete(session, action, "DBGetComplete", 1)

    def _action_dbgettree(self, session: Session, action: Action) -> None:
        # Asterisk sends each entry's full key (/family/key) in Key, no Family field.
        family, key = action.get("Family"), action.get("Key")
        entries = self.pbx.astdb.tree(family, key if family else "")
        self._list_start(session, action, "Result will follow")
        for full, value in entries:
            self._list_item(session, action, "DBGetTreeResponse", [("Key", full), ("Val", value)], id_last=True)
        self._list_complete(session, action, "DBGetTreeComplete", len(entries))

    def _action_dbdel(self, session: Session, action: Action) -> None:
        family, key = action.get("Family"), action.get("Key")
        if not family:
            session.respond(action, "Error", [("Message", "No family specified.")])
        elif not key:
            session.respond(action, "Error", [("Message", "No key specified.")])
        elif not self.pbx.astdb.delete(family, key):
            session.respond(action, "Error", [("Message", "Database entry not found")])
        else:
            session.respond(action, "Success", [("Message", "Key deleted successfully")])

    def _action_dbdeltree(self, session: Session, action: Action) -> None:
        family = action.get("Family")
        if not family:
            session.respond(action, "Error", [("Message", "No family specified.")])
        elif self.pbx.astdb.delete_tree(family, action.get("Key")) == 0:
            session.respond(action, "Error", [("Message", "Database entry not found")])
        else:
            session.respond(action, "Success", [("Message", "Key tree deleted successfully")])

    def _action_queuepause(self, session: Session, action: Action) -> None:
        # apps/app_queue.c manager_pause_queue_member: Paused is read with ast_true (anything else unpauses)
        interface, paused_text = action.get("Interface").strip(), action.get("Paused").strip()
        if not interface or not paused_text:
            session.respond(action, "Error", [("Message", "Need 'Interface' and 'Paused' parameters.")])
            return
        paused = paused_text.lower() in ("yes", "true", "y", "t", "1", "on")
        if self.pbx.pause(interface, paused, action.get("Queue").strip(), action.get("Reason").strip()) == 0:
            session.respond(action, "Error", [("Message", "Interface not found")])
        else:
            word = "paused" if paused else "unpaused"
            session.respond(action, "Success", [("Message", f"Interface {word} successfully")])

    def _action_corestatus(self, session: Session, action: Action) -> None:
        boot = time.gmtime(self.pbx.boot_epoch)
        session.respond(
            action,
            "Success",
            [
                ("Message", "Core Status"),
                ("CoreStartupDate", time.strftime("%Y-%m-%d", boot)),
                ("CoreStartupTime", time.strftime("%H:%M:%S", boot)),
                ("CoreReloadDate", time.strftime("%Y-%m-%d", boot)),
                ("CoreReloadTime", time.strftime("%H:%M:%S", boot)),
                ("CoreCurrentCalls", str(len(self.pbx.calls))),
            ],
        )
