"""Which Redis keys each Lua script really touched, seen from the server: MONITOR on a real redis-server.

Redis Cluster runs a script on the node that owns its declared KEYS' slot. Keys a script builds itself (from a
prefix in ARGV) are not seen by the client, and Redis 6.2 only refuses them when they live on another node,
so a script that mixes slots of one node works until a resharding moves one of them (Redis 7 refuses any
cross-slot access). This audit sees every command a script ran (MONITOR tags them `lua`) and checks that the
declared keys and every key touched hash to one slot, and that a script that touches keys declares at least one
(else the cluster client sends it to a random node). MULTI blocks need no audit here: the cluster client and
server refuse cross-slot transactions themselves (CROSSSLOT), which the cluster tests exercise.

Used by tests/test_redis_slots.py, and by any test run with DIALER_SLOT_AUDIT=1 (tests/conftest.py): the
whole suite's scripts, audited on the session's redis-server.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import re
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis
from redis.cluster import key_slot

_LINE = re.compile(rb'^\+?(\d+\.\d+) \[(\d+) ([^\]]+)\] (.*)$')
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESC = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b"\\": b"\\", b'"': b'"'}


def _unescape(raw: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(raw):
        c = raw[i:i + 1]
        if c == b"\\" and i + 1 < len(raw):
            nxt = raw[i + 1:i + 2]
            if nxt == b"x":
                out += bytes([int(raw[i + 2:i + 4], 16)])
                i += 4
                continue
            out += _ESC.get(nxt, nxt)
            i += 2
            continue
        out += c
        i += 1
    return bytes(out)


def parse_line(line: bytes) -> tuple[str, list[bytes]] | None:
    """(source: "lua" or the client's address, argv) of one MONITOR line."""
    found = _LINE.match(line)
    if not found:
        return None
    return found.group(3).decode(), [_unescape(a) for a in _ARG.findall(found.group(4))]


@dataclass
class ScriptRun:
    script: str  # sha1 of the body
    declared: list[bytes]
    touched: list[bytes] = field(default_factory=list)

    def slots(self) -> set[int]:
        return {key_slot(k) for k in [*self.declared, *self.touched]}

    def problem(self) -> str | None:
        if self.touched and not self.declared and self.script != "MULTI":
            return "touches keys but declares none (a cluster client would send it to a random node)"
        if len(self.slots()) > 1:
            return f"keys in {len(self.slots())} hash slots"
        return None


class KeyFinder:
    """The key arguments of a command, as the server itself defines them (COMMAND INFO, COMMAND GETKEYS)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.info: dict[str, tuple[int, int, int, bool]] = {}

    def keys(self, argv: list[bytes]) -> list[bytes]:
        name = argv[0].decode().lower()
        if name not in self.info:
            raw = self.client.execute_command("COMMAND", "INFO", name).get(name)
            self.info[name] = (raw["first_key_pos"], raw["last_key_pos"], raw["step_count"],
                               "movablekeys" in raw["flags"]) if raw else (0, 0, 0, False)
        first, last, step, movable = self.info[name]
        if movable:
            try:
                return [k if isinstance(k, bytes) else k.encode() for k in self.client.command_getkeys(*argv)]
            except redis.ResponseError:
                return []
        if first == 0:
            return []
        end = len(argv) + last if last < 0 else last + 1
        return argv[first:end:step]


def script_runs(lines: Iterable[bytes], finder: KeyFinder) -> list[ScriptRun]:
    """Every script run (EVAL/EVALSHA and the `lua` lines after it) and every MULTI block (Redis 6.2 feeds
    MONITOR each queued command as it arrives, then EXEC), as ScriptRun ("MULTI" for a transaction: its keys
    count as declared)."""
    runs: list[ScriptRun] = []
    current: ScriptRun | None = None
    multi: dict[str, ScriptRun] = {}
    for line in lines:
        parsed = parse_line(line)
        if parsed is None:
            continue
        source, argv = parsed
        if not argv:
            continue
        name = argv[0].upper()
        if source == "lua":
            if current is not None:
                current.touched += finder.keys(argv)
            continue
        current = None
        if name == b"MULTI":
            multi[source] = ScriptRun("MULTI", [])
        elif name == b"EXEC" and source in multi:
            runs.append(multi.pop(source))
        elif name == b"DISCARD":
            multi.pop(source, None)
        elif source in multi:
            multi[source].declared += finder.keys(argv)
        elif name in (b"EVAL", b"EVALSHA") and len(argv) >= 3:
            sha = argv[1].decode() if name == b"EVALSHA" else hashlib.sha1(argv[1]).hexdigest()
            current = ScriptRun(sha, finder.keys(argv))
            runs.append(current)
    return runs


def known_scripts(packages: tuple[str, ...] = ("dialer", "gateway")) -> dict[str, str]:
    """sha1 -> "module.NAME" of every module-level Lua script in our packages (a str calling redis.call)."""
    found: dict[str, str] = {}
    for package in packages:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.name.endswith(".__main__"):  # importing it runs the CLI
                continue
            try:
                module = importlib.import_module(info.name)
            except Exception:  # a module that needs an optional dependency: not one of ours with scripts
                continue
            for attr, value in vars(module).items():
                if isinstance(value, str) and "redis.call(" in value and getattr(module, "__name__", "") == info.name:
                    found.setdefault(hashlib.sha1(value.encode()).hexdigest(), f"{info.name}.{attr}")
    return found


class SlotAudit:
    """MONITOR a redis-server (host, port) while the block runs; then .runs, .problems()."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.lines: list[bytes] = []
        self.runs: list[ScriptRun] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SlotAudit:
        self._sock = socket.create_connection((self.host, self.port))
        self._sock.sendall(b"MONITOR\r\n")
        reader = self._sock.makefile("rb")
        assert reader.readline().startswith(b"+OK")

        def read() -> None:
            for line in reader:
                self.lines.append(line.rstrip(b"\r\n"))

        self._thread = threading.Thread(target=read, daemon=True, name="slot-audit")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        marker = f"slot-audit-end-{id(self)}"
        with redis.Redis(host=self.host, port=self.port) as client:
            client.echo(marker)  # the last line we wait for: everything before it was read
            deadline = 0
            while not any(marker.encode() in line for line in self.lines[-50:]) and deadline < 3000:
                threading.Event().wait(0.01)
                deadline += 1
            assert self._sock is not None
            self._sock.close()
            self.runs = script_runs(self.lines, KeyFinder(client))

    def problems(self, names: dict[str, str] | None = None) -> list[str]:
        names = names or {}
        seen: dict[tuple[str, str], ScriptRun] = {}
        for run in self.runs:
            problem = run.problem()
            if problem:
                seen.setdefault((run.script, problem), run)
        return [f"{names.get(sha, sha)}: {problem}; e.g. keys {sorted({*run.declared, *run.touched})[:6]}"
                for (sha, problem), run in seen.items()]

    def scripts_run(self) -> set[str]:
        return {run.script for run in self.runs}
