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
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from dialer import livestats
from dialer.campaigns import campaign_key, campaigns_key
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
}


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
    return samples


async def metrics(request: web.Request) -> web.Response:
    text = render(await collect(redis_of(request), principal(request).tenant))
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


ROUTES = [
    Route("GET", "/metrics", metrics, "Prometheus metrics for the caller's tenant", "metrics.read",
          content_type="text/plain", tag="metrics", audited=False),
]

