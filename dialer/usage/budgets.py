"""Budget alerts and the hard stop, checked after each metered call (the runtime) and on demand (CLI, API).

For each budget of the tenant's plan (dialer/usage/plan.py): the use so far in its period (UTC day or month,
from the counters of dialer/usage/meter.py) against its limit. Each alert threshold reached sends one webhook
`usage.budget_alert` per budget, period and threshold: the "sent" mark and the event are written by one script,
so an alert is never lost between the two nor sent twice. With hard_stop, reaching 100 % holds the tenant's
dialing until the period ends (dialer/holds.py, BUDGET_EXHAUSTED): calls up finish, no new one is placed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dialer import holds
from dialer.usage import meter
from dialer.usage.plan import BUDGET_MEASURES, Budget, Plan, cached_plan
from dialer.webhooks.events import emit_once

log = logging.getLogger(__name__)

ALERTED_TTL = 40 * 86400



@dataclass(frozen=True)
class BudgetState:
    budget: Budget
    period: str  # 2026-12-06 or 2026-12
    used: float  # in the budget's unit (minutes or attempts)
    percent: float
    ends_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {**self.budget.as_dict(), "period_label": self.period, "used": round(self.used, 2),
                "percent": round(self.percent, 1), "ends_at": self.ends_at.isoformat().replace("+00:00", "Z")}


def period_of(budget: Budget, at: datetime) -> tuple[str, datetime]:
    """The label and end (exclusive, UTC) of the budget's period holding `at` (pure)."""
    day = at.astimezone(UTC).date()
    if budget.period == "day":
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return day.isoformat(), start + timedelta(days=1)
    nxt = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=UTC)
    return f"{day.year:04d}-{day.month:02d}", nxt


def used_of(budget: Budget, counters: dict[str, Any]) -> float:
    raw = float(counters.get(BUDGET_MEASURES[budget.measure]) or 0)
    return raw / 60.0 if budget.measure == "billable_minutes" else raw


def states(client: Any, tenant: str, plan: Plan, at: datetime) -> list[BudgetState]:
    """Each budget's use in its current period (two reads at most)."""
    if not plan.budgets:
        return []
    day = at.astimezone(UTC).date()
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(meter.day_key(tenant, day))
    pipe.hgetall(meter.month_key(tenant, day.year, day.month))
    day_raw, month_raw = (_texts(x) for x in pipe.execute())
    out = []
    for budget in plan.budgets:
        label, ends = period_of(budget, at)
        used = used_of(budget, day_raw if budget.period == "day" else month_raw)
        out.append(BudgetState(budget, label, used, 100.0 * used / budget.limit, ends))
    return out


def _texts(raw: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()}


def check_budgets(client: Any, tenant: str, at: datetime, plan: Plan | None = None) -> list[BudgetState]:
    """Send the alerts due and apply the hard stop; returns the budgets' states."""
    plan = plan or cached_plan(client, tenant)
    found = states(client, tenant, plan, at)
    for index, state in enumerate(found):
        b = state.budget
        for threshold in b.alerts:
            if state.percent >= threshold:
                _alert(client, tenant, index, state, threshold, at)
        if b.hard_stop and state.percent >= 100:
            reason = (f"{b.period} budget of {b.limit} {b.measure.replace('_', ' ')} used up "
                      f"({state.used:.0f} in {state.period})")
            if holds.hold_for_budget(client, tenant, reason=reason, until=state.ends_at, at=at):
                log.warning("tenant %s: dialing held until %s: %s", tenant, state.ends_at.isoformat(), reason)
    return found


def alerted_key(tenant: str, period: str) -> str:
    return f"t:{tenant}:usage:alerted:{period}"


def _alert(client: Any, tenant: str, index: int, state: BudgetState, threshold: int, at: datetime) -> bool:
    b = state.budget
    mark = f"{index}:{b.measure}:{b.period}:{b.limit}:{threshold}"
    sent = emit_once(client, tenant, alerted_key(tenant, state.period), mark, "usage.budget_alert", f"budget:{index}", {
        "measure": b.measure, "period": b.period, "period_label": state.period, "limit": b.limit,
        "used": round(state.used, 2), "percent": round(state.percent, 1), "threshold": threshold,
        "hard_stop": b.hard_stop and threshold >= 100}, at, ALERTED_TTL)
    if sent:
        log.warning("tenant %s: %s %s budget at %d %% (%.0f of %d)", tenant, b.period, b.measure, threshold,
                    state.used, b.limit)
    return bool(sent)


def replace_plan(client: Any, tenant: str, data: Any, *, actor: str, at: datetime) -> tuple[Plan, list[BudgetState]]:
    """Store a new plan (audited), lift a budget hold no hard-stop budget justifies any more (the limit was raised
    or the stop removed), and apply the new plan's alerts and stops at once. PlanError names a bad field."""
    from dialer.audit import AuditLog
    from dialer.usage.plan import set_plan

    plan = set_plan(client, tenant, data, actor=actor, audit=AuditLog(client), at=at)
    found = states(client, tenant, plan, at)
    if not any(s.budget.hard_stop and s.percent >= 100 for s in found):
        holds.lift_budget_hold(client, tenant, reason="usage plan changed", by=actor, at=at)
    check_budgets(client, tenant, at, plan)
    return plan, found
