"""What kind of file is this: encoding, delimiter, line ending. Refuses empty and binary files.

Encodings: a byte-order mark decides (UTF-8, UTF-16 LE/BE); without one, a NUL every other byte
means UTF-16 without BOM; otherwise the whole file is checked as UTF-8 (streamed, 1 MiB at a time)
and, if that fails, read as CP1252, or Latin-1 when it has bytes CP1252 leaves undefined.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
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
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                          (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            _check_decodes(path, encoding, len(bom), f"starts with a {encoding.upper()[:6]} byte-order mark")
            return encoding, len(bom)
    if b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        for encoding, nuls, other in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
            if nuls.count(0) >= 0.9 * len(nuls) and other.count(0) == 0:
                _check_decodes(path, encoding, 0, "looks like UTF-16")
                return encoding, 0
        raise FileError("binary_file", "this is not a text file (it contains NUL bytes): upload a CSV or TSV")
    for encoding in ("utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder(encoding)()
        lines, multibyte = 1, False
        try:
            with path.open("rb") as fh:
                while block := fh.read(BLOCK):
                    if b"\x00" in block:
                        raise FileError("binary_file", "this is not a text file (it contains NUL bytes)")
                    pending = len(decoder.getstate()[0])
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError as exc:
                        bad = max(0, exc.start - pending)
                        if encoding == "utf-8" and (multibyte or max(block[:bad], default=0) >= 0x80):
                            # Valid UTF-8 accents before, then bytes that are not: two encodings in one file
                            # (lists pasted together). Either reading garbles every accented name: refuse.
                            line = lines + block[:bad].count(b"\n")
                            raise FileError("bad_encoding", f"line {line} is not UTF-8 while the lines before "
                                            "are: the file mixes encodings; save it again as UTF-8") from None
                        raise
                    lines += block.count(b"\n")
                    multibyte = multibyte or max(block, default=0) >= 0x80
            decoder.decode(b"", final=True)
            return encoding, 0
        except UnicodeDecodeError:
            continue
    return "latin-1", 0


def _check_decodes(path: Path, encoding: str, skip: int, why: str) -> None:
    """The whole file decodes in `encoding` (streamed), else FileError naming the line of the first bad byte."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    with path.open("rb") as fh:
        fh.seek(skip)
        block = b""
        try:
            while block := fh.read(BLOCK):
                pending = len(decoder.getstate()[0])
                lines += decoder.decode(block).count("\n")
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            good = block[: max(0, exc.start - pending)] if block else b""
            line = lines + codecs.decode(good, encoding, errors="ignore").count("\n")
            raise FileError("bad_encoding", f"the file {why} but line {line} is not valid {encoding.upper()[:6]} "
                            f"({exc.reason}): save it again as UTF-8") from None


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
        reader = csv.reader(_capped(text), delimiter=fmt.delimiter)
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


def _capped(text: io.TextIOWrapper, limit: int = 1 << 20) -> Iterator[str]:
    """Lines of at most `limit` characters (the rest of a longer line is skipped, not held in memory)."""
    while line := text.readline(limit):
        if len(line) == limit and not line.endswith(("\n", "\r")):
            while (rest := text.readline(limit)) and not rest.endswith(("\n", "\r")):
                pass
            line += "\n"
        yield line
