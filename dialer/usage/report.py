"""Reading usage per period: the API (GET /v1/usage and its CSV), `dialer usage` and /metrics share these.

Figures are the counters of dialer/usage/meter.py summed over the period's UTC days; contacts_stored is the last
reading in the period (a gauge). Minutes are derived from seconds here (billable_minutes = billable_seconds / 60,
exact: the rounding rule was applied per call when it was counted).
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import date, timedelta
from typing import Any

from dialer.usage.meter import GAUGES, MEASURES, day_key

log = logging.getLogger(__name__)

MAX_DAYS = 366
MINUTES = {"billable_minutes": "billable_seconds", "ai_minutes": "ai_seconds", "talk_minutes": "talk_seconds",
           "recording_minutes": "recording_seconds"}


class PeriodError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def month_period(text: str) -> tuple[date, date]:
    """'2026-12' -> (1 Dec, 31 Dec)."""
    try:
        year, month = (int(x) for x in text.split("-"))
        start = date(year, month, 1)
    except ValueError:
        raise PeriodError("month", "expected YYYY-MM") from None
    end = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return start, end


def period(start: str | None, end: str | None, month: str | None, today: date) -> tuple[date, date]:
    """The period asked for: a month, or from/to days (inclusive; default: this month so far)."""
    if month:
        if start or end:
            raise PeriodError("month", "give either month or from/to")
        return month_period(month)
    try:
        first = date.fromisoformat(start) if start else today.replace(day=1)
        last = date.fromisoformat(end) if end else today
    except ValueError:
        raise PeriodError("from" if start and not _is_day(start) else "to", "expected YYYY-MM-DD") from None
    if last < first:
        raise PeriodError("to", "before from")
    if (last - first).days + 1 > MAX_DAYS:
        raise PeriodError("to", f"a period of at most {MAX_DAYS} days")
    return first, last


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _with_minutes(figures: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = dict(figures)
    for name, seconds in MINUTES.items():
        out[name] = round(figures.get(seconds, 0) / 60.0, 2)
    return out


def split_day(raw: dict[Any, Any]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """One day hash -> (tenant figures, campaign -> figures) (pure)."""
    tenant: dict[str, int] = {m: 0 for m in (*MEASURES, *GAUGES)}
    campaigns: dict[str, dict[str, int]] = {}
    for k, v in raw.items():
        key, value = _text(k), int(float(_text(v)))
        if key.startswith("c:"):
            campaign, _, measure = key[2:].rpartition(":")
            if measure in MEASURES:
                campaigns.setdefault(campaign, {m: 0 for m in MEASURES})[measure] = value
        elif key in tenant:
            tenant[key] = value
    return tenant, campaigns


def usage(client: Any, tenant: str, first: date, last: date) -> dict[str, Any]:
    """Usage per day and in total over [first, last] (UTC days), from the Redis counters."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    pipe = client.pipeline(transaction=False)
    for day in days:
        pipe.hgetall(day_key(tenant, day))
    return assemble(tenant, first, last, list(zip(days, pipe.execute(), strict=True)))


def assemble(tenant: str, first: date, last: date, raws: list[tuple[date, dict[Any, Any]]]) -> dict[str, Any]:
    """The report from each day's counters as a day hash holds them (Redis's, or rebuilt from the record by
    dialer/usage/archived.py): per day, per campaign and in total (pure)."""
    totals = {m: 0 for m in MEASURES}
    by_campaign: dict[str, dict[str, int]] = {}
    rows = []
    stored = 0
    for day, raw in raws:
        if not raw:
            continue
        figures, campaigns = split_day(raw)
        for m in MEASURES:
            totals[m] += figures[m]
        for campaign, values in campaigns.items():
            into = by_campaign.setdefault(campaign, {m: 0 for m in MEASURES})
            for m in MEASURES:
                into[m] += values[m]
        if raw and any(_text(k) == "contacts_stored" for k in raw):
            stored = figures["contacts_stored"]
        rows.append({"day": day.isoformat(), **_with_minutes(figures),
                     "campaigns": {c: _with_minutes(v) for c, v in sorted(campaigns.items())}})
    return {"tenant": tenant, "from": first.isoformat(), "to": last.isoformat(),
            "totals": {**_with_minutes(totals), "contacts_stored": stored},
            "campaigns": {c: _with_minutes(v) for c, v in sorted(by_campaign.items())}, "days": rows}


CSV_COLUMNS = ("day", "campaign", *MEASURES, *MINUTES, "contacts_stored")


def usage_csv(report: dict[str, Any]) -> str:
    """One row per day and campaign, plus each day's tenant total (campaign empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report["days"]:
        writer.writerow([row["day"], "", *(row.get(c, "") for c in CSV_COLUMNS[2:])])
        for campaign, figures in row["campaigns"].items():
            # campaign ids are ours ([A-Za-z0-9_-]): no formula can start a cell
            writer.writerow([row["day"], campaign, *(figures.get(c, "") for c in CSV_COLUMNS[2:-1]), ""])
    return out.getvalue()


def contacts_stored(client: Any, tenant: str) -> int:
    """Contact records held in the tenant's lists (a contact in two lists counts twice: two records), read from the
    record where contacts live (docs/record.md); RecordUnavailable when it cannot be read."""
    from dialer.record.contacts import list_counts
    from dialer.record.current import contact_record

    return sum(list_counts(contact_record(), tenant).values())


def snapshot_contacts(client: Any, tenant: str, at: Any) -> int | None:
    """Read and keep today's contacts-stored figure (the reports and the record read it per day). A record that
    cannot be read now keeps the last reading (None): the gauge is read again at the next snapshot."""
    from dialer.record.store import RecordUnavailable
    from dialer.usage.meter import record_contacts_stored

    try:
        count = contacts_stored(client, tenant)
    except RecordUnavailable as exc:
        log.warning("tenant %s: contacts stored not read (%s); the last reading stands", tenant, exc)
        return None
    record_contacts_stored(client, tenant, count, at)
    return count
