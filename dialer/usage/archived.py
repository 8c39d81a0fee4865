"""Usage read back from the record: the report of dialer/usage/report.py rebuilt from usage_records.

Every increment of the Redis counters is also a `usage` audit entry (dialer/usage/meter.py), which the archiver
copies once into usage_records (dialer/record/rows.py). A day's counters are therefore the sums of its rows
(per campaign and for the tenant), and its contacts stored the last reading (highest seq): the same day hashes
report.assemble turns into the report, so both sources answer in the same shape, figure for figure.

Which source answers a report (`source`):
  redis   the live counters
  record  usage_records
  auto    the record for a closed period (its last UTC day before today) once it holds every `usage` entry written
          (as many usage_records rows as Redis's t:{T}:usage:entries counts: no increment in flight); Redis
          otherwise, and when the record cannot be read. The answer says which (`source`). After Redis lost its
          data the count is gone too, so the record answers, until a usage increment is written again: Redis's
          new trail is a fork of the archived one (forked()), the archiver cannot copy past it, the record misses
          that increment, and Redis's counters (put back with restore_month, plus the new calls) answer.

restore_month writes a month's counters back into Redis from the record after a data loss (`dialer usage
--restore`), so budgets and hard stops count on from the true figures rather than from zero.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from dialer.usage.meter import MEASURES, campaign_field, day_key, days_key, entries_key, month_key
from dialer.usage.report import assemble, usage

log = logging.getLogger(__name__)

SOURCES = ("auto", "redis", "record")


def record_days(record: Any, tenant: str, first: date, last: date) -> list[tuple[date, dict[str, int]]]:
    """Each day's counters over [first, last] as a day hash would hold them, from usage_records."""
    bounds = (tenant, first.isoformat(), last.isoformat())
    sums = record.query(
        f"SELECT day, campaign, {', '.join(f'sum({m})' for m in MEASURES)} FROM usage_records "
        "WHERE tenant = %s AND day >= %s AND day <= %s AND contacts_stored IS NULL GROUP BY day, campaign", bounds)
    readings = record.query(
        "SELECT day, contacts_stored FROM usage_records WHERE tenant = %s AND day >= %s AND day <= %s "
        "AND contacts_stored IS NOT NULL ORDER BY seq", bounds)
    days: dict[str, dict[str, int]] = {}
    for day, campaign, *values in sums:
        into = days.setdefault(str(day), {})
        for measure, value in zip(MEASURES, values, strict=True):
            n = int(value or 0)
            into[measure] = into.get(measure, 0) + n
            if campaign:
                into[campaign_field(str(campaign), measure)] = n
    for day, value in readings:  # in seq order: the day's last reading stays
        days.setdefault(str(day), {})["contacts_stored"] = int(value)
    return [(date.fromisoformat(d), days[d]) for d in sorted(days)]


def usage_from_record(record: Any, tenant: str, first: date, last: date) -> dict[str, Any]:
    return assemble(tenant, first, last, record_days(record, tenant, first, last))


def caught_up(client: Any, record: Any, tenant: str) -> bool:
    """The record holds every usage increment written for the tenant (each entry is one row: its seq is the key).
    After a confirmed break (dialer/record/relink.py) only the rows of the entries Redis's current trail is made of
    count: the entries count restarted (or went back) with the trail."""
    from dialer.record.relink import breaks, current_history

    written = int(client.get(entries_key(tenant)) or 0)
    if forked(client, record, tenant):  # the count restarted with the trail: each one since is missing there
        return written == 0
    stored = 0
    for first, last in current_history(breaks(record, tenant)):
        if last is None:
            sql, args = "seq >= %s", (tenant, first)
        else:
            sql, args = "seq >= %s AND seq <= %s", (tenant, first, last)
        stored += int(record.query(f"SELECT count(*) FROM usage_records WHERE tenant = %s AND {sql}", args)[0][0])
    return stored >= written


def forked(client: Any, record: Any, tenant: str) -> bool:
    """Redis's audit trail is no longer the one the record copied: a data loss restarted it (and the entries count
    with it), so counting no longer says whether the record holds every increment, and the archiver stops at the
    fork (ChainGap) until an operator confirms the loss (`dialer record relink`). Seen as a head below the archived
    seq, or another entry at that seq (in Redis's numbering, after any confirmed break)."""
    from dialer.audit import head_key, stream_key
    from dialer.record.relink import position

    at = position(record, tenant)
    if at.seq == 0 and at.latest is None:
        return False
    head = client.hget(head_key(tenant), "seq")
    if head is None:  # nothing written since the loss (or no trail at all): nothing the record lacks
        return False
    last = at.redis_seq
    if int(head) < last:
        return True
    if last == 0:  # a confirmed restart, nothing of the new trail archived yet: it continues from the genesis
        return False
    found = client.xrange(stream_key(tenant), f"{last}-0", f"{last}-0")
    if not found:  # trimmed once archived: the same trail
        return False
    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in found[0][1].items()}
    value = fields.get("hash")
    return (value.decode() if isinstance(value, bytes) else str(value)) != at.expected_prev


def choose(client: Any, record: Any, tenant: str, last: date, today: date, source: str) -> str:
    """The source that answers: `redis` or `record` (RecordUnavailable from an explicit `record`)."""
    if source not in SOURCES:
        raise ValueError(f"source: one of {', '.join(SOURCES)}")
    if source != "auto":
        return source
    if last >= today or record is None:
        return "redis"
    from dialer.record.store import RecordUnavailable

    try:
        return "record" if caught_up(client, record, tenant) else "redis"
    except RecordUnavailable as exc:
        log.warning("usage of %s: read from Redis, the record cannot be read (%s)", tenant, exc)
        return "redis"


def usage_from(client: Any, record: Any, tenant: str, first: date, last: date, today: date,
               source: str = "auto") -> dict[str, Any]:
    """The report from the chosen source, with `source` saying which."""
    chosen = choose(client, record, tenant, last, today, source)
    found = usage_from_record(record, tenant, first, last) if chosen == "record" else usage(client, tenant, first,
                                                                                            last)
    found["source"] = chosen
    return found


class RestoreError(ValueError):
    """Counters not restored: one line saying why (nothing was written)."""


def restore_month(client: Any, record: Any, tenant: str, year: int, month: int, *, actor: str,
                  at: datetime) -> int:
    """After Redis lost its data: write a month's counters back from the record (day hashes, the month hash the
    budgets read, the days index), so budgets and live reports count on from the right figures. Refused when
    Redis holds any counter of that month (it was not lost: restoring would overwrite it). Audited (kind `usage`,
    action restore). The tenant's budgets are then checked at `at` (alerts, hard stop). Returns the days restored."""
    from dialer.audit import AuditEvent, AuditLog
    from dialer.usage.report import month_period

    first, last = month_period(f"{year:04d}-{month:02d}")
    found = record_days(record, tenant, first, last)
    if not found:
        raise RestoreError(f"the record holds no usage of {tenant} for {year:04d}-{month:02d}")
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    keys = [month_key(tenant, year, month), *(day_key(tenant, d) for d in days)]
    totals: dict[str, int] = {}
    for _, figures in found:
        for name, value in figures.items():
            if name != "contacts_stored":
                totals[name] = totals.get(name, 0) + value
    stored = [f["contacts_stored"] for _, f in found if "contacts_stored" in f]
    if stored:
        totals["contacts_stored"] = stored[-1]
    with client.pipeline(transaction=True) as pipe:
        pipe.watch(*keys)
        held = [k for k in keys if pipe.exists(k)]
        if held:
            pipe.unwatch()
            raise RestoreError(f"Redis still holds usage counters of {tenant} for {year:04d}-{month:02d} "
                               f"({held[0]}): nothing restored")
        pipe.multi()
        for day, figures in found:
            pipe.hset(day_key(tenant, day), mapping=figures)
            pipe.zadd(days_key(tenant), {f"{day:%Y%m%d}": int(f"{day:%Y%m%d}")})
        pipe.hset(month_key(tenant, year, month), mapping=totals)
        AuditLog(client).queue(pipe, tenant, [AuditEvent("usage", actor, {
            "action": "restore", "month": f"{year:04d}-{month:02d}", "days": len(found),
            "attempts": totals.get("attempts", 0), "billable_seconds": totals.get("billable_seconds", 0)}, at)])
        pipe.execute()
    from dialer.usage.budgets import check_budgets

    check_budgets(client, tenant, at)  # a hard stop the restored figures reach holds the tenant now, not after a call
    return len(found)
