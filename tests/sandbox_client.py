"""A small raw AMI reader for sandbox tests: real TCP, dialer.ami.protocol.Parser, nothing else.

Deliberately not the project's AMI client: these tests check the server's wire behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from dialer.ami.protocol import Banner, Message, Parser, encode_action

REFERENCE_NUMBERS = {
    "answer20": "5550001",
    "busy": "5550002",
    "noanswer": "5550003",
    "congestion": "5550004",
    "answer4": "5550005",
    "answer10": "5550006",
}


class RawAmi:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = Parser()
        self.banner: str | None = None
        self.messages: list[Message] = []
        self._seen = 0
        self.closed = False

    @classmethod
    async def connect(cls, port: int) -> RawAmi:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ami = cls(reader, writer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while ami.banner is None and not ami.closed and loop.time() < deadline:
            await ami._read_some(0.5)
        return ami

    async def send(self, action: str, action_id: str, fields: Iterable[tuple[str, object]] = ()) -> None:
        self.writer.write(encode_action(action, action_id, list(fields)))
        await self.writer.drain()

    async def _read_some(self, timeout: float) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            return True
        if not data:
            self.closed = True
            return False
        for item in self.parser.feed(data):
            if isinstance(item, Banner):
                self.banner = item.text
            else:
                self.messages.append(item)
        return True

    async def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 5.0) -> Message | None:
        """The first message (from the start of the connection) matching predicate."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for message in self.messages:
                if predicate(message):
                    return message
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._read_some(remaining):
                return None

    async def response(self, action_id: str, timeout: float = 5.0) -> Message:
        msg = await self.wait_for(lambda m: m.is_response and m.action_id == action_id, timeout)
        assert msg is not None, f"no response to {action_id}"
        return msg

    async def login(self, username: str = "dialer", secret: str = "dialer-secret") -> Message:
        await self.send("Login", "login", [("Username", username), ("Secret", secret)])
        return await self.response("login")

    async def collect(self, seconds: float) -> list[Message]:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end and not self.closed:
            await self._read_some(end - loop.time())
        return self.messages

    async def collect_until(self, predicate: Callable[[list[Message]], bool], timeout: float) -> list[Message]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not predicate(self.messages) and loop.time() < end and not self.closed:
            await self._read_some(min(0.2, end - loop.time()))
        return self.messages

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def originate_fields(number: str, context: str = "dialer-outbound", timeout_ms: int = 30000,
                     variables: dict[str, str] | None = None, tech: str = "Local/{number}@sim-callee"
                     ) -> list[tuple[str, object]]:  # fmt: skip
    fields: list[tuple[str, object]] = [
        ("Channel", tech.format(number=number)),
        ("Context", context),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Timeout", str(timeout_ms)),
        ("CallerID", "Dialer <100>"),
        ("Async", "true"),
    ]
    for name, value in (variables or {}).items():
        fields.append(("Variable", f"{name}={value}"))
    return fields


def group_by_call(messages: list[Message]) -> dict[str, list[Message]]:
    """Events of each call, keyed by the called number, in arrival order.

    A call is its Linkedid (or DestLinkedid / LocalOneLinkedid); the number comes from the
    `Local/<number>@...;1` channel whose Uniqueid is the Linkedid. Bridge events join the call of
    the channels that entered the bridge. OriginateResponse is grouped apart (by ActionID).
    """
    by_link: dict[str, list[Message]] = {}
    bridge_link: dict[str, str] = {}
    number_of: dict[str, str] = {}
    pending_bridge: list[Message] = []
    for m in messages:
        if not m.is_event:
            continue
        link = m.get("Linkedid") or m.get("DestLinkedid") or m.get("LocalOneLinkedid")
        if m.name == "Newchannel" and m.get("Uniqueid") == m.get("Linkedid"):
            number_of[m["Linkedid"]] = m["Channel"].split("/", 1)[1].split("@", 1)[0]
        if m.name.startswith("Bridge"):
            if link:
                bridge_link[m["BridgeUniqueid"]] = link
            else:
                pending_bridge.append(m)
                link = bridge_link.get(m.get("BridgeUniqueid", ""))
                if link is None:
                    continue
        if link:
            by_link.setdefault(link, []).append(m)
    out = {number_of.get(k, k): v for k, v in by_link.items()}
    # BridgeCreate comes before any BridgeEnter names the call: put it just before the first BridgeEnter.
    for m in pending_bridge:
        if m.name != "BridgeCreate":
            continue
        link = bridge_link.get(m["BridgeUniqueid"])
        if link is None:
            continue
        events = out[number_of.get(link, link)]
        first = next(i for i, e in enumerate(events) if e.get("BridgeUniqueid") == m["BridgeUniqueid"])
        events.insert(first, m)
    return out


def field_names(m: Message) -> frozenset[str]:
    return frozenset(k for k, _ in m.fields)


def per_channel(events: list[Message]) -> dict[str, list[tuple[str, frozenset[str]]]]:
    """Events of each channel (by its role in the call, not its name) in order."""
    out: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for m in events:
        chan = m.get("Channel")
        if chan is None:
            continue
        out.setdefault(channel_role(chan), []).append((m.name, field_names(m)))
    return out


def channel_role(name: str) -> str:
    """`Local/5550005@sim-callee-00000023;1` -> `callee;1`, `Local/7001@sim-agent-00000027;2` -> `agent;2`."""
    kind = "agent" if "@sim-agent-" in name else "callee"
    return f"{kind};{name.rsplit(';', 1)[-1]}"
