"""CSV cells that spreadsheets will not execute.

A cell starting with =, +, -, @, a tab or a carriage return is read as a formula by Excel, LibreOffice
and Google Sheets ("CSV injection"). Every cell we export passes through `protect`, which puts an
apostrophe in front of such a value. That includes E.164 numbers ("+33612345678" is exported as
"'+33612345678"): one rule without exceptions, and the number stays readable; our importer strips
that apostrophe, so an export can be imported again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any, TextIO

DANGEROUS_FIRST = ("=", "+", "-", "@", "\t", "\r")


def protect(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(DANGEROUS_FIRST) else text


class SafeWriter:
    """csv.writer whose every cell is protected (quoted when needed, CRLF-free)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._writer = csv.writer(out, lineterminator="\n")

    def row(self, cells: Iterable[Any]) -> None:
        values = [protect(cell) for cell in cells]
        if any("\r" in value for value in values):
            # csv quotes a cell for the characters of its line terminator ("\n" here) but not for a bare CR,
            # which spreadsheets and csv readers take as the end of the row: quote such cells too.
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\r\n").writerow(values)
            self._out.write(buffer.getvalue()[:-2] + "\n")
        else:
            self._writer.writerow(values)
