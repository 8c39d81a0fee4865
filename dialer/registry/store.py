"""National opposition registries in Redis: versioned roaring-bitmap snapshots and the reader the gate uses.

Layout (see docs/registry.md), for a registry NAME such as us_dnc:
  reg:NAME:current          string: "N:NONCE", the live version N (switched atomically by the commit script);
                            the random nonce tells cached copies apart even if numbering restarts
  reg:NAME:seq              counter: the last version number handed out
  reg:index                 set: names of the registries that went live (for names(), instead of SCAN)
  reg:NAME:lock             string: token of the one import in progress (expires if the importer dies)
  reg:NAME:vN:meta          hash: the version's metadata (loaded_at, source_hash, rows, added, ...)
  reg:NAME:vN:chunk:I       string: part I of the serialized pyroaring BitMap64 of E.164 integers
A version's keys are written beside the live one with an expiry (staging); the commit makes them permanent
and moves the pointer in one Lua script, so a reader sees the old version or the new one, never a mix.

Readers keep the deserialized bitmap of each registry in process memory (shared by every RegistryStore of
the process that talks to the same Redis) and re-read the pointer at most every `refresh_interval` seconds,
so a new version is seen everywhere within that delay.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from pyroaring import BitMap64

from dialer.redisconn import is_cluster
from dialer.registry.formats import overseas_alias
from dialer.registry.numbers import e164_to_int

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# 4 MiB minus room for the Redis string header, so each chunk fills one allocator size class exactly.
CHUNK_BYTES = 4 * 1024 * 1024 - 4096
STAGING_TTL_SECONDS = 24 * 3600  # a killed import's keys vanish by themselves even if no load follows
DEFAULT_REFRESH_INTERVAL = 1.0
_READ_RETRIES = 5


class RegistryError(Exception):
    """Base of the registry's errors."""


class RegistryNotLoaded(RegistryError, LookupError):
    """No version of this registry is live: callers must fail closed (deny)."""


class RegistryUnavailable(RegistryError):
    """The live version cannot be read (Redis down, damaged or missing chunks): callers must fail closed."""


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"registry name {name!r}: expected lowercase letters, digits and _ (at most 32)")
    return name


# Set of registry names that were ever loaded (names() reads it instead of SCAN, and keeps those with a live
# pointer). A registry's own keys carry its name as hash tag (reg:{NAME}:...): one registry, one cluster slot.
KEY_INDEX = "reg:index"


def key_current(name: str) -> str:
    return f"reg:{{{name}}}:current"


def key_seq(name: str) -> str:
    return f"reg:{{{name}}}:seq"


def key_lock(name: str) -> str:
    return f"reg:{{{name}}}:lock"


def key_meta(name: str, version: int) -> str:
    return f"reg:{{{name}}}:v{version}:meta"


def key_chunk(name: str, version: int, index: int) -> str:
    return f"reg:{{{name}}}:v{version}:chunk:{index}"


def version_keys(name: str, version: int, chunks: int) -> list[str]:
    return [key_meta(name, version)] + [key_chunk(name, version, i) for i in range(chunks)]


@dataclass(frozen=True)
class RegistryVersion:
    """One committed snapshot of a registry. `rows` is the number of distinct numbers in it."""

    name: str
    version: int
    loaded_at: datetime  # aware UTC
    source_hash: str  # sha256 of the imported file
    rows: int
    added: int  # numbers this version has that the previous one had not
    removed: int  # numbers the previous version had that this one has not
    invalid: int  # malformed lines in the imported file
    file_name: str = ""
    kind: str = "full"  # full | delta
    base_version: int | None = None
    lines: int = 0  # data lines read (blank and comment lines excluded)
    duplicates: int = 0
    format: str = ""
    blob_bytes: int = 0
    blob_sha256: str = ""
    chunks: int = 0
    obtained_at: datetime | None = None  # when the file was downloaded, if the importer said so (aware UTC)

    @property
    def copy_date(self) -> datetime:
        """The date the gate's freshness rules measure: when the copy was obtained from the registry if known,
        else when it was loaded (never later than the load)."""
        return min(self.obtained_at, self.loaded_at) if self.obtained_at else self.loaded_at

    def to_meta(self) -> dict[str, str]:
        return {
            "name": self.name, "version": str(self.version), "loaded_at": self.loaded_at.isoformat(),
            "source_hash": self.source_hash, "rows": str(self.rows), "added": str(self.added),
            "removed": str(self.removed), "invalid": str(self.invalid), "file_name": self.file_name,
            "kind": self.kind, "base_version": "" if self.base_version is None else str(self.base_version),
            "lines": str(self.lines), "duplicates": str(self.duplicates), "format": self.format,
            "blob_bytes": str(self.blob_bytes), "blob_sha256": self.blob_sha256, "chunks": str(self.chunks),
            "obtained_at": self.obtained_at.isoformat() if self.obtained_at else "",
        }

    @classmethod
    def from_meta(cls, meta: dict[bytes, bytes] | dict[str, str]) -> RegistryVersion:
        m = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in meta.items()}
        loaded_at = datetime.fromisoformat(m["loaded_at"])
        obtained_at = datetime.fromisoformat(m["obtained_at"]) if m.get("obtained_at") else None
        if loaded_at.tzinfo is None or (obtained_at is not None and obtained_at.tzinfo is None):
            raise ValueError("loaded_at or obtained_at without a time zone")
        return cls(
            name=m["name"], version=int(m["version"]), loaded_at=loaded_at.astimezone(UTC),
            source_hash=m["source_hash"], rows=int(m["rows"]), added=int(m["added"]), removed=int(m["removed"]),
            invalid=int(m["invalid"]), file_name=m.get("file_name", ""), kind=m.get("kind", "full"),
            base_version=int(m["base_version"]) if m.get("base_version") else None, lines=int(m.get("lines", 0)),
            duplicates=int(m.get("duplicates", 0)), format=m.get("format", ""),
            blob_bytes=int(m.get("blob_bytes", 0)), blob_sha256=m.get("blob_sha256", ""),
            chunks=int(m.get("chunks", 0)), obtained_at=obtained_at.astimezone(UTC) if obtained_at else None,
        )


def parse_pointer(raw: bytes | str) -> int:
    """The version number in a `reg:NAME:current` value ("N:NONCE")."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return int(text.split(":", 1)[0])


# French numbers (+33...) and the overseas codes (+262 ... +596) all lie in this range.
_MAYBE_ALIAS_LOW, _MAYBE_ALIAS_HIGH = 33_000_000_000, 597_000_000_000


def _member(number: int, bitmap: BitMap64) -> bool:
    if number in bitmap:
        return True
    if _MAYBE_ALIAS_LOW <= number < _MAYBE_ALIAS_HIGH:
        alias = overseas_alias(number)
        return alias is not None and alias in bitmap
    return False


@dataclass
class _Cached:
    pointer: bytes  # the `current` value this was read for
    version: RegistryVersion
    bitmap: BitMap64
    checked: float  # time.monotonic() of the last pointer check


# One cache per process: every RegistryStore talking to the same Redis shares the deserialized bitmaps,
# so creating a store per request does not fetch megabytes per request.
_CACHE: dict[tuple[str, str], _Cached] = {}
_CACHE_LOCK = threading.RLock()


def _server_identity(client: redis.Redis) -> str:
    if is_cluster(client):  # a cluster has no one pool: its seed nodes name it
        return "cluster|" + ",".join(sorted(node.name for node in client.nodes_manager.startup_nodes.values()))
    kwargs = client.connection_pool.connection_kwargs
    return "|".join(str(kwargs.get(k, "")) for k in ("host", "port", "path", "db"))


# Reads the pointer and the live version's metadata in one round trip.
_STATUS_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('HGETALL', ARGV[1] .. 'v' .. string.match(v, '^%d+') .. ':meta')}
"""


def _parse_meta(name: str, meta: dict) -> RegistryVersion:
    try:
        return RegistryVersion.from_meta(meta)
    except (KeyError, ValueError) as exc:
        raise RegistryUnavailable(f"registry {name}: unreadable version metadata ({exc})") from None


class RegistryStore:
    """Read side of the registries, as the gate uses it. Thread-safe; one per process is plenty.

    `refresh_interval`: at most this many seconds pass between two reads of the pointer, i.e. the longest
    a process keeps answering from a version after a newer one went live.
    """

    def __init__(self, redis_client: redis.Redis, refresh_interval: float = DEFAULT_REFRESH_INTERVAL) -> None:
        self.redis = redis_client
        self.refresh_interval = refresh_interval
        self._status_script = redis_client.register_script(_STATUS_SCRIPT)
        self._ident = _server_identity(redis_client)

    # -- the gate's interface -------------------------------------------------------------------------
    def contains(self, name: str, e164: str) -> bool:
        """Is this E.164 number in the live version? Raises RegistryNotLoaded / RegistryUnavailable
        (fail closed) and ValueError for a string that is not E.164."""
        return _member(e164_to_int(e164), self._live(name).bitmap)

    def contains_many(self, name: str, e164s: Sequence[str]) -> list[bool]:
        """Membership of each number, all answered from one version (one pointer check per call)."""
        numbers = [e164_to_int(e) for e in e164s]
        bitmap = self._live(name).bitmap
        return [n in bitmap or (_MAYBE_ALIAS_LOW <= n < _MAYBE_ALIAS_HIGH and _member(n, bitmap)) for n in numbers]

    def status(self, name: str) -> RegistryVersion | None:
        """Metadata of the live version (read from Redis, not the cache), or None when none is live."""
        check_name(name)
        try:
            found = self._status_script(keys=[key_current(name)], args=[f"reg:{{{name}}}:"])  # same slot
        except redis.RedisError as exc:
            raise RegistryUnavailable(f"registry {name}: cannot read status ({type(exc).__name__})") from None
        if not found:
            return None
        _, flat = found
        meta = dict(zip(flat[::2], flat[1::2], strict=True))
        if not meta:
            raise RegistryUnavailable(f"registry {name}: live version has no metadata")
        return _parse_meta(name, meta)

    def loaded_at(self, name: str) -> datetime | None:
        """Date of the live copy for freshness (REGISTRY_STALE): `copy_date`, i.e. when it was obtained if the
        import said so, else when it was loaded. None when no version is live."""
        found = self.status(name)
        return found.copy_date if found else None

    # -- more -----------------------------------------------------------------------------------------
    def contains_ints(self, name: str, numbers: Iterable[int]) -> list[bool]:
        """Like contains_many for E.164 integers (no string parsing)."""
        bitmap = self._live(name).bitmap
        return [_member(n, bitmap) for n in numbers]

    def names(self) -> list[str]:
        """Registries that have a live version."""
        known = sorted(n.decode() if isinstance(n, bytes) else n for n in self.redis.smembers(KEY_INDEX))
        pipe = self.redis.pipeline(transaction=False)
        for name in known:
            pipe.exists(key_current(name))
        return [name for name, live in zip(known, pipe.execute() if known else [], strict=True) if live]

    def fetch_live(self, name: str) -> tuple[RegistryVersion, BitMap64]:
        """The live version and a private copy of its bitmap, read now and not cached (for importers,
        so a worker process does not keep every registry it ever imported in memory)."""
        check_name(name)
        try:
            fresh = self._refresh(name, None)
        except redis.RedisError as exc:
            raise RegistryUnavailable(f"registry {name}: cannot read ({type(exc).__name__})") from None
        return fresh.version, fresh.bitmap

    def forget(self, name: str | None = None) -> None:
        """Drop this process's cached bitmaps (all registries, or one)."""
        with _CACHE_LOCK:
            for key in [k for k in _CACHE if k[0] == self._ident and (name is None or k[1] == name)]:
                del _CACHE[key]

    @staticmethod
    def forget_all() -> None:
        """Drop every cached bitmap of this process (tests; after restoring a Redis backup)."""
        with _CACHE_LOCK:
            _CACHE.clear()

    # -- internals ------------------------------------------------------------------------------------
    def _live(self, name: str) -> _Cached:
        cache_key = (self._ident, name)
        now = time.monotonic()
        cached = _CACHE.get(cache_key)
        if cached is not None and now - cached.checked < self.refresh_interval:
            return cached
        check_name(name)
        with _CACHE_LOCK:
            cached = _CACHE.get(cache_key)
            if cached is not None and now - cached.checked < self.refresh_interval:
                return cached
            try:
                fresh = self._refresh(name, cached)
            except redis.RedisError as exc:
                raise RegistryUnavailable(f"registry {name}: cannot read ({type(exc).__name__})") from None
            fresh.checked = time.monotonic()
            _CACHE[cache_key] = fresh
            return fresh

    def _refresh(self, name: str, cached: _Cached | None) -> _Cached:
        for _ in range(_READ_RETRIES):
            current = self.redis.get(key_current(name))
            if current is None:
                with _CACHE_LOCK:
                    _CACHE.pop((self._ident, name), None)
                raise RegistryNotLoaded(f"registry {name} is not loaded")
            if cached is not None and cached.pointer == current:
                return cached
            loaded = self._read_version(name, parse_pointer(current), current)
            if loaded is not None:
                return loaded
            # The version was replaced and deleted while we read it: read the pointer again.
        raise RegistryUnavailable(f"registry {name}: live version kept changing while being read")

    def _read_version(self, name: str, version: int, pointer: bytes) -> _Cached | None:
        meta = self.redis.hgetall(key_meta(name, version))
        if not meta:
            return None
        info = _parse_meta(name, meta)
        pipe = self.redis.pipeline(transaction=False)
        for i in range(info.chunks):
            pipe.get(key_chunk(name, version, i))
        parts = pipe.execute() if info.chunks else []
        if any(part is None for part in parts):
            return None
        blob = b"".join(parts)
        if len(blob) != info.blob_bytes or hashlib.sha256(blob).hexdigest() != info.blob_sha256:
            raise RegistryUnavailable(f"registry {name}: version {version} is damaged (checksum mismatch)")
        return _Cached(pointer, info, BitMap64.deserialize(blob), 0.0)
