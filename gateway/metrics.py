"""Prometheus `/metrics` (text format 0.0.4) for the caller's tenant, read from the live-stats keys.

Scrape with the tenant's token (`authorization: {credentials: dlr_...}` in the scrape config); a
token only ever sees its own tenant's series. Sources (see dialer/livestats.py):
  dialer_calls_total{campaign,disposition}      t:{T}:campaign:{C}:dispositions
  dialer_gate_denials_total{campaign,reason}    t:{T}:campaign:{C}:denials
  dialer_abandon_rate{campaign,window}          stats hash abandon_rate_24h / abandon_rate_30d
  dialer_active_channels{campaign}              stats hash dialing + ringing + connected
  dialer_queue_depth{campaign}                  stats hash queue_depth
  dialer_agents{campaign,state}                 stats hash agents_free / agents_busy
  dialer_campaigns{status}                      campaign records
  dialer_usage_*_total{campaign}                this calendar month's metered usage (dialer/usage/meter.py), per
                                                campaign: attempts, connected, billable_seconds, ai_seconds,
                                                recordings (counters that restart each month: Prometheus treats
                                                the drop as a reset)
  dialer_budget_used_ratio{measure,period}      each budget's use over its limit (dialer/usage/budgets.py)
  dialer_tenant_held{code}                      1 while a tenant-wide kill-switch hold is in force (dialer/holds.py)
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer import holds, livestats
from dialer.campaigns import campaign_key, campaigns_key
from dialer.usage import budgets, meter
from dialer.usage.plan import PlanError, parse, plan_key
from gateway.routing import Route, principal, redis_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HELP = {
    "dialer_calls_total": ("counter", "Calls ended, by disposition"),
    "dialer_gate_denials_total": ("counter", "Contacts the compliance gate refused, by reason code"),
    "dialer_abandon_rate": ("gauge", "Share of answered calls abandoned over the window"),
    "dialer_active_channels": ("gauge", "Calls dialing, ringing or connected"),
    "dialer_queue_depth": ("gauge", "Contacts ready to dial"),
    "dialer_agents": ("gauge", "Agents by state"),
    "dialer_campaigns": ("gauge", "Campaigns by status"),
    "dialer_usage_attempts_total": ("counter", "Calls placed this month (metered once per call)"),
    "dialer_usage_connected_total": ("counter", "Connected calls this month"),
    "dialer_usage_billable_seconds_total": ("counter", "Billable seconds this month (the tenant's rounding rule)"),
    "dialer_usage_ai_seconds_total": ("counter", "AI-agent billable seconds this month"),
    "dialer_usage_recordings_total": ("counter", "Recorded calls this month"),
    "dialer_budget_used_ratio": ("gauge", "A usage budget's use over its limit in its current period"),
    "dialer_tenant_held": ("gauge", "1 while a tenant-wide kill-switch hold stops dialing"),
}
USAGE_METRICS = ("attempts", "connected", "billable_seconds", "ai_seconds", "recordings")


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def render(samples: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    """Exposition text for {metric: [(labels, value)]} (pure)."""
    lines = []
    for name, (kind, text) in HELP.items():
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples.get(name, []):
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            shown = int(value) if float(value).is_integer() else value
            lines.append(f"{name}{{{inner}}} {shown}")
    return "\n".join(lines) + "\n"


async def collect(redis: Any, tenant: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    ids = await redis.zrange(campaigns_key(tenant), 0, -1)
    pipe = redis.pipeline(transaction=False)
    for campaign in ids:
        pipe.hget(campaign_key(tenant, campaign), "status")
        pipe.hgetall(livestats.stats_key(tenant, campaign))
        pipe.hgetall(livestats.dispositions_key(tenant, campaign))
        pipe.hgetall(livestats.denials_key(tenant, campaign))
    raw = await pipe.execute() if ids else []
    samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in HELP}
    statuses: Counter[str] = Counter()
    for i, campaign in enumerate(ids):
        status, stats, dispositions, denials = raw[4 * i: 4 * i + 4]
        if status is None:
            continue
        statuses[status] += 1
        base = {"tenant": tenant, "campaign": campaign}
        for disposition, count in sorted(dispositions.items()):
            samples["dialer_calls_total"].append(({**base, "disposition": disposition}, _number(count)))
        for reason, count in sorted(denials.items()):
            samples["dialer_gate_denials_total"].append(({**base, "reason": reason}, _number(count)))
        if stats:
            for window in ("24h", "30d"):
                samples["dialer_abandon_rate"].append(
                    ({**base, "window": window}, _number(stats.get(f"abandon_rate_{window}"))))
            active = sum(_number(stats.get(k)) for k in ("dialing", "ringing", "connected"))
            samples["dialer_active_channels"].append((base, active))
            samples["dialer_queue_depth"].append((base, _number(stats.get("queue_depth"))))
            for state in ("free", "busy"):
                samples["dialer_agents"].append(({**base, "state": state}, _number(stats.get(f"agents_{state}"))))
    for status, count in sorted(statuses.items()):
        samples["dialer_campaigns"].append(({"tenant": tenant, "status": status}, count))
    await _usage_samples(redis, tenant, samples)
    return samples


async def _usage_samples(redis: Any, tenant: str, samples: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    now = datetime.now(UTC)
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(meter.month_key(tenant, now.year, now.month))
    pipe.hgetall(meter.day_key(tenant, now.date()))
    pipe.get(plan_key(tenant))
    pipe.mget([holds.operator_key(tenant), holds.budget_key(tenant)])
    month, day, plan_raw, held = await pipe.execute()
    for field, value in sorted(month.items()):
        if field.startswith("c:"):
            campaign, _, measure = field[2:].rpartition(":")
            if measure in USAGE_METRICS:
                samples[f"dialer_usage_{measure}_total"].append(({"tenant": tenant, "campaign": campaign},
                                                                 _number(value)))
    try:
        plan = parse(json.loads(plan_raw)) if plan_raw else None
    except (ValueError, PlanError):
        plan = None
    for budget in plan.budgets if plan else ():
        used = budgets.used_of(budget, day if budget.period == "day" else month)
        samples["dialer_budget_used_ratio"].append(({"tenant": tenant, "measure": budget.measure,
                                                     "period": budget.period}, round(used / budget.limit, 4)))
    for raw in held:
        hold = holds.parse_hold(raw)
        if hold is not None:
            samples["dialer_tenant_held"].append(({"tenant": tenant, "code": hold.code}, 1))


async def metrics(request: web.Request) -> web.Response:
    text = render(await collect(redis_of(request), principal(request).tenant))
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


ROUTES = [
    Route("GET", "/metrics", metrics, "Prometheus metrics for the caller's tenant", "metrics.read",
          content_type="text/plain", tag="metrics", audited=False),
]

