"""Open a registry file as a stream of text bytes: plain, gzip or zip (one file inside), told by magic bytes.

Registries are often delivered compressed (the FTC serves zip archives). The source hash recorded with a
version is the sha256 of the file exactly as given (compressed or not), so it matches the downloaded file.
Progress counts bytes of the file as given.

A zip archive may hold several files: the Canadian DNCL delivers one zip with a file per area code selected,
and FTC area-code files can be bundled the same way. They are read one after the other, in archive order, as
one registry version; `member` names the file being read so bad lines are reported as "416.txt line 3".
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zipfile
import zlib
from typing import BinaryIO

# A compressed registry is refused as soon as it expands past either limit (a "zip bomb" would otherwise spend
# minutes of CPU before a bad line stopped it). Real registries compress 5-10x (sorted numbers, dates); the
# largest, the FTC's full list, is a few GB of text.
MAX_DECOMPRESSED_BYTES = 16 << 30
MAX_RATIO = 100  # decompressed bytes per compressed byte, judged once RATIO_FROM bytes are out
RATIO_FROM = 16 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile)


class SourceError(Exception):
    """The file cannot be used as a whole (unreadable, bad archive). str() is one line."""


class Source:
    """read(n) -> decompressed bytes; position() -> bytes of the file consumed; sha256 of the file as given."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = MAX_DECOMPRESSED_BYTES,
                 max_ratio: float = MAX_RATIO) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        self._out = 0  # decompressed bytes handed out (all members)
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
            if not members:
                self.close()
                raise SourceError("the zip archive holds no file")
            self._members = members
            self._member_index = 0
            self._total_size = sum(m.file_size for m in members)
            if self._total_size > max_bytes:  # as declared by the archive; read() checks what really comes out
                self.close()
                raise SourceError(f"the zip archive expands to {self._total_size} bytes, above the limit of "
                                  f"{max_bytes} bytes: refused")
            self._compressed_before = 0
            self._done_before = 0  # decompressed bytes of the members already read
            try:
                self._open_member()
            except SourceError:
                self.close()
                raise

    def _hash_whole_file(self) -> None:
        # Compressed input is decompressed from the start of the file, so hash it in a first pass.
        for block in iter(lambda: self._raw.read(1 << 20), b""):
            self._digest.update(block)
        self._raw.seek(0)

    @property
    def member(self) -> str:
        """Name of the file inside a zip archive being read ("" for plain and gzip files)."""
        return self._members[self._member_index].filename if self._zip is not None else ""

    @property
    def members(self) -> int:
        return len(self._members) if self._zip is not None else 1

    def _open_member(self) -> None:
        assert self._zip is not None
        try:
            self._stream = self._zip.open(self._members[self._member_index])
        except (*DECOMPRESS_ERRORS, NotImplementedError) as exc:
            raise SourceError(f"cannot open {self.member} in the zip archive ({exc})") from None

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the current file; b"" at its end. For a zip archive of several files, call
        next_member() after b"" to go on with the next one (blocks never span two files)."""
        try:
            block = self._stream.read(size)
        except DECOMPRESS_ERRORS as exc:
            where = f" ({self.member})" if self._zip is not None and self.members > 1 else ""
            raise SourceError(f"cannot decompress the {self.kind} file{where} ({exc})") from None
        if self.kind == "plain":
            self._digest.update(block)
        else:
            self._out += len(block)
            self._check_expansion()
        return block

    def _check_expansion(self) -> None:
        if self._out > self.max_bytes:
            self.close()
            raise SourceError(f"the {self.kind} file expands past the limit of {self.max_bytes} bytes: refused "
                              "(a damaged or malicious archive?)")
        if self._out < RATIO_FROM:
            return
        if self._zip is not None:  # at most what the members so far hold compressed
            consumed = self._compressed_before + self._members[self._member_index].compress_size
        else:
            consumed = self._raw.tell()
        if self._out > self.max_ratio * max(consumed, 1):
            self.close()
            raise SourceError(f"the {self.kind} file expands more than {self.max_ratio:g} times ({self._out} bytes "
                              f"out of {consumed}): refused as a damaged or malicious archive")

    def next_member(self) -> bool:
        """Move to the next file of a zip archive; False when there is none."""
        if self._zip is None or self._member_index + 1 >= len(self._members):
            return False
        self._done_before += self._members[self._member_index].file_size
        self._compressed_before += self._members[self._member_index].compress_size
        self._stream.close()
        self._member_index += 1
        self._open_member()
        return True

    def position(self) -> int:
        if self.kind == "zip":  # members report decompressed bytes; scale to the archive size
            done = self._done_before + self._stream.tell()
            return int(self.size * done / self._total_size) if self._total_size else self.size
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
