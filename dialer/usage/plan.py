"""The tenant's usage plan, as data: how connected calls are rounded for billing, and budgets.

  t:{T}:usage:plan   JSON {"rounding": <meter.ROUNDING name>, "budgets": [budget, ...]}

A budget: {"measure": "billable_minutes" | "attempts", "period": "day" | "month", "limit": N,
"alerts": [percent, ...] (default 80 and 100), "hard_stop": bool}. At each alert threshold a webhook
`usage.budget_alert` is sent once per budget, period and threshold; with hard_stop, reaching 100 % holds the
tenant's dialing until the period ends (dialer/holds.py, code BUDGET_EXHAUSTED). The plan is changed by the
tenant's admin (PUT /v1/usage/plan) or the operator (`dialer usage plan`); every change is audited.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from dialer.usage.meter import DEFAULT_ROUNDING, ROUNDING

BUDGET_MEASURES = {"billable_minutes": "billable_seconds", "attempts": "attempts"}  # budget unit -> counter
PERIODS = ("day", "month")
DEFAULT_ALERTS = (80, 100)
MAX_BUDGETS = 20

BUDGET_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["measure", "period", "limit"], "additionalProperties": False,
    "properties": {
        "measure": {"type": "string", "enum": list(BUDGET_MEASURES)},
        "period": {"type": "string", "enum": list(PERIODS), "description": "UTC day or calendar month"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 10**12},
        "alerts": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 1000}, "maxItems": 10,
                   "description": "percentages of the limit at which a usage.budget_alert webhook is sent"},
        "hard_stop": {"type": "boolean", "default": False,
                      "description": "at 100 %, hold the tenant's dialing until the period ends"},
    },
}
PLAN_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "rounding": {"type": "string", "enum": list(ROUNDING), "default": DEFAULT_ROUNDING,
                     "description": "billable seconds of a connected call: rounded up per second, per 6 s, per minute"},
        "budgets": {"type": "array", "items": BUDGET_SCHEMA, "maxItems": MAX_BUDGETS},
    },
}


class PlanError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Budget:
    measure: str
    period: str
    limit: int
    alerts: tuple[int, ...] = DEFAULT_ALERTS
    hard_stop: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"measure": self.measure, "period": self.period, "limit": self.limit, "alerts": list(self.alerts),
                "hard_stop": self.hard_stop}


@dataclass(frozen=True)
class Plan:
    rounding: str = DEFAULT_ROUNDING
    budgets: tuple[Budget, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"rounding": self.rounding, "budgets": [b.as_dict() for b in self.budgets]}


def plan_key(tenant: str) -> str:
    return f"t:{tenant}:usage:plan"


def parse(data: Any) -> Plan:
    """A plan from its JSON form; PlanError names the first bad field (pure)."""
    if not isinstance(data, dict):
        raise PlanError("", "a plan is an object")
    unknown = set(data) - {"rounding", "budgets"}
    if unknown:
        raise PlanError(sorted(unknown)[0], "unknown field")
    rounding = data.get("rounding", DEFAULT_ROUNDING)
    if rounding not in ROUNDING:
        raise PlanError("rounding", f"one of {', '.join(ROUNDING)}")
    raw = data.get("budgets") or []
    if not isinstance(raw, list) or len(raw) > MAX_BUDGETS:
        raise PlanError("budgets", f"a list of at most {MAX_BUDGETS} budgets")
    budgets = []
    for i, b in enumerate(raw):
        where = f"budgets[{i}]"
        if not isinstance(b, dict):
            raise PlanError(where, "a budget is an object")
        if set(b) - set(BUDGET_SCHEMA["properties"]):
            raise PlanError(f"{where}.{sorted(set(b) - set(BUDGET_SCHEMA['properties']))[0]}", "unknown field")
        if b.get("measure") not in BUDGET_MEASURES:
            raise PlanError(f"{where}.measure", f"one of {', '.join(BUDGET_MEASURES)}")
        if b.get("period") not in PERIODS:
            raise PlanError(f"{where}.period", f"one of {', '.join(PERIODS)}")
        limit = b.get("limit")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise PlanError(f"{where}.limit", "a whole number of at least 1")
        alerts = b.get("alerts", list(DEFAULT_ALERTS))
        if (not isinstance(alerts, list) or not all(isinstance(a, int) and not isinstance(a, bool) and 1 <= a <= 1000
                                                    for a in alerts)):
            raise PlanError(f"{where}.alerts", "a list of percentages (1-1000)")
        hard = b.get("hard_stop", False)
        if not isinstance(hard, bool):
            raise PlanError(f"{where}.hard_stop", "true or false")
        budgets.append(Budget(b["measure"], b["period"], limit, tuple(sorted(set(alerts))), hard))
    return Plan(rounding, tuple(budgets))


def get_plan(client: Any, tenant: str) -> Plan:
    raw = client.get(plan_key(tenant))
    if raw is None:
        return Plan()
    return parse(json.loads(raw))


def set_plan(client: Any, tenant: str, data: Any, *, actor: str, audit: Any, at: Any) -> Plan:
    """Validate and store the plan; audited (kind usage_plan) in the same transaction."""
    from dialer.audit import AuditEvent

    plan = parse(data)
    pipe = client.pipeline(transaction=True)
    pipe.set(plan_key(tenant), json.dumps(plan.as_dict(), sort_keys=True))
    audit.queue(pipe, tenant, [AuditEvent("usage_plan", actor, plan.as_dict(), at)])
    pipe.execute()
    _cache.pop(tenant, None)
    return plan


_cache: dict[str, tuple[float, Plan]] = {}
CACHE_SECONDS = 5.0


def cached_plan(client: Any, tenant: str) -> Plan:
    """The plan as read at most CACHE_SECONDS ago (the runtime reads it per call outcome). A plan that does not
    parse any more (edited by hand) counts with the defaults rather than stop counting."""
    now = time.monotonic()
    hit = _cache.get(tenant)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    try:
        plan = get_plan(client, tenant)
    except (PlanError, ValueError):
        plan = Plan()
    _cache[tenant] = (now, plan)
    return plan
