"""The AMI wire protocol as a pure parser and encoder: bytes in, messages out.

No sockets and no clock here (the h11 approach): the client feeds whatever bytes the
transport delivered, in any split, and gets back whole messages. Bytes are buffered
until a message is complete and only then decoded, so a UTF-8 character split across
two reads is never lost.

Framing (as Asterisk sends it): a banner line `Asterisk Call Manager/X.Y.Z\\r\\n`, then
messages of `Key: Value\\r\\n` lines ended by an empty line. Keys may repeat
(`ChanVariable`, `Output`), so a message keeps its fields as an ordered list of pairs.
Old-style command output (`Response: Follows`) runs raw text up to `--END COMMAND--`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

END_COMMAND = b"--END COMMAND--"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a block this long without an end is garbage: dropped
_FOLLOWS_HEADERS = {"response", "privilege", "actionid", "message"}


class ProtocolError(ValueError):
    """An action could not be encoded (a value would break the framing)."""


@dataclass(frozen=True)
class Oversized:
    """A message longer than MAX_MESSAGE_BYTES was dropped. Its bytes up to its end are skipped (never read as
    messages), so the replies after it are delivered; `action_id` names the action it answered, if any."""

    first_line: str
    action_id: str | None
    dropped: int  # bytes dropped when it was detected (the rest of it is skipped as it arrives)


_ACTION_ID = re.compile(rb"(?im)^actionid:[ \t]*([^\r\n]*)")


@dataclass(frozen=True)
class Banner:
    """The greeting line, e.g. `Asterisk Call Manager/11.0.0`."""

    text: str

    @property
    def version(self) -> str:
        return self.text.rpartition("/")[2]


@dataclass
class Message:
    """One AMI message: an event or a response, with its fields in arrival order."""

    fields: list[tuple[str, str]]
    output: list[str] = field(default_factory=list)  # command output lines (Output: or Follows text)

    _index: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def get(self, key: str, default: str | None = None) -> str | None:
        """First value of `key` (case-insensitive), as Asterisk keys are matched."""
        # The index is built on first use (most events are never looked into) with the keys as
        # sent, since Asterisk spells its keys consistently; a miss falls back to comparing
        # case-insensitively the keys of the same length only (a miss is common: ActionID).
        index = self._index
        if index is None:
            index = self._index = dict(reversed(self.fields))  # reversed: the first value wins
        value = index.get(key)
        if value is not None:
            return value
        size = len(key)
        lower = key.lower()
        for k, v in self.fields:
            if len(k) == size and k.lower() == lower:
                return v
        return default

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def getall(self, key: str) -> list[str]:
        lower = key.lower()
        return [v for k, v in self.fields if k.lower() == lower]

    def variables(self, key: str = "ChanVariable") -> dict[str, str]:
        """`ChanVariable: NAME=value` (or `ChanVariable(NAME): value`) fields as a dict."""
        out: dict[str, str] = {}
        lower = key.lower()
        for k, v in self.fields:
            kl = k.lower()
            if kl == lower:
                name, _, value = v.partition("=")
                out[name] = value
            elif kl.startswith(lower + "(") and kl.endswith(")"):
                out[k[len(key) + 1 : -1]] = v
        return out

    @property
    def is_event(self) -> bool:
        return self.fields[0][0].lower() == "event"

    @property
    def is_response(self) -> bool:
        return self.fields[0][0].lower() == "response"

    @property
    def name(self) -> str:
        """The event name, or the response status (Success, Error, Follows, Goodbye)."""
        return self.fields[0][1]

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def as_dict(self) -> dict[str, str]:
        """Fields as a dict; a repeated key keeps its first value (use getall for the rest)."""
        out: dict[str, str] = {}
        for k, v in self.fields:
            out.setdefault(k, v)
        return out

    def __repr__(self) -> str:
        kind = "Event" if self.is_event else "Response"
        return f"<AMI {kind} {self.name} {self.action_id or ''}>".replace(" >", ">")


def _is_start(line: bytes) -> bool:
    head = line[:9].lower()
    return head.startswith(b"event:") or head.startswith(b"response:")


class Parser:
    """Incremental AMI parser. feed(bytes) -> list of Banner and Message, in order.

    Garbage is skipped, not fatal: lines before the first `Event:`/`Response:` line of a
    block are dropped (counted in `garbage_bytes`), so a well-formed message that
    follows noise is still delivered.

    Speed matters (a busy Asterisk sends tens of thousands of events a second): the
    buffer is scanned once with a compiled terminator regex from a moving offset and
    trimmed once per feed, and each block is decoded in one call.
    """

    def __init__(self, expect_banner: bool = True) -> None:
        self._buffer = bytearray()
        self._expect_banner = expect_banner
        self.garbage_bytes = 0
        self.oversized = 0  # messages dropped for their size
        self._skipping: bytes | None = None  # while skipping the rest of an oversized message: its end marker
        # The bytes left in the buffer hold no blank-line terminator (one message still arriving): the next feed
        # searches only the new bytes. Without it, a long message arriving in 64 KB reads was searched from its
        # start on every read (quadratic: a 4 MB reply took 6 s, over 30 s on a loaded machine).
        self._unterminated = False

    def _skip(self, buf: bytearray) -> bool:
        """Drop the rest of an oversized message; True once its end is found (parsing resumes after it)."""
        assert self._skipping is not None
        if self._skipping == END_COMMAND:
            marker = buf.find(END_COMMAND)
            eol = buf.find(b"\n", marker) if marker >= 0 else -1
            end = eol + 1 if eol >= 0 else -1
        else:
            match = _TERMINATOR.search(buf)
            end = match.end() if match else -1
        if end < 0:
            keep = len(END_COMMAND)  # an end marker may be split across two reads
            self.garbage_bytes += max(0, len(buf) - keep)
            del buf[:-keep]
            return False
        self.garbage_bytes += end
        del buf[:end]
        self._skipping = None
        return True

    def feed(self, data: bytes) -> list[Banner | Message | Oversized]:
        buf = self._buffer
        scanned = len(buf) if self._unterminated else 0  # bytes already known to hold no terminator
        self._unterminated = False
        buf += data
        out: list[Banner | Message | Oversized] = []
        if self._skipping is not None:
            scanned = 0
            if not self._skip(buf):
                return out
        pos = 0
        if self._expect_banner:
            end = buf.find(b"\n")
            if end < 0:
                return out
            line = bytes(buf[:end]).rstrip(b"\r")
            if not _is_start(line):  # a server that skips the banner still works
                pos = end + 1
                out.append(Banner(line.decode("utf-8", "replace")))
            self._expect_banner = False
        size = len(buf)
        if scanned and _TERMINATOR.search(buf, max(pos, scanned - 3)) is None:
            self._unterminated = True  # still inside one message: nothing to cut out yet
            return self._drop_oversized(buf, out)
        if pos < size and buf.find(b"\n\n", pos) < 0 and _FOLLOWS_ANYWHERE.search(buf, pos) is None:
            # Fast path for what Asterisk sends (CRLF framing, no old-style command output): cut
            # every complete message out with one decode and one split.
            end = buf.rfind(b"\r\n\r\n", pos)
            if end >= 0:
                text = buf[pos:end].decode("utf-8", "replace")
                pos = end + 4
                parse = self._parse_block
                for block in text.split("\r\n\r\n"):
                    if block[:1] in ("\r", "\n"):
                        block = block.lstrip("\r\n")
                    if block:
                        message = parse(block)
                        if message is not None:
                            out.append(message)
        search = _TERMINATOR.search
        while True:
            while pos < size and buf[pos] in (0x0D, 0x0A):  # blank lines between messages
                pos += 1
            if pos >= size:
                break
            match = search(buf, pos)
            if match is None:
                self._unterminated = True
                break
            stop = match.start()
            after = match.end()
            if _is_follows(buf[pos : pos + 17]):
                marker = buf.find(END_COMMAND, pos)
                following = _NEXT_MESSAGE.search(buf, stop)
                if following is not None and (marker < 0 or following.start() < marker):
                    # A new message starts before any end marker: this was no real command output
                    # (or a truncated one). Cut it there rather than swallow the events behind it.
                    stop, after = following.start(), following.end()
                else:
                    if marker < 0:
                        break  # old-style command output not complete yet
                    eol = buf.find(b"\n", marker)
                    if eol < 0:
                        break
                    stop, after = marker + len(END_COMMAND), eol + 1
            message = self._parse_block(buf[pos:stop].decode("utf-8", "replace"))
            pos = after
            if message is not None:
                out.append(message)
        if pos:
            del buf[:pos]
        return self._drop_oversized(buf, out)

    def _drop_oversized(self, buf: bytearray, out: list[Banner | Message | Oversized]) -> list[
            Banner | Message | Oversized]:
        """A message still incomplete past MAX_MESSAGE_BYTES is reported once and skipped to its end."""
        if len(buf) > MAX_MESSAGE_BYTES:
            self._unterminated = False
            head = bytes(buf[:4096])
            first = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")[:80]
            action = _ACTION_ID.search(head)
            out.append(Oversized(first, action.group(1).decode("utf-8", "replace").strip() if action else None,
                                 len(buf)))
            self.oversized += 1
            self._skipping = END_COMMAND if _is_follows(buf[:17]) else b"\r\n\r\n"
            self.garbage_bytes += len(buf) - 3
            del buf[:-3]  # the last bytes may be the start of its end marker
        return out

    def _parse_block(self, text: str) -> Message | None:
        if _is_start_text(text) and not _is_follows_text(text):
            # Fast path: every line a clean `Key: value` (always so from Asterisk), one regex pass.
            fields = _FIELD.findall(text)
            if len(fields) == text.count("\n") + 1:
                output = [v for k, v in fields if k.lower() == "output"] if "utput" in text or "UTPUT" in text else []
                return Message(fields, output)
        lines = text.replace("\r\n", "\n").split("\n")
        if _is_start_text(lines[0]):
            first = 0
        else:
            first = next((i for i, line in enumerate(lines) if _is_start_text(line)), -1)
            if first < 0:
                self.garbage_bytes += len(text)
                return None
            self.garbage_bytes += sum(len(line) + 1 for line in lines[:first])
            lines = lines[first:]
        fields: list[tuple[str, str]] = []
        output: list[str] = []
        if _is_follows_text(lines[0]):
            # Old-style command output: a few headers, then raw text (which may contain colons).
            i = 0
            while i < len(lines):
                key, sep, value = lines[i].partition(":")
                if not sep or key.strip().lower() not in _FOLLOWS_HEADERS:
                    break
                fields.append((key.strip(), value[1:] if value.startswith(" ") else value))
                i += 1
            output = [line for line in lines[i:] if line != _END_COMMAND_TEXT]
            return Message(fields, output)
        append = fields.append
        for line in lines:
            key, sep, value = line.partition(":")
            if not sep or not key or " " in key.strip():
                self.garbage_bytes += len(line) + 1
                continue
            if value[:1] == " ":
                value = value[1:]
            if key == "Output" or (key[0] in "oO" and key.lower() == "output"):
                output.append(value)
            append((key, value))
        return Message(fields, output)


_TERMINATOR = re.compile(rb"\r?\n\r?\n")
_FIELD = re.compile(r"^([^: \t\r\n]+): ?([^\r\n]*)\r?$", re.MULTILINE)
_FOLLOWS_ANYWHERE = re.compile(rb"response:[ \t]*follows", re.IGNORECASE)
_NEXT_MESSAGE = re.compile(rb"\r?\n\r?\n(?=event:|response:)", re.IGNORECASE)
_END_COMMAND_TEXT = END_COMMAND.decode()


def _is_follows_text(line: str) -> bool:
    head = line[:17].lower()
    return head == "response: follows" or head.startswith("response:follows")


def _is_start_text(line: str) -> bool:
    head = line[:9].lower()
    return head.startswith("event:") or head.startswith("response:")


def _is_follows(block: bytes) -> bool:
    head = block[:40].lower()
    return head.startswith(b"response: follows") or head.startswith(b"response:follows")


Fields = Mapping[str, object] | Iterable[tuple[str, object]]


def _pairs(fields: Fields) -> Iterator[tuple[str, object]]:
    items = fields.items() if isinstance(fields, Mapping) else fields
    for key, value in items:
        if isinstance(value, (list, tuple)):
            for one in value:
                yield key, one
        else:
            yield key, value


def _clean(text: str, what: str) -> str:
    if "\r" in text or "\n" in text:
        raise ProtocolError(f"{what} contains a line break, which would inject AMI lines")
    return text


def encode(fields: Fields) -> bytes:
    """One message (action or event) as wire bytes. Lists give repeated keys.

    Values with CR or LF are refused: they would let data (a contact's name, a
    campaign label) inject AMI commands.
    """
    out = []
    for key, value in _pairs(fields):
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append(f"{_clean(str(key), 'key')}: {_clean(str(value), key)}\r\n")
    if not out:
        raise ProtocolError("empty message")
    return ("".join(out) + "\r\n").encode("utf-8")


def encode_action(action: str, action_id: str, fields: Fields = ()) -> bytes:
    """`Action: X` + `ActionID` + fields. `Variable` may be a dict {NAME: value}."""
    pairs: list[tuple[str, object]] = [("Action", action), ("ActionID", action_id)]
    for key, value in _pairs(fields):
        pairs.append((key, value))
    return encode(pairs)


def variables(values: Mapping[str, object]) -> list[str]:
    """{NAME: value} as Originate `Variable` values (one field each)."""
    out = []
    for name, value in values.items():
        if "=" in name:
            raise ProtocolError(f"variable name {name!r} contains '='")
        out.append(f"{name}={value}")
    return out


def md5_key(challenge: str, secret: str) -> str:
    """The Key for `Login` with `AuthType: MD5`: md5(challenge + secret) in hex."""
    return hashlib.md5((challenge + secret).encode("utf-8")).hexdigest()
