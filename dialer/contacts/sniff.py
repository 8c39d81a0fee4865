"""What kind of file is this: encoding, delimiter, line ending. Refuses empty and binary files.

Encodings: a byte-order mark decides (UTF-8, UTF-16 LE/BE); without one, a NUL every other byte
means UTF-16 without BOM; otherwise the whole file is checked as UTF-8 (streamed, 1 MiB at a time)
and, if that fails, read as CP1252, or Latin-1 when it has bytes CP1252 leaves undefined.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

SAMPLE_BYTES = 64 * 1024
BLOCK = 1 << 20
DELIMITERS = (",", ";", "\t", "|")


class FileError(Exception):
    """The file as a whole cannot be imported. `code` is listed in docs/contacts.md."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FileFormat:
    encoding: str  # a Python codec name, without BOM handling ("utf-8", "utf-16-le", "cp1252", ...)
    bom: int  # bytes of byte-order mark to skip
    delimiter: str
    newline: str  # "\n" (also for CRLF) or "\r" (old Mac files)
    size: int

    @property
    def splittable(self) -> bool:
        """Record boundaries can be found on raw bytes (ASCII-compatible encoding, LF line ends)."""
        return not self.encoding.startswith("utf-16") and self.newline == "\n"


def _detect_encoding(path: Path, head: bytes) -> tuple[str, int]:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    if b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        if odd.count(0) >= 0.9 * len(odd) and even.count(0) == 0:
            return "utf-16-le", 0
        if even.count(0) >= 0.9 * len(even) and odd.count(0) == 0:
            return "utf-16-be", 0
        raise FileError("binary_file", "this is not a text file (it contains NUL bytes): upload a CSV or TSV")
    for encoding in ("utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as fh:
                while block := fh.read(BLOCK):
                    if b"\x00" in block:
                        raise FileError("binary_file", "this is not a text file (it contains NUL bytes)")
                    decoder.decode(block)
            decoder.decode(b"", final=True)
            return encoding, 0
        except UnicodeDecodeError:
            continue
    return "latin-1", 0


def _looks_binary(text: str) -> bool:
    controls = sum(1 for c in text if (ord(c) < 32 and c not in "\t\r\n\f") or c == "\x7f")
    return controls > max(2, len(text) // 100)


def _detect_delimiter(text: str) -> str:
    lines = text.splitlines(keepends=True)[:-1] or text.splitlines(keepends=True)  # drop a cut last line
    best, best_score = ",", (0.0, 1)
    for delimiter in DELIMITERS:
        try:
            widths = [len(row) for row in csv.reader(lines[:100], delimiter=delimiter) if row]
        except csv.Error:
            continue
        if not widths:
            continue
        common = max(set(widths), key=widths.count)
        if common < 2:
            continue
        score = (widths.count(common) / len(widths), common)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def sniff(path: str | Path) -> FileFormat:
    """Detect the format of a contact file; FileError for empty, unreadable or binary files."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(SAMPLE_BYTES)
    except OSError as exc:
        raise FileError("unreadable_file", f"cannot read the file: {exc.strerror}") from None
    if size == 0:
        raise FileError("empty_file", "the file is empty (0 bytes)")
    encoding, bom = _detect_encoding(path, head)
    sample = head[bom:]
    if encoding.startswith("utf-16") and len(sample) % 2:
        sample = sample[:-1]
    text = sample.decode(encoding, errors="replace")  # only a multi-byte character cut at the end
    if _looks_binary(text):
        raise FileError("binary_file", "this is not a text file (control characters): upload a CSV or TSV")
    if not text.strip():
        raise FileError("empty_file", "the file has no rows")
    newline = "\r" if "\n" not in text and "\r" in text else "\n"
    lines = text.replace("\r\n", "\n") if newline == "\n" else text.replace("\r", "\n")
    return FileFormat(encoding, bom, _detect_delimiter(lines), newline, size)


def sample_records(path: str | Path, fmt: FileFormat, limit: int = 20) -> list[list[str]]:
    """The first records of the file, parsed like the import parses them (for header detection)."""
    with open(path, "rb") as raw:
        raw.seek(fmt.bom)
        text = io.TextIOWrapper(raw, encoding=fmt.encoding, errors="replace", newline="")
        reader = csv.reader(text, delimiter=fmt.delimiter)
        out: list[list[str]] = []
        try:
            for record in reader:
                if record:
                    out.append(record)
                if len(out) >= limit:
                    break
        except csv.Error:
            pass
        return out
