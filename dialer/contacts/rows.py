"""One parsed CSV record -> a contact (normalized phones, kept fields, consent) and/or row errors.

Pure: the plan, the default region and the record in; a RowResult out. Row numbers count records
from the top of the file (the header is row 1), as a spreadsheet shows them; `line` is the physical
line where the record starts (they differ when a quoted field holds line breaks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from dialer.contacts.columns import ColumnPlan
from dialer.contacts.phones import Phone, PhoneError, normalize
from rules.model import PURPOSES

MAX_CELL = 1000  # longer cells are refused (a runaway quote, a pasted document)
CONSENT_FIELDS = ("consent_given_at", "consent_source", "consent_evidence", "consent_purpose", "consent_written")
_CONSENT = frozenset(CONSENT_FIELDS)
_TRUE = {"1", "true", "yes", "y", "oui", "o", "vrai", "x"}
_FALSE = {"0", "false", "no", "n", "non", "faux", ""}


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    line: int
    column: str
    value: str
    reason: str
    message: str
    severity: str = "error"  # error: the row (or this cell) is not imported; warning: imported, note this

    def as_dict(self) -> dict[str, object]:
        return {
            "row": self.row, "line": self.line, "column": self.column, "value": self.value[:200],
            "reason": self.reason, "message": self.message, "severity": self.severity,
        }


@dataclass
class RowResult:
    phones: list[tuple[str, Phone]] = field(default_factory=list)  # (column name, phone), valid only
    fields: dict[str, str] = field(default_factory=dict)
    consent: dict[str, object] | None = None
    errors: list[RowError] = field(default_factory=list)
    rejected: str | None = None  # reason code when the row is not imported at all


def parse_consent_time(raw: str) -> datetime:
    """ISO 8601 date or date-time, or dd/mm/yyyy (French exports). Naive times are taken as UTC."""
    text = raw.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.strptime(text, "%d/%m/%Y")
        except ValueError:
            try:
                parsed = datetime.strptime(text, "%d/%m/%Y %H:%M")
            except ValueError:
                raise ValueError(text) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def process_record(record: list[str], row: int, line: int, plan: ColumnPlan, region: str,
                   at: datetime | None = None) -> RowResult:
    """`at`: the instant the import was registered (consent dates after it are reported)."""
    result = RowResult()
    extra = len(record) - plan.width
    if extra > 0 and any(cell.strip() for cell in record[plan.width :]):
        # More cells than the header: usually an unquoted delimiter inside a value. Refuse, do not guess.
        result.errors.append(RowError(
            row, line, f"#{plan.width + 1}", record[plan.width], "field_count",
            f"{len(record)} cells where the header has {plan.width}: check quoting of this row",
        ))
        result.rejected = "field_count"
        return result
    consent_raw: dict[str, str] = {}
    phone_errors: list[RowError] = []
    for column in plan.columns:
        value = record[column.index] if column.index < len(record) else ""
        if len(value) > MAX_CELL:
            result.errors.append(RowError(row, line, column.name, value, "cell_too_long",
                                          f"{len(value)} characters (at most {MAX_CELL}): a quote left open?"))
            result.rejected = "cell_too_long"
            return result
        text = value.strip()  # once: this loop runs for every cell of every import
        if column.field == "phone":
            if not text:
                continue
            phone = normalize(value, region)
            if isinstance(phone, PhoneError):
                phone_errors.append(RowError(row, line, column.name, value, phone.reason, phone.message))
            else:
                if phone.extension:
                    result.errors.append(RowError(
                        row, line, column.name, value, "phone_extension",
                        f"extension {phone.extension} kept apart: the number is dialed without it", "warning",
                    ))
                if not result.phones or all(p.e164 != phone.e164 for _, p in result.phones):
                    result.phones.append((column.name, phone))
        elif column.field in _CONSENT:
            if text:
                consent_raw[column.field] = text
        elif text:
            result.fields[column.field] = text
    if not result.phones:
        if phone_errors:
            result.errors.extend(phone_errors)
            result.rejected = phone_errors[0].reason
        else:
            name = plan.phone_columns[0].name
            result.errors.append(RowError(row, line, name, "", "missing_phone", "no phone number in this row"))
            result.rejected = "missing_phone"
        return result
    for error in phone_errors:  # the row is kept with its valid numbers; the bad cell is reported
        result.errors.append(error)
    if consent_raw:
        result.consent = _consent(consent_raw, row, line, plan, result.errors, at)
    return result


def _column_name(plan: ColumnPlan, field_name: str) -> str:
    return next((c.name for c in plan.columns if c.field == field_name), field_name)


def _consent(raw: dict[str, str], row: int, line: int, plan: ColumnPlan, errors: list[RowError],
             at: datetime | None = None) -> dict | None:
    given = raw.get("consent_given_at")
    if not given:
        errors.append(RowError(row, line, _column_name(plan, "consent_given_at"), "", "consent_missing_date",
                               "consent columns filled but no consent date: no consent recorded"))
        return None
    try:
        given_at = parse_consent_time(given)
    except ValueError:
        errors.append(RowError(row, line, _column_name(plan, "consent_given_at"), given, "consent_bad_date",
                               "unreadable consent date (use 2024-05-31 or 2024-05-31T14:00:00Z): no consent recorded"))
        return None
    written_raw = raw.get("consent_written", "").lower()
    if written_raw not in _TRUE and written_raw not in _FALSE:
        errors.append(RowError(row, line, _column_name(plan, "consent_written"), raw["consent_written"],
                               "consent_bad_written", "consent_written must be yes/no: no consent recorded"))
        return None
    if at is not None and given_at > at:
        # Kept as given (evidence is never dropped), but the gate counts a consent only from its date on:
        # a typo (2042 for 2024) would otherwise leave the client believing the person can be called.
        errors.append(RowError(row, line, _column_name(plan, "consent_given_at"), given, "consent_future_date",
                               "consent date is after the import: recorded as given, but the gate ignores it "
                               "until that date", "warning"))
    purpose = raw.get("consent_purpose", "")
    if purpose and purpose not in PURPOSES:
        errors.append(RowError(row, line, _column_name(plan, "consent_purpose"), purpose, "consent_unknown_purpose",
                               f"recorded as given, but only these purposes match a campaign: {', '.join(PURPOSES)}",
                               "warning"))
    return {
        "given_at": given_at.isoformat(),
        "source": raw.get("consent_source", ""),
        "evidence": raw.get("consent_evidence", ""),
        "purpose": raw.get("consent_purpose", ""),
        "written": written_raw in _TRUE,
        "row": row,
    }
