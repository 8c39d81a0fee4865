"""Record boundaries and work units: split a file into chunks that workers parse in parallel.

A chunk is a byte range that starts and ends on a record boundary, with the row and line number of
its first record. Boundaries are found by running the same csv parser the import uses over the raw
lines (decoded as Latin-1, which maps bytes 1:1, so offsets stay byte offsets; UTF-8 and CP1252 never
put a quote or a line feed inside a multi-byte character). The parser pulls one physical line at a
time, so after each record the reader has consumed exactly that record's lines: the boundary is exact,
quoted line breaks and stray quotes included. UTF-16 and CR-only files are one chunk.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from dialer.contacts.sniff import FileFormat


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # byte offset of the first record (after BOM and header)
    end: int  # byte offset after the last record (-1: to the end of the file)
    first_row: int  # row number of the first record (the header, if any, is row 1)
    first_line: int
    rows: int
    skip: int = 0  # records to skip first (the header of a one-chunk file)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Record:
    row: int
    line: int
    cells: list[str] | None  # None: a record the csv parser refused (see error)
    error: str = ""
    lines: int = 1  # physical lines the record spans


MAX_LINE = 1 << 20  # a physical line longer than this is refused unread, so memory stays flat on any input


class _Lines:
    """Iterator of text lines over a file region that counts lines and bytes consumed.

    A line over MAX_LINE bytes is cut there (the rest is skipped, never held) and `overlong` is set: the
    record holding it is refused. The planner and the workers cut the same way, so boundaries agree."""

    def __init__(self, raw: io.BufferedReader, end: int, encoding: str) -> None:
        self.raw, self.end, self.encoding = raw, end, encoding
        self.pos = raw.tell()
        self.lines = 0
        self.overlong = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.end >= 0 and self.pos >= self.end:
            raise StopIteration
        line = self.raw.readline(MAX_LINE)
        if not line:
            raise StopIteration
        self.pos += len(line)
        self.lines += 1
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            self.overlong = True
            while (rest := self.raw.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                self.pos += len(rest)
            self.pos += len(rest)
            return line.decode(self.encoding, errors="ignore") + "\n"  # a character may be cut: refused anyway
        return line.decode(self.encoding)


class _TextLines:
    """The same over a decoded stream (UTF-16, CR-only files), counting lines; MAX_LINE in characters."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self.text = text
        self.lines = 0
        self.overlong = False

    def __iter__(self) -> _TextLines:
        return self

    def __next__(self) -> str:
        line = self.text.readline(MAX_LINE)
        if not line:
            raise StopIteration
        self.lines += 1
        if len(line) == MAX_LINE and not line.endswith(("\n", "\r")):
            self.overlong = True
            while (rest := self.text.readline(MAX_LINE)) and not rest.endswith(("\n", "\r")):
                pass
            return line + "\n"
        return line


def _text_lines(path: str, fmt: FileFormat) -> tuple[io.TextIOWrapper, _TextLines]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through the returned handle
    raw.seek(fmt.bom)
    text = io.TextIOWrapper(raw, encoding=fmt.encoding, newline="")
    return text, _TextLines(text)


def iter_records(path: str, fmt: FileFormat, start: int, end: int, first_row: int, first_line: int,
                 skip: int = 0) -> Iterator[Record]:
    """Records of one chunk (or of the whole file for non-splittable formats, skipping `skip` records)."""
    source: _Lines | _TextLines
    if fmt.splittable:
        handle = open(path, "rb")  # noqa: SIM115
        handle.seek(start)
        source = _Lines(handle, end, "latin-1" if fmt.encoding == "latin-1" else fmt.encoding)
        closer: Any = handle
    else:
        closer, source = _text_lines(path, fmt)
    tracked = _Tracked(source)
    reader = csv.reader(tracked, delimiter=fmt.delimiter)
    row, line = first_row, first_line
    seen_lines = 0
    try:
        while True:
            tracked.current.clear()
            source.overlong = False
            try:
                cells = next(reader)
                error = ""
            except StopIteration:
                break
            except csv.Error as exc:
                cells, error = None, str(exc)
            now = source.lines
            spanned = max(1, now - seen_lines)
            seen_lines = now
            if source.overlong:
                cells, error = None, f"a line longer than {MAX_LINE >> 20} MiB (not a contact list row)"
            elif cells is not None and tracked.exhausted and _open_quote(tracked.current, fmt.delimiter):
                # The lenient parser closes a quote left open at the end of the input without a word, so the
                # record swallows every line after it: refuse it (the report names those lines), never lose
                # them quietly.
                cells, error = None, "a quote opened in this record is never closed"
            if skip:
                skip -= 1
            else:
                yield Record(row, line, cells, error, spanned)
            row += 1
            line += spanned
    finally:
        closer.close()


class _Tracked:
    """Line iterator that keeps the lines of the record being parsed and notes the end of the input."""

    def __init__(self, source: Iterator[str]) -> None:
        self.source = source
        self.current: list[str] = []
        self.exhausted = False

    def __iter__(self) -> _Tracked:
        return self

    def __next__(self) -> str:
        try:
            line = next(self.source)
        except StopIteration:
            self.exhausted = True
            raise
        self.current.append(line)
        return line


def _open_quote(lines: list[str], delimiter: str) -> bool:
    """True when these lines end inside a quoted field: a sentinel line after them then lands inside
    the last cell instead of making a record of its own (same lenient parser as the import)."""
    records = list(csv.reader([*lines, "\x01\n"], delimiter=delimiter))
    return bool(records and records[-1] and records[-1][-1].endswith("\x01\n"))


def plan_chunks(path: str, fmt: FileFormat, has_header: bool, target_bytes: int = 4 << 20) -> list[Chunk]:
    """Split the file at record boundaries into chunks of about target_bytes."""
    if not fmt.splittable:
        total_rows, skip, header_seen = 0, 0, not has_header
        for record in iter_records(path, fmt, fmt.bom, -1, 1, 1):
            total_rows += 1
            if not header_seen:  # the header is the first non-empty record (sample_records' rule)
                skip += 1
                header_seen = bool(record.cells)
        return [Chunk(0, fmt.bom, -1, 1, 1, max(0, total_rows - skip), skip)]
    chunks: list[Chunk] = []
    with open(path, "rb") as handle:
        handle.seek(fmt.bom)
        source = _Lines(handle, -1, "latin-1")
        reader = csv.reader(source, delimiter=fmt.delimiter)
        row, line = 1, 1
        if has_header:  # the header is the first non-empty record (blank lines above it are skipped)
            while True:
                row += 1
                try:
                    if next(reader):
                        break
                except (StopIteration, csv.Error):
                    break
            line = 1 + source.lines
        start, start_row, start_line, rows = source.pos, row, line, 0
        while True:
            try:
                next(reader)
            except StopIteration:
                break
            except csv.Error:
                pass
            rows += 1
            row += 1
            if source.pos - start >= target_bytes:
                chunks.append(Chunk(len(chunks), start, source.pos, start_row, start_line, rows))
                start, start_row, start_line, rows = source.pos, row, 1 + source.lines, 0
        if rows or not chunks:
            chunks.append(Chunk(len(chunks), start, source.pos, start_row, start_line, rows))
    return chunks
