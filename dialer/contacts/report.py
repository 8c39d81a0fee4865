"""The row-level error report of an import, as CSV, and its summary in words."""

from __future__ import annotations

from typing import Any, TextIO

import redis

from dialer.contacts.csvsafe import SafeWriter
from dialer.contacts.limits import ERRORS_KEPT
from dialer.contacts.store import import_status, iter_errors

COLUMNS = ("row", "line", "column", "value", "reason", "severity", "message")

# Messages for reasons recorded without one (duplicates are found by a Lua script at commit).
DEFAULT_MESSAGES = {
    "duplicate_in_file": "same number as an earlier row of this file (row {first_row}): not imported twice",
    "duplicate_in_list": "this number is already in the list: not imported twice",
    "duplicate_in_campaign": "this number is already in the campaign: not imported twice",
}


def message_of(error: dict[str, Any]) -> str:
    if error.get("message"):
        return str(error["message"])
    template = DEFAULT_MESSAGES.get(str(error.get("reason")), "")
    return template.format(first_row=error.get("first_row", "?"))


def file_failure(status: dict[str, Any]) -> dict[str, Any] | None:
    """The entry for an import that failed as a whole (no phone column, binary file, too many bad rows, worker
    lost...): one line naming the reason and what to do, so a failed import never has an empty report."""
    if status.get("status") != "failed":
        return None
    return {"row": None, "line": None, "column": None, "value": None,
            "reason": status.get("error_code") or "failed", "severity": "file",
            "message": status.get("error") or "the import failed: nothing was imported"}


def write_error_report(client: redis.Redis, tenant: str, import_id: str, out: TextIO) -> int:
    """Write the import's error report as CSV (formula-safe). Returns the number of entries written.

    Columns: row (record number, header = 1), line (physical line), column (header name, or #N),
    value (the raw cell, or the E.164 number for duplicates), reason (code), severity (error: not
    imported; warning: imported, note; duplicate: not imported twice; not_listed: a count of entries beyond the
    report's cap, one row per reason), message."""
    writer = SafeWriter(out)
    writer.row(COLUMNS)
    count = 0
    status = import_status(client, tenant, import_id) or {}
    failure = file_failure(status)
    if failure:  # the file as a whole was refused: say why first (the rows below, if any, show examples)
        writer.row(["", "", "", "", failure["reason"], "file", failure["message"]])
        count += 1
    for error in iter_errors(client, tenant, import_id):
        writer.row([error.get("row"), error.get("line"), error.get("column"), error.get("value"),
                    error.get("reason"), error.get("severity", "error"), message_of(error)])
        count += 1
    summary = status.get("summary") or {}
    for reason, more in (summary.get("errors_not_listed") or {}).items():
        # A report keeps the first ERRORS_KEPT entries (dialer/contacts/limits.py): say what is missing.
        writer.row(["", "", "", "", reason, "not_listed",
                    f"{more} more entries with reason {reason} are not listed: the report keeps the first "
                    f"{ERRORS_KEPT} entries of an import"])
    return count


def summary_text(status: dict[str, Any]) -> str:
    """A few lines for people (the CLI prints them)."""
    if status.get("status") == "failed":
        return f"import {status.get('id')} failed: {status.get('error')} [{status.get('error_code')}]"
    summary = status.get("summary") or {}
    lines = [
        f"import {status.get('id')} into list {status.get('list')}: {status.get('status')}",
        f"  rows read: {summary.get('rows_read', 0)}, valid: {summary.get('valid', 0)}, "
        f"invalid: {summary.get('invalid', 0)}, duplicates: {summary.get('duplicates', 0)}, "
        f"contacts added: {summary.get('contacts_added', 0)}",
    ]
    for reason, count in (summary.get("invalid_by_reason") or {}).items():
        lines.append(f"  invalid ({reason}): {count}")
    for reason, count in (summary.get("duplicates_by_reason") or {}).items():
        lines.append(f"  duplicate numbers ({reason}): {count}")
    if summary.get("warnings"):
        lines.append(f"  warnings: {summary['warnings']}")
    for reason, count in (summary.get("errors_not_listed") or {}).items():
        lines.append(f"  not listed in the error report ({reason}): {count}")
    if summary.get("consents"):
        lines.append(f"  consent records: {summary['consents']}")
    return "\n".join(lines)


__all__ = ["COLUMNS", "file_failure", "message_of", "summary_text", "write_error_report"]
