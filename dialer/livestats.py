"""Live campaign figures: what the engine writes and the dashboard, SSE stream and /metrics read.

Keys per campaign (tenant-owned):
  t:{T}:campaign:{C}:stats          hash of gauges, overwritten as they change:
                                    dialing, ringing, connected, agents_free, agents_busy, calls_per_minute,
                                    queue_depth (contacts ready to dial), abandon_rate_24h, abandon_rate_30d
                                    (shares, 0.012 = 1.2 %), updated_at (ISO UTC);
                                    the campaign's queue: queue_staffed = queue_free + queue_on_call +
                                    queue_wrapup + queue_paused (every logged-in agent, each once);
                                    in_flight (its calls towards the queue not yet with an agent) and share (its
                                    share of the lines of agents it shares with other campaigns, 0-1);
                                    a member of a legal campaign (dialer/pacing/legal.py): legal_members (its
                                    dialer campaigns, finished ones included), legal_abandon_rate_24h / _30d (the
                                    window the cap applies to: all members together); 0 for other campaigns;
                                    pacing_reason (decision reason code), pacing_why (why it places only
                                    calls with an agent reserved; empty otherwise) and pacing_limited_by (trunk,
                                    cps: the ceiling that cut the last decision; empty otherwise): text, not gauges
  t:{T}:campaign:{C}:dispositions   hash disposition -> count since creation (answered, busy, no_answer, ...)
  t:{T}:campaign:{C}:denials        hash gate reason code -> count since creation
  t:{T}:campaign:{C}:hour:{YYYYMMDDHH}  hash per UTC hour: attempts, and one count per disposition;
                                    expires after HOUR_TTL seconds
Pub/sub channel:
  t:{T}:campaign:{C}:stats          every writer publishes "1" after a change; readers re-read the keys.
                                    Readers also poll once a second, so a lost message delays at most 1 s.

The queue_* helpers only queue commands on a pipeline (redis.Redis().pipeline() or the asyncio one);
the caller executes it, so one round trip carries a whole update. Instants are passed in, never read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

GAUGES = ("dialing", "ringing", "connected", "agents_free", "agents_busy", "calls_per_minute", "queue_depth",
          "abandon_rate_24h", "abandon_rate_30d", "queue_staffed", "queue_free", "queue_on_call", "queue_wrapup",
          "queue_paused", "in_flight", "share", "legal_members", "legal_abandon_rate_24h", "legal_abandon_rate_30d")
HOUR_TTL = 8 * 24 * 3600
HOURS_SHOWN = 24


def stats_key(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:stats"


def channel(tenant: str, campaign: str) -> str:
    return stats_key(tenant, campaign)


def dispositions_key(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:dispositions"


def denials_key(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:denials"


def hour_label(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H")


def hour_key(tenant: str, campaign: str, at: datetime) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:hour:{hour_label(at)}"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- writers (the engine) ---------------------------------------------------------------------

def queue_gauges(pipe: Any, tenant: str, campaign: str, values: dict[str, float], at: datetime) -> None:
    unknown = set(values) - set(GAUGES)
    if unknown:
        raise ValueError(f"unknown gauge(s): {', '.join(sorted(unknown))}")
    pipe.hset(stats_key(tenant, campaign), mapping={**{k: str(v) for k, v in values.items()}, "updated_at": _iso(at)})
    pipe.publish(channel(tenant, campaign), "1")


def queue_pacing(pipe: Any, tenant: str, campaign: str, reason: str, why: str, limited_by: str = "") -> None:
    """The campaign's pacing reason and, when it only places calls with an agent reserved, why (dashboard text);
    `limited_by`: the hard ceiling that cut its last decision (trunk, cps), or ""."""
    pipe.hset(stats_key(tenant, campaign), mapping={"pacing_reason": reason, "pacing_why": why,
                                                    "pacing_limited_by": limited_by})


def queue_attempt(pipe: Any, tenant: str, campaign: str, at: datetime) -> None:
    key = hour_key(tenant, campaign, at)
    pipe.hincrby(key, "attempts", 1)
    pipe.expire(key, HOUR_TTL)
    pipe.publish(channel(tenant, campaign), "1")


def queue_disposition(pipe: Any, tenant: str, campaign: str, disposition: str, at: datetime) -> None:
    key = hour_key(tenant, campaign, at)
    pipe.hincrby(dispositions_key(tenant, campaign), disposition, 1)
    pipe.hincrby(key, disposition, 1)
    pipe.expire(key, HOUR_TTL)
    pipe.publish(channel(tenant, campaign), "1")


def queue_denial(pipe: Any, tenant: str, campaign: str, reason: str) -> None:
    pipe.hincrby(denials_key(tenant, campaign), reason, 1)
    pipe.publish(channel(tenant, campaign), "1")


# --- readers (gateway) ------------------------------------------------------------------------

def hours(at: datetime, count: int = HOURS_SHOWN) -> list[datetime]:
    """The `count` UTC hours ending with the one holding `at`, oldest first."""
    top = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=count - 1 - i) for i in range(count)]


def queue_snapshot_reads(pipe: Any, tenant: str, campaign: str, at: datetime) -> int:
    """Queue the reads for one campaign's snapshot; returns how many results they produce."""
    pipe.hgetall(stats_key(tenant, campaign))
    pipe.hgetall(dispositions_key(tenant, campaign))
    pipe.hgetall(denials_key(tenant, campaign))
    for hour in hours(at):
        pipe.hgetall(hour_key(tenant, campaign, hour))
    return 3 + HOURS_SHOWN


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _numbers(raw: dict[Any, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in raw.items():
        try:
            number = float(_text(v))
        except ValueError:
            continue  # a malformed figure is left out rather than shown wrong
        out[_text(k)] = int(number) if number.is_integer() else number
    return out


def build_snapshot(raw: Sequence[Any], at: datetime) -> dict[str, Any]:
    """The snapshot from the results of queue_snapshot_reads (pure)."""
    stats_raw = {_text(k): _text(v) for k, v in raw[0].items()}
    gauges = _numbers({k: v for k, v in stats_raw.items() if k in GAUGES})
    return {
        "gauges": {g: gauges.get(g, 0) for g in GAUGES},
        "updated_at": stats_raw.get("updated_at"),
        "pacing": {"reason": stats_raw.get("pacing_reason", ""), "why": stats_raw.get("pacing_why", ""),
                   "limited_by": stats_raw.get("pacing_limited_by", "")},
        "dispositions": _numbers(raw[1]),
        "denials": _numbers(raw[2]),
        "hourly": [{"hour": _iso(h), **_numbers(r)} for h, r in zip(hours(at), raw[3:], strict=True)],
    }


def snapshot_json(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
