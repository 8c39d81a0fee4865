"""A look at a contact file before it is imported: detected format, column mapping, first rows judged.

The console sends the head of the file (its first bytes) with the import's options; `preview` reads it the way
the import will (dialer/contacts/sniff.py, columns.py, rows.py) and says what the import would do, without
writing anything. A file the import would refuse as a whole (binary, empty, no phone column...) comes back
with `problem` set, and, when the columns could be read, with them, so that a person can map a phone column.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

from dialer.contacts.columns import FIELDS, Mapping, looks_like_data, plan_columns
from dialer.contacts.rows import process_record
from dialer.contacts.sniff import FileError, sample_records, sniff

SAMPLE_ROWS = 10  # first data rows judged and shown
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def cut_to_whole_lines(path: Path) -> None:
    """The head of a larger file ends mid-line (maybe mid-character): keep its complete lines only."""
    data = path.read_bytes()
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
        len(data) > 3 and b"\x00" in data[:200] and data[:200].count(b"\x00") * 3 > len(data[:200]))
    if utf16:
        big = data.startswith(codecs.BOM_UTF16_BE) or (data[:1] == b"\x00")
        newline = b"\x00\n" if big else b"\n\x00"
        end = len(data) - len(data) % 2
        cut = -1
        while True:
            cut = data.rfind(newline, 0, end)
            if cut < 0 or cut % 2 == 0:
                break
            end = cut + 1
        keep = cut + 2 if cut >= 0 else len(data) - len(data) % 2
    else:
        cut = data.rfind(b"\n")
        keep = cut + 1 if cut >= 0 else len(data)
    with path.open("r+b") as fh:
        fh.truncate(keep)


def _format(fmt: Any) -> dict[str, Any]:
    return {"encoding": fmt.encoding + (" (with byte-order mark)" if fmt.bom else ""),
            "delimiter": fmt.delimiter, "delimiter_name": _DELIMITER_NAMES.get(fmt.delimiter, fmt.delimiter),
            "line_ending": "CR" if fmt.newline == "\r" else "LF/CRLF"}


def preview(path: str | Path, mapping: Mapping | None, region: str, *, truncated: bool = False) -> dict[str, Any]:
    """What importing this file (or the head of it) would do. Raises FileError only when nothing at all can be
    read (empty, binary, bad encoding); mapping problems are answered in `problem`."""
    path = Path(path)
    if truncated:
        cut_to_whole_lines(path)
    fmt = sniff(path)
    records = sample_records(path, fmt, SAMPLE_ROWS + 1)
    if not records:
        raise FileError("no_rows", "the file has no rows")
    out: dict[str, Any] = {"format": _format(fmt), "fields": sorted(FIELDS), "truncated": truncated}
    try:
        plan = plan_columns(records[0], mapping, records[1:])
    except FileError as exc:
        first = records[0]
        header = (mapping.header if mapping and mapping.header is not None else not looks_like_data(first))
        names = [c.strip().lstrip("\ufeff") for c in first] if header else [f"#{i + 1}" for i in range(len(first))]
        out.update(problem={"code": exc.code, "message": exc.message}, has_header=header,
                   columns=[{"index": i, "name": n, "field": "ignore"} for i, n in enumerate(names)],
                   rows=[])
        return out
    fields = {c.index: c.field for c in plan.columns}
    names = [c.strip().lstrip("\ufeff") for c in records[0]] if plan.has_header else [
        f"#{i + 1}" for i in range(plan.width)]
    data = records[1:] if plan.has_header else records
    rows = []
    for n, record in enumerate(data[:SAMPLE_ROWS]):
        row = n + (2 if plan.has_header else 1)
        result = process_record(record, row, row, plan, region)
        rows.append({
            "row": row,
            "cells": {c.name: (record[c.index] if c.index < len(record) else "") for c in plan.columns},
            "phones": [p.e164 for _, p in result.phones],
            "imported": result.rejected is None,
            "errors": [{"column": e.column, "reason": e.reason, "message": e.message, "severity": e.severity}
                       for e in result.errors],
        })
    out.update(has_header=plan.has_header,
               columns=[{"index": i, "name": n, "field": fields.get(i, "ignore")} for i, n in enumerate(names)],
               rows=rows)
    return out
