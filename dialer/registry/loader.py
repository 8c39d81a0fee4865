"""Import a registry file as a new version: stream, check, stage beside the live version, swap atomically.

A full load builds the version from the file alone; a change file (`delta`) builds it from the live version
plus additions minus deletions. Either way the live version is never modified: the new one is staged under
its own keys (with an expiry) and becomes live in one Lua script that moves the pointer. A refused load
(too many bad lines, empty file, no live version for a change file, another import running) or a killed one
changes nothing that readers see; its staged keys are deleted by the next load or expire by themselves.

Memory is proportional to the bitmap, not the file: the file is read in blocks, numbers are added to the
bitmap in batches, and only the first MAX_REPORTED_ERRORS bad lines are kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from pyroaring import BitMap64

from dialer.logs import mask
from dialer.registry.formats import ADD, CsvLineParser, HeaderError, LineError, NationalLineParser, format_for
from dialer.registry.sources import Source, SourceError
from dialer.registry.store import (
    CHUNK_BYTES,
    KEY_INDEX,
    STAGING_TTL_SECONDS,
    RegistryError,
    RegistryStore,
    RegistryUnavailable,
    RegistryVersion,
    check_name,
    key_chunk,
    key_current,
    key_lock,
    key_meta,
    key_seq,
    parse_pointer,
    version_keys,
)

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 100
DEFAULT_MAX_BAD_SHARE = 0.01
# A full file that would drop more than this share of the live version's numbers is refused unless forced:
# a truncated download or a file of the wrong area codes would otherwise silently unblock millions of people.
DEFAULT_MAX_SHRINK_SHARE = 0.2
DEFAULT_LOCK_TTL = 30.0
READ_BLOCK = 1 << 20
_BATCH = 1 << 16
MAX_LINE_BYTES = 4096
_TOO_LONG = bytearray(b"<too long>")  # a unique object, told apart by identity

# progress(stage, done, total): stage "read" counts bytes of the file, "write" counts bytes of the bitmap.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BadLine:
    line: int  # 1-based line number in the file
    reason: str
    file: str = ""  # the file inside a zip archive of several files ("416.txt"), else ""

    def where(self) -> str:
        return f"{self.file} line {self.line}" if self.file else f"line {self.line}"


@dataclass
class LoadReport:
    name: str
    kind: str  # full | delta
    file_name: str
    format: str
    source_hash: str = ""
    lines: int = 0  # data lines (blank and comment lines are not counted)
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)  # the first MAX_REPORTED_ERRORS
    version: RegistryVersion | None = None  # set when committed
    refused: str = ""  # why nothing was changed, when refused
    seconds: float = 0.0

    @property
    def committed(self) -> bool:
        return self.version is not None

    @property
    def bad_share(self) -> float:
        return self.invalid / self.lines if self.lines else 0.0

    def as_dict(self) -> dict:
        """JSON-ready summary (the RQ job's result)."""
        out = {
            "registry": self.name, "kind": self.kind, "file_name": self.file_name, "format": self.format,
            "status": "committed" if self.committed else "refused", "refused": self.refused,
            "source_hash": self.source_hash, "lines": self.lines, "valid": self.valid, "invalid": self.invalid,
            "duplicates": self.duplicates, "seconds": round(self.seconds, 3),
            "bad_lines": [{"line": b.line, "reason": b.reason, **({"file": b.file} if b.file else {})}
                          for b in self.bad_lines],
        }
        if self.version is not None:
            v = self.version
            out.update(version=v.version, rows=v.rows, added=v.added, removed=v.removed,
                       loaded_at=v.loaded_at.isoformat(),
                       obtained_at=v.obtained_at.isoformat() if v.obtained_at else None)
        return out


class LoadRefused(RegistryError):
    """The load changed nothing. `report` says what was read and why it was refused."""

    def __init__(self, message: str, report: LoadReport) -> None:
        super().__init__(message)
        report.refused = message
        self.report = report


# Moves the pointer to the staged version if this importer still holds the lock and the live version is
# still the one the new version was computed from; makes the staged keys permanent. All or nothing.
_COMMIT_SCRIPT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('LOCKLOST the import lock expired or was taken over')
end
local cur = redis.call('GET', KEYS[1])
if (cur or ''):match('^%d*') ~= ARGV[3] then
  return redis.error_reply('BASECHANGED the live version changed during the import')
end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    return redis.error_reply('INCOMPLETE staged key missing: ' .. KEYS[i])
  end
end
for i = 3, #KEYS do redis.call('PERSIST', KEYS[i]) end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[5])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return cur or false
"""

_REFRESH_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Lock:
    """One import per registry at a time; expires when its holder dies, so a crash blocks nobody for long."""

    def __init__(self, client: redis.Redis, name: str, ttl: float) -> None:
        self.client, self.key, self.ttl_ms = client, key_lock(name), max(1, int(ttl * 1000))
        self.token = secrets.token_hex(16)
        self._next_refresh = 0.0

    def acquire(self) -> bool:
        ok = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        self._next_refresh = time.monotonic() + self.ttl_ms / 3000
        return ok

    def keep(self) -> None:
        """Extend the lock (cheap to call often; talks to Redis at most every ttl/3)."""
        now = time.monotonic()
        if now >= self._next_refresh:
            if not self.client.eval(_REFRESH_LOCK, 1, self.key, self.token, self.ttl_ms):
                raise RegistryError("the import lock expired or was taken over")
            self._next_refresh = now + self.ttl_ms / 3000

    def release(self) -> None:
        try:
            self.client.eval(_RELEASE_LOCK, 1, self.key, self.token)
        except redis.RedisError:
            pass  # it expires anyway


def _version_of(key: bytes | str) -> int | None:
    text = key.decode() if isinstance(key, bytes) else key
    part = text.split(":")[2]  # reg:NAME:vN:...
    return int(part[1:]) if part[:1] == "v" and part[1:].isdigit() else None


def drop_versions(client: redis.Redis, name: str, keep: set[int]) -> int:
    """Delete every version of `name` not in `keep` (orphans of killed loads, replaced versions)."""
    doomed = [k for k in client.scan_iter(match=f"reg:{{{name}}}:v*", count=1000) if _version_of(k) not in keep]
    for i in range(0, len(doomed), 1000):
        client.unlink(*doomed[i:i + 1000])
    return len(doomed)


def _current_version(client: redis.Redis, name: str) -> int | None:
    raw = client.get(key_current(name))
    return parse_pointer(raw) if raw is not None else None


def load_registry(
    client: redis.Redis,
    name: str,
    path: str | os.PathLike[str],
    *,
    delta: bool = False,
    fmt: str | None = None,
    country: str | None = None,
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
    max_shrink_share: float = DEFAULT_MAX_SHRINK_SHARE,
    force: bool = False,
    loaded_at: datetime | None = None,
    obtained_at: datetime | None = None,
    progress: Progress | None = None,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    file_name: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> LoadReport:
    """Import `path` into registry `name` as a new live version. Returns the report of a committed load;
    raises LoadRefused (nothing changed) with the report otherwise. `loaded_at` defaults to now (UTC).
    A full load that would remove more than `max_shrink_share` of the live version's numbers is refused
    unless `force` (change files are not limited: their deletions are explicit).
    `obtained_at`: when the file was downloaded from the registry, if known (aware); freshness is then measured
    from it rather than from the load, so importing an old download does not make the copy look new."""
    report = LoadReport(name, "delta" if delta else "full", file_name or os.path.basename(path), fmt or "")
    try:
        check_name(name)
        registry_format = format_for(name, fmt)
    except (ValueError, KeyError) as exc:
        raise LoadRefused(str(exc).strip("'\""), report) from None
    report.format = registry_format.key
    loaded_at = loaded_at or datetime.now(UTC)
    if obtained_at is not None and (obtained_at.tzinfo is None or obtained_at > loaded_at):
        raise LoadRefused("the date the file was obtained must be a time with a time zone, not after the load",
                          report)
    started = time.monotonic()
    try:
        source = Source(path)
    except OSError as exc:
        raise LoadRefused(f"cannot read {report.file_name}: {exc.strerror or exc}", report) from None
    except SourceError as exc:
        raise LoadRefused(f"{report.file_name}: {exc}", report) from None
    lock = _Lock(client, name, lock_ttl)
    try:
        if not lock.acquire():
            raise LoadRefused(f"another import of registry {name} is running; try again later", report)
        try:
            base_version = _current_version(client, name)
            drop_versions(client, name, keep={base_version} if base_version is not None else set())
            base: BitMap64 | None = None
            base_info: RegistryVersion | None = None
            if base_version is not None:
                try:
                    base_info, base = RegistryStore(client).fetch_live(name)
                except RegistryUnavailable as exc:
                    if delta:
                        raise LoadRefused(f"cannot apply a change file: {exc}", report) from None
                    # A full load replaces a damaged live version; its added/removed count from nothing.
                    log.warning("registry %s: live version unreadable (%s); replacing it", name, exc)
            if delta and base is None:
                raise LoadRefused(f"registry {name} has no live version to apply a change file to", report)
            numbers = _read(source, lambda: registry_format.make_parser(country), delta, report, lock, progress)
            if report.valid == 0 and not delta:
                raise LoadRefused(f"{report.file_name} holds no numbers: a full load would empty the registry",
                                  report)
            if report.bad_share > max_bad_share:
                raise LoadRefused(
                    f"{report.invalid} of {report.lines} lines are malformed ({report.bad_share:.2%}), above the "
                    f"allowed {max_bad_share:.2%}", report)
            new, added, removed = _build(numbers, base, delta, report)
            if not delta and not force and base and removed > max_shrink_share * len(base):
                raise LoadRefused(
                    f"{report.file_name} would remove {removed} of the {len(base)} numbers of the live version "
                    f"({removed / len(base):.2%}), above the allowed {max_shrink_share:.2%}: a truncated or "
                    f"incomplete file? Load it with --force if the registry really shrank", report)
            info = _stage_and_commit(client, name, new, added, removed, base_version, base_info, report, lock,
                                     progress, loaded_at, chunk_bytes, obtained_at)
            report.version = info
        finally:
            lock.release()
    except LoadRefused:
        raise
    except (HeaderError, RegistryError, SourceError) as exc:
        raise LoadRefused(str(exc), report) from None
    except redis.RedisError as exc:
        raise LoadRefused(f"Redis failed during the import ({type(exc).__name__}: {exc})", report) from None
    finally:
        source.close()
        report.seconds = time.monotonic() - started
    log.info("registry %s: version %s live (%s rows, +%s -%s, %s invalid lines)", name, info.version, info.rows,
             info.added, info.removed, info.invalid)
    try:  # every tenant's gate relies on the registry: each tenant's audit trail records the new copy
        from dialer.audit_events import registry_loaded

        registry_loaded(client, report.as_dict(), loaded_at)
    except redis.RedisError as exc:  # the load stands; its audit entries are missing: say so loudly
        log.error("registry %s: version %s live but not audited (%s)", name, info.version, exc)
    return report


def _read(source: Source, make_parser: Callable[[], NationalLineParser | CsvLineParser], delta: bool,
          report: LoadReport, lock: _Lock, progress: Progress | None) -> tuple[BitMap64, BitMap64 | None]:
    """Stream the file: returns (numbers, None) for a full load, (additions, deletions) for a change file.
    Each file of a zip archive gets its own parser (a CSV file's header is its own)."""
    added = BitMap64()
    deleted: BitMap64 | None = BitMap64() if delta else None
    batch = array("Q")
    parse = make_parser().parse
    bad = report.bad_lines
    lineno = lines = invalid = 0
    rest = b""
    skipping = False  # inside a line longer than MAX_LINE_BYTES: dropped, reported once it ends
    member = source.member if source.members > 1 else ""
    while True:
        block = source.read(READ_BLOCK)
        if block:
            parts = (rest + block).split(b"\n")
            rest = parts.pop()
            if skipping and parts:
                parts[0], skipping = _TOO_LONG, False
            if len(rest) > MAX_LINE_BYTES:  # keep memory bounded whatever the file holds
                rest, skipping = b"", True
        else:
            parts = [_TOO_LONG] if skipping else [rest] if rest else []
            rest = b""
        for raw in parts:
            lineno += 1
            try:
                if raw is _TOO_LONG:
                    raise LineError(f"line longer than {MAX_LINE_BYTES} bytes")
                parsed = parse(raw, delta)
            except LineError as exc:
                lines += 1
                invalid += 1
                if len(bad) < MAX_REPORTED_ERRORS:
                    bad.append(BadLine(lineno, mask(str(exc)), member))
                continue
            if parsed is None:
                continue
            lines += 1
            if deleted is None:
                batch.append(parsed[1])
                if len(batch) >= _BATCH:
                    added.update(batch)
                    batch = array("Q")
            elif parsed[0] == ADD:  # last line wins within one change file
                added.add(parsed[1])
                deleted.discard(parsed[1])
            else:
                deleted.add(parsed[1])
                added.discard(parsed[1])
        if progress is not None:
            progress("read", source.position(), source.size)
        lock.keep()
        if not block:
            if not source.next_member():
                break
            # The next file of a zip archive: its lines are numbered from 1 (the last line was flushed above).
            lineno, skipping, member = 0, False, source.member
            parse = make_parser().parse
    if batch:
        added.update(batch)
    report.lines, report.invalid, report.valid = lines, invalid, lines - invalid
    report.source_hash = source.sha256()
    return added, deleted


def _build(numbers: tuple[BitMap64, BitMap64 | None], base: BitMap64 | None, delta: bool,
           report: LoadReport) -> tuple[BitMap64, int, int]:
    additions, deletions = numbers
    if not delta:
        report.duplicates = report.valid - len(additions)
        added = additions.difference_cardinality(base) if base is not None else len(additions)
        removed = base.difference_cardinality(additions) if base is not None else 0
        return additions, added, removed
    assert base is not None and deletions is not None
    report.duplicates = report.valid - len(additions) - len(deletions)
    added = additions.difference_cardinality(base)
    removed = deletions.intersection_cardinality(base)
    new = (base | additions) - deletions  # a new bitmap; the live version in Redis is never changed
    return new, added, removed


def _stage_and_commit(client: redis.Redis, name: str, bitmap: BitMap64, added: int, removed: int,
                      expected_live: int | None, base: RegistryVersion | None, report: LoadReport, lock: _Lock,
                      progress: Progress | None, loaded_at: datetime, chunk_bytes: int,
                      obtained_at: datetime | None = None) -> RegistryVersion:
    bitmap.run_optimize()
    bitmap.shrink_to_fit()
    blob = bitmap.serialize()
    chunks = max(1, -(-len(blob) // chunk_bytes))
    version = int(client.incr(key_seq(name)))
    info = RegistryVersion(
        name=name, version=version, loaded_at=loaded_at.astimezone(UTC), source_hash=report.source_hash,
        rows=len(bitmap), added=added, removed=removed, invalid=report.invalid, file_name=report.file_name,
        kind=report.kind, base_version=base.version if base else None, lines=report.lines,
        duplicates=report.duplicates, format=report.format, blob_bytes=len(blob),
        blob_sha256=hashlib.sha256(blob).hexdigest(), chunks=chunks,
        obtained_at=obtained_at.astimezone(UTC) if obtained_at else None,
    )
    staged = version_keys(name, version, chunks)
    try:
        view = memoryview(blob)
        for i in range(chunks):
            part = view[i * chunk_bytes:(i + 1) * chunk_bytes]
            client.set(key_chunk(name, version, i), part.tobytes(), ex=STAGING_TTL_SECONDS)
            lock.keep()
            if progress is not None:
                progress("write", min(len(blob), (i + 1) * chunk_bytes), len(blob))
        pipe = client.pipeline(transaction=True)
        pipe.hset(key_meta(name, version), mapping=info.to_meta())
        pipe.expire(key_meta(name, version), STAGING_TTL_SECONDS)
        pipe.execute()
        if progress is not None:
            progress("commit", 0, 1)
        expected = "" if expected_live is None else str(expected_live)
        # Indexed before the commit (the index is global, the registry's keys share its own slot): names() lists
        # only names with a live pointer, so a commit that fails after this leaves nothing visible.
        client.sadd(KEY_INDEX, name)
        client.eval(_COMMIT_SCRIPT, 2 + len(staged), key_current(name), key_lock(name), *staged,
                    lock.token, str(version), expected, f"reg:{name}:changed", secrets.token_hex(8), name)
    except redis.ResponseError as exc:
        client.unlink(*staged)
        raise LoadRefused(f"commit refused: {exc}", report) from None
    except BaseException:
        # The reply may be lost after the script ran (connection dropped): delete only if not live.
        try:
            live = client.get(key_current(name))
            if live is None or parse_pointer(live) != version:
                client.unlink(*staged)
        except redis.RedisError:
            pass  # not live: they expire by themselves; the next load deletes them anyway
        raise
    try:
        drop_versions(client, name, keep={version})  # the replaced version and any orphans
    except redis.RedisError as exc:  # the new version is live; the next load removes what is left
        log.warning("registry %s: version %s live, old versions not deleted yet (%s)", name, version, exc)
    if progress is not None:
        progress("commit", 1, 1)
    return info
