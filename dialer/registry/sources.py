"""Open a registry file as a stream of text bytes: plain, gzip or zip (one file inside), told by magic bytes.

Registries are often delivered compressed (the FTC serves zip archives). The source hash recorded with a
version is the sha256 of the file exactly as given (compressed or not), so it matches the downloaded file.
Progress counts bytes of the file as given.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zipfile
import zlib
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile)


class SourceError(Exception):
    """The file cannot be used as a whole (unreadable, bad archive). str() is one line."""


class Source:
    """read(n) -> decompressed bytes; position() -> bytes of the file consumed; sha256 of the file as given."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.size = os.path.getsize(path)
        self._raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        magic = self._raw.read(4)
        self._raw.seek(0)
        self._digest = hashlib.sha256()
        self._stream: BinaryIO = self._raw
        self._zip: zipfile.ZipFile | None = None
        self.kind = "plain"
        if magic[:2] == GZIP_MAGIC:
            self.kind = "gzip"
            self._hash_whole_file()
            self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
        elif magic == ZIP_MAGIC:
            self.kind = "zip"
            self._hash_whole_file()
            try:
                self._zip = zipfile.ZipFile(self._raw)
                members = [m for m in self._zip.infolist() if not m.is_dir()]
            except DECOMPRESS_ERRORS as exc:
                self.close()
                raise SourceError(f"not a readable zip archive ({exc})") from None
            if len(members) != 1:
                self.close()
                raise SourceError(f"a zip archive must hold exactly one file, this one holds {len(members)}")
            self._member_size = members[0].file_size
            self._stream = self._zip.open(members[0])

    def _hash_whole_file(self) -> None:
        # Compressed input is decompressed from the start of the file, so hash it in a first pass.
        for block in iter(lambda: self._raw.read(1 << 20), b""):
            self._digest.update(block)
        self._raw.seek(0)

    def read(self, size: int) -> bytes:
        try:
            block = self._stream.read(size)
        except DECOMPRESS_ERRORS as exc:
            raise SourceError(f"cannot decompress the {self.kind} file ({exc})") from None
        if self.kind == "plain":
            self._digest.update(block)
        return block

    def position(self) -> int:
        if self.kind == "zip":  # the zip member reports decompressed bytes; scale to the archive size
            done = self._stream.tell()
            return int(self.size * done / self._member_size) if self._member_size else self.size
        return self._raw.tell()

    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        for closable in (self._stream, self._zip, self._raw):
            if closable is not None:
                try:
                    closable.close()
                except OSError:
                    pass
