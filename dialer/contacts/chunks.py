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


class _Lines:
    """Iterator of text lines over a file region that counts lines and bytes consumed."""

    def __init__(self, raw: io.BufferedReader, end: int, encoding: str) -> None:
        self.raw, self.end, self.encoding = raw, end, encoding
        self.pos = raw.tell()
        self.lines = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.end >= 0 and self.pos >= self.end:
            raise StopIteration
        line = self.raw.readline()
        if not line:
            raise StopIteration
        self.pos += len(line)
        self.lines += 1
        return line.decode(self.encoding)


def _text_lines(path: str, fmt: FileFormat) -> tuple[object, Iterator[str], list[int]]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through the returned handle
    raw.seek(fmt.bom)
    text = io.TextIOWrapper(raw, encoding=fmt.encoding, newline="")
    counter = [0]

    def lines() -> Iterator[str]:
        for line in text:
            counter[0] += 1
            yield line

    return text, lines(), counter


def iter_records(path: str, fmt: FileFormat, start: int, end: int, first_row: int, first_line: int,
                 skip: int = 0) -> Iterator[Record]:
    """Records of one chunk (or of the whole file for non-splittable formats, skipping `skip` records)."""
    if fmt.splittable:
        handle = open(path, "rb")  # noqa: SIM115
        handle.seek(start)
        source = _Lines(handle, end, "latin-1" if fmt.encoding == "latin-1" else fmt.encoding)
        counted = source
        closer = handle
    else:
        closer, source, counter = _text_lines(path, fmt)  # type: ignore[assignment]
    reader = csv.reader(source, delimiter=fmt.delimiter)
    row, line = first_row, first_line
    seen_lines = 0
    try:
        while True:
            try:
                cells = next(reader)
                error = ""
            except StopIteration:
                break
            except csv.Error as exc:
                cells, error = None, str(exc)
            now = counted.lines if fmt.splittable else counter[0]
            spanned = max(1, now - seen_lines)
            seen_lines = now
            if skip:
                skip -= 1
            else:
                yield Record(row, line, cells, error, spanned)
            row += 1
            line += spanned
    finally:
        closer.close()


def plan_chunks(path: str, fmt: FileFormat, has_header: bool, target_bytes: int = 4 << 20) -> list[Chunk]:
    """Split the file at record boundaries into chunks of about target_bytes."""
    if not fmt.splittable:
        total_rows = sum(1 for _ in iter_records(path, fmt, fmt.bom, -1, 1, 1))
        skip = 1 if has_header else 0
        return [Chunk(0, fmt.bom, -1, 1, 1, max(0, total_rows - skip), skip)]
    chunks: list[Chunk] = []
    with open(path, "rb") as handle:
        handle.seek(fmt.bom)
        source = _Lines(handle, -1, "latin-1")
        reader = csv.reader(source, delimiter=fmt.delimiter)
        row, line = 1, 1
        if has_header:
            try:
                next(reader)
            except (StopIteration, csv.Error):
                pass
            row, line = 2, 1 + source.lines
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
