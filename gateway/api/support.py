"""What the integration routes share: streamed uploads, synchronous stores off the loop, CSV downloads, the gate.

Uploads are multipart/form-data read part by part: the file part is written to a staging file (0600) in
`gateway.upload_dir` (0700; default `<paths.data_dir>/uploads`; a world-writable one is refused) as it
arrives (never held in memory), counted, and refused with 413 `too_large` as soon
as it passes `gateway.max_upload_mb` (the partial file is deleted). Workers read the staged file, so the
directory must be readable by them (same machine or shared storage).

The contact, registry and RQ functions want a bytes client (`redis.Redis` without decode_responses); the
gateway keeps one in SERVICES["raw_redis"] and calls them through asyncio.to_thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from aiohttp import BodyPartReader, web

from dialer.private_files import UnsafeDirectory, create_private, data_dir, private_dir
from gateway.errors import ApiError, invalid, too_large
from gateway.routing import CONFIG, SERVICES
from gateway.validation import check_text, validate

FIELD_LIMIT = 64 * 1024  # a form field other than the file (mapping JSON, names)
CHUNK = 256 * 1024


def raw_redis(request: web.Request) -> Any:
    return request.app[SERVICES]["raw_redis"]


async def sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(func, *args, **kwargs)


def upload_dir(config: Any) -> Path:
    """The private staging directory (0700, not world-writable: dialer/private_files.py); 503 when unsafe."""
    try:
        return private_dir(config["gateway.upload_dir"] or data_dir(config) / "uploads")
    except (UnsafeDirectory, OSError) as exc:
        raise ApiError(503, "upload_dir_unsafe", f"uploads are refused: {exc}") from None


def scratch_dir(config: Any) -> Path:
    """Where CSV downloads are written before they are streamed (private, like uploads)."""
    try:
        return private_dir(data_dir(config) / "tmp")
    except (UnsafeDirectory, OSError) as exc:
        raise ApiError(503, "data_dir_unsafe", f"downloads are refused: {exc}") from None


def upload_limit(config: Any) -> int:
    return int(config["gateway.max_upload_mb"]) * 1024 * 1024


@dataclass
class Upload:
    path: Path  # the staged file
    file_name: str  # as the client named it (never used as a path)
    size: int
    fields: dict[str, str]

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def multipart_body(fields: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The OpenAPI requestBody content of an upload route: a binary `file` plus text fields."""
    return {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", *required],
        "properties": {"file": {"type": "string", "format": "binary"}, **fields}}}}


async def receive_upload(request: web.Request, fields: dict[str, Any], prefix: str) -> Upload:
    """Stream a multipart upload to a staging file. `fields`: the text parts allowed, name -> schema (checked
    like JSON fields: 422 naming the part). Unknown parts are refused (422 unknown_field), a missing file is 422
    missing_field, a body that is not multipart is 415, a malformed one 400, an oversize one 413."""
    config = request.app[CONFIG]
    limit = upload_limit(config)
    if request.content_length is not None and request.content_length > limit + FIELD_LIMIT * (len(fields) + 1):
        raise too_large(limit)
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the file as multipart/form-data (a part named file)")
    values: dict[str, str] = {}
    staged: Path | None = None
    file_name = ""
    size = 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise invalid("", "nested multipart bodies are not accepted", code="bad_request")
            name = part.name or ""
            if name == "file":
                if staged is not None:
                    raise invalid("file", "send one file per upload", rule="one_file")
                file_name = os.path.basename(part.filename or "upload")[:200]
                staged = upload_dir(config) / f"{prefix}-{uuid.uuid4().hex}"
                with create_private(staged, "wb", exclusive=True) as out:
                    while chunk := await part.read_chunk(CHUNK):
                        size += len(chunk)
                        if size > limit:
                            raise too_large(limit)
                        out.write(chunk)  # page cache: cheap enough on the loop, and bounded by CHUNK
            elif name in fields:
                raw = bytearray()
                while chunk := await part.read_chunk(8192):
                    raw += chunk
                    if len(raw) > FIELD_LIMIT:
                        raise invalid(name, f"longer than {FIELD_LIMIT} bytes", rule="max_bytes",
                                      params={"limit": FIELD_LIMIT})
                try:
                    values[name] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise invalid(name, "not UTF-8 text", rule="not_utf8") from None
                check_text(values[name], name)
                validate(values[name], fields[name], name)
            else:
                raise invalid(name or "(unnamed part)", "unknown field", code="unknown_field")
    except ApiError:
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    except OSError:  # our disk, not the client's body: a 500 with the details in the log
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    except Exception as exc:  # aiohttp's multipart parser raises several kinds on malformed input
        if staged is not None:
            staged.unlink(missing_ok=True)
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            raise too_large(limit) from None
        raise ApiError(400, "bad_request", "malformed multipart body") from None
    if staged is None:
        raise invalid("file", "is required", code="missing_field")
    return Upload(staged, file_name, size, values)


async def csv_download(request: web.Request, write: Callable[[TextIO], Any], file_name: str) -> web.StreamResponse:
    """Produce a CSV with `write(text_stream)` in a thread, into a temporary file (a large export never sits in
    memory), then stream it. Returns the response; the temporary file is removed in every case."""
    fd, name = tempfile.mkstemp(prefix="dialer-csv-", suffix=".csv", dir=scratch_dir(request.app[CONFIG]))  # 0600
    os.close(fd)
    try:
        def produce() -> None:
            # utf-8-sig: a byte-order mark first, so Excel reads accents right (other readers skip it)
            with open(name, "w", newline="", encoding="utf-8-sig") as out:
                write(out)

        await asyncio.to_thread(produce)
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{file_name}"',
        })
        response.content_length = os.path.getsize(name)
        await response.prepare(request)
        with open(name, "rb") as data:
            while block := await asyncio.to_thread(data.read, CHUNK):
                await response.write(block)
        await response.write_eof()
        return response
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def gate_of(request: web.Request) -> Any:
    """The gate (built once per app, on first use: loading the rule packs takes a moment). Without
    security.secret_key there is no gate: 503 `gate_unavailable` (fail closed, and say why)."""
    services = request.app[SERVICES]
    if services.get("gate") is None:
        config = request.app[CONFIG]
        if not config["security.secret_key"]:
            raise ApiError(503, "gate_unavailable", "the gate needs setting security.secret_key (DIALER_SECRET_KEY)")
        from dialer.gate import Gate
        from dialer.registry.store import RegistryStore
        from rules import load_packs

        packs = load_packs(config["rules.packs_dir"] or None)
        client = services["raw_redis"]
        services["gate"] = Gate(client, packs, RegistryStore(client), secret_key=config["security.secret_key"],
                                actor="api")
    return services["gate"]
