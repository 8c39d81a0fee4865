"""What one call counts for, and the usage counters, counted exactly once per call.

A call is metered in the same MULTI/EXEC that records its outcome (FactStore.record_outcome, keyed by the call's
unique id): the attempt record keeps what was counted for the call (`metered`), and only the difference between
what the call counts for now and what was already counted is added to the counters. So the same outcome settled
twice (the live events, then the AstDB read-back after a restart; an AMI reconnect replaying a hangup) adds
nothing the second time, and a more precise second report (an `unknown` call later found answered) adds only what
it learnt. A dialer that dies before the transaction loses nothing either: the call is still `reserved`, and the
process that takes it over settles (and meters) it. Counts never go down: a weaker later report keeps the larger
figure.

Keys (tenant T; day D = YYYYMMDD and month M = YYYYMM of the call's reservation, UTC):
  t:{T}:usage:day:{D}     hash  <measure> (tenant total) and c:<campaign>:<measure>
  t:{T}:usage:month:{M}   hash  the same, for the month (budgets read it in one HGETALL)
  t:{T}:usage:days        zset  D -> D as a number (the days that have counters, for reports and archiving)
  t:{T}:usage:entries     int   `usage` audit entries written (the record holds as many rows once caught up)
No expiry: billing data, never deleted by the dialer.

Durable: the same MULTI/EXEC that adds to the counters appends an audit entry of kind `usage` (usage_event: the
call, its campaign, its day and what was added), and the contacts-stored reading appends one when it changes. The
audit stream is the record's outbox (dialer/record/archiver.py), so each increment reaches the record's
usage_records table exactly once, and usage can be rebuilt from the record after Redis lost its counters
(dialer/usage/archived.py reads it back).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from dialer.audit import AuditEvent, AuditLog

# Counters, in the order reports show them. contacts_stored is a gauge (the day's last reading), not counted here.
MEASURES = ("attempts", "connected", "talk_seconds", "billable_seconds", "ai_seconds", "recordings",
            "recording_seconds")
GAUGES = ("contacts_stored",)

# Rounding rules: name -> the increment a connected call's duration is rounded up to (seconds). Data: a plan
# (dialer/usage/plan.py) names one; the 1-second floor means a connected call of 0.2 s bills 1 s.
ROUNDING: dict[str, int] = {"per_second": 1, "per_6_seconds": 6, "per_minute": 60}
DEFAULT_ROUNDING = "per_second"


@dataclass(frozen=True)
class CallUsage:
    """What the runtime knows of a call when it records its outcome (epoch seconds from the AMI events or AstDB)."""

    answered_at: float | None
    ended_at: float | None
    ai: bool = False  # an AI agent took the call (agentless campaign)
    recorded: bool = False  # the campaign records its calls


def billable(seconds: float, rule: str) -> int:
    """A connected call's billable seconds: rounded up to the rule's increment, at least one increment."""
    step = ROUNDING[rule]
    return max(1, math.ceil(max(0.0, seconds) / step)) * step


def measures(usage: CallUsage, rule: str) -> dict[str, int]:
    """What one placed call counts for (pure)."""
    connected = usage.answered_at is not None
    talk = max(0.0, (usage.ended_at or usage.answered_at or 0.0) - (usage.answered_at or 0.0)) if connected else 0.0
    bill = billable(talk, rule) if connected else 0
    return {"attempts": 1, "connected": int(connected), "talk_seconds": math.ceil(talk), "billable_seconds": bill,
            "ai_seconds": bill if usage.ai else 0, "recordings": int(connected and usage.recorded),
            "recording_seconds": math.ceil(talk) if connected and usage.recorded else 0}


def merge(before: Mapping[str, Any] | None, now: Mapping[str, int]) -> dict[str, int]:
    """What the call counts for after this report: never less than what was counted (pure)."""
    old = before or {}
    return {m: max(int(old.get(m, 0) or 0), int(now.get(m, 0))) for m in MEASURES}


def delta(before: Mapping[str, Any] | None, after: Mapping[str, int]) -> dict[str, int]:
    """What to add to the counters (pure): zero for a report already counted."""
    old = before or {}
    return {m: after[m] - int(old.get(m, 0) or 0) for m in MEASURES if after[m] != int(old.get(m, 0) or 0)}


def day_key(tenant: str, day: date) -> str:
    return f"t:{{{tenant}}}:usage:day:{day:%Y%m%d}"


def month_key(tenant: str, year: int, month: int) -> str:
    return f"t:{{{tenant}}}:usage:month:{year:04d}{month:02d}"


def days_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:usage:days"


def entries_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:usage:entries"


def day_of(stamp: str | None, fallback: datetime) -> date:
    """The UTC day of the attempt's reservation instant (ISO text), else of `fallback`."""
    if stamp:
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).date()
        except ValueError:
            pass
    return fallback.astimezone(UTC).date()


def campaign_field(campaign: str, measure: str) -> str:
    return f"c:{campaign}:{measure}"


USAGE_ACTOR = "meter"


def usage_event(call_id: str, campaign: str, day: date, added: Mapping[str, int], at: datetime) -> AuditEvent:
    """The audit entry of one increment (kind `usage`): what the record sums to rebuild the counters."""
    return AuditEvent("usage", USAGE_ACTOR, {"call_id": call_id, "campaign": campaign, "day": day.isoformat(),
                                             "added": {m: int(n) for m, n in added.items()}}, at)


def queue_counts(pipe: Any, tenant: str, campaign: str, day: date, added: Mapping[str, int], *,
                 audit: AuditLog | None = None, call_id: str = "", at: datetime | None = None) -> None:
    """Queue the increments on `pipe` (the caller's MULTI): tenant and campaign, day and month; with `audit`,
    also the increment's `usage` audit entry (the record's copy), in the same transaction."""
    if not added:
        return
    if audit is not None:
        audit.queue(pipe, tenant, [usage_event(call_id, campaign, day, added, at or datetime.now(UTC))])
        pipe.incr(entries_key(tenant))
    for key in (day_key(tenant, day), month_key(tenant, day.year, day.month)):
        for measure, n in added.items():
            pipe.hincrby(key, measure, n)
            if campaign:
                pipe.hincrby(key, campaign_field(campaign, measure), n)
    label = f"{day:%Y%m%d}"
    pipe.zadd(days_key(tenant), {label: int(label)})


def record_contacts_stored(client: Any, tenant: str, count: int, at: datetime) -> None:
    """The day's contacts-stored gauge (the last reading of the day wins). A reading that differs from the day's
    is also audited (kind `usage`, `contacts_stored`) for the record; an unchanged one writes nothing."""
    day = at.astimezone(UTC).date()
    held = client.hget(day_key(tenant, day), "contacts_stored")
    if held is not None and int(held) == count:
        return
    pipe = client.pipeline(transaction=True)
    AuditLog(client).queue(pipe, tenant, [AuditEvent("usage", USAGE_ACTOR, {"day": day.isoformat(),
                                                                          "contacts_stored": int(count)}, at)])
    pipe.incr(entries_key(tenant))
    pipe.hset(day_key(tenant, day), "contacts_stored", count)
    pipe.hset(month_key(tenant, day.year, day.month), "contacts_stored", count)
    label = f"{day:%Y%m%d}"
    pipe.zadd(days_key(tenant), {label: int(label)})
    pipe.execute()
