"""`dialer simulate --from-history`: a scenario built from what a campaign really met.

What it reads (all written by the runtime today, nothing new is recorded for it):

* `t:{T}:campaign:{C}:hour:{YYYYMMDDHH}` (dialer/livestats.py, kept 8 days): per UTC hour, `attempts`
  and one count per disposition (`answered`, `abandoned`, `opted_out` are live answers; `machine`; `busy`;
  `congestion` and `failed`; `no_answer`; `unknown` is left out of the shares).
* `t:{T}:campaign:{C}:runtime:estimates` (the pacer's saved `CampaignEstimators`, kept 24 h): the ring-time
  histogram of live answers and the handle-time histogram (talk + wrap-up, connect to agent ready).
* `t:{T}:campaign:{C}:stats` (live gauges): `agents_free + agents_busy` as the agent count when `--agents`
  is not given; the campaign's own record for its pacing mode, ratio and abandon cap.

The day: one phase per UTC hour of the day that had attempts, from the first to the last such hour; each
hour's outcome shares are that hour-of-day's counts over the `days` read. Short history is blended, not
trusted: an hour's shares are shrunk towards the campaign's overall shares with 30 pseudo-attempts, and
the overall shares towards the defaults table with 50, so an hour with 3 attempts does not get an answer
rate of 0% or 67%; the report says how many attempts each part rests on. Ring and handle times come from
the saved estimates when they hold at least 50 observations, else from the defaults table (said in a
note). Machine ring times cannot be told apart from busy and no-answer ones in the saved histogram and
always come from the defaults table. No recorded attempt at all is an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from dialer.campaigns import CampaignStore
from dialer.livestats import hour_key, stats_key
from dialer.pacing import PacingPolicy, PolicyError
from dialer.runtime.engine import estimates_key
from dialer.scenario import CampaignSpec, Curve, Empirical, Phase, Scenario, defaults, parse_dist

__all__ = ["HOUR_PRIOR", "MIN_OBSERVATIONS", "OVERALL_PRIOR", "HistoryError", "history_counts",
           "scenario_from_history"]

LIVE = ("answered", "abandoned", "opted_out")
OUTCOMES = {"live": LIVE, "machine": ("machine",), "busy": ("busy",), "failed": ("congestion", "failed"),
            "no_answer": ("no_answer",)}
OVERALL_PRIOR = 50.0  # pseudo-attempts at the defaults table's shares
HOUR_PRIOR = 30.0  # pseudo-attempts at the campaign's overall shares
MIN_OBSERVATIONS = 50  # ring / handle histograms below this: the defaults table


class HistoryError(ValueError):
    """History cannot make a scenario (the message says why and what to do)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def history_counts(client: Any, tenant: str, campaign: str, now: datetime, days: int) -> dict[int, dict[str, int]]:
    """Outcome counts per UTC hour of day (0-23) over the last `days` days."""
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [top - timedelta(hours=h) for h in range(days * 24)]
    pipe = client.pipeline(transaction=False)
    for h in hours:
        pipe.hgetall(hour_key(tenant, campaign, h))
    by_hour: dict[int, dict[str, int]] = {}
    for h, raw in zip(hours, pipe.execute(), strict=True):
        if not raw:
            continue
        counts = by_hour.setdefault(h.hour, {k: 0 for k in OUTCOMES})
        fields = {_text(k): _text(v) for k, v in raw.items()}
        for outcome, names in OUTCOMES.items():
            for name in names:
                try:
                    counts[outcome] += int(float(fields.get(name, 0)))
                except ValueError:
                    continue  # a malformed counter is left out, not guessed
    return {h: c for h, c in by_hour.items() if sum(c.values())}


def _shares(counts: Mapping[str, float], prior: Mapping[str, float], weight: float) -> dict[str, float]:
    n = sum(counts.values())
    return {k: (counts.get(k, 0) + weight * prior[k]) / (n + weight) for k in OUTCOMES}


def _histogram(data: Any, what: str) -> Empirical | None:
    """An empirical distribution from a saved `DurationHistogram.export()`; None when unusable or thin."""
    try:
        step = float(data["step"])
        observations = int(data["observations"])
        bins = {int(k): float(v) for k, v in data["bins"].items()}
        n = int(data["n"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    bins.pop(n, None)  # the overflow bin has no known value
    if observations < MIN_OBSERVATIONS or not bins or any(w < 0 for w in bins.values()):
        return None
    keys = sorted(bins)
    return Empirical(tuple(k * step for k in keys), tuple(bins[k] for k in keys), step)


def scenario_from_history(
    client: Any, tenant: str, campaign: str, *, days: int = 7, agents: int | None = None, now: datetime | None = None,
) -> Scenario:
    """The scenario of a campaign's recorded day (see the module docstring)."""
    now = now or datetime.now(UTC)
    by_hour = history_counts(client, tenant, campaign, now, days)
    if not by_hour:
        raise HistoryError(f"campaign {tenant}/{campaign}: no recorded call outcome in the last {days} day(s) "
                           "(the hourly counters are kept 8 days); simulate with --scenario or flags instead")
    table = defaults()
    prior = {"live": table["answer_rate"], "busy": table["busy"], "failed": table["failed"],
             "no_answer": table["no_answer"]}
    prior["machine"] = max(0.0, 1.0 - sum(prior.values()))
    total = {k: sum(c[k] for c in by_hour.values()) for k in OUTCOMES}
    n_total = sum(total.values())
    overall = _shares(total, prior, OVERALL_PRIOR)
    notes = [f"history: {n_total} settled attempts over {len(by_hour)} hour(s) of day in the last {days} day(s)"]
    if n_total < 10 * OVERALL_PRIOR:
        notes.append(f"short history: shares are blended with the defaults table ({OVERALL_PRIOR:g} pseudo-attempts "
                     f"against {n_total} recorded)")

    first, last = min(by_hour), max(by_hour)
    phases: list[Phase] = []
    for hour in range(first, last + 1):
        counts = by_hour.get(hour, {k: 0 for k in OUTCOMES})
        s = _shares(counts, overall, HOUR_PRIOR)
        values: dict[str, Any] = {"answer_rate": Curve.constant(s["live"]),
                                  "machine_rate": Curve.constant(s["machine"]),
                                  "busy": Curve.constant(s["busy"]), "failed": Curve.constant(s["failed"])}
        phases.append(Phase(f"{hour:02d}:00 UTC", (hour - first) * 3600.0, values))

    # Durations: the pacer's saved estimates, else the defaults table.
    raw = client.get(estimates_key(tenant, campaign))
    saved: dict[str, Any] = {}
    if raw:
        try:
            saved = json.loads(raw)
        except ValueError:
            notes.append("saved pacing estimates unreadable: ring and handle times from the defaults table")
    ring = _histogram(saved.get("ring_answered"), "ring") if saved else None
    handle = _histogram(saved.get("handle"), "handle") if saved else None
    dists: dict[str, Any] = {k: parse_dist(table[k], f"defaults.{k}") for k in
                             ("ring_live", "ring_machine", "busy_ring", "talk", "wrapup")}
    if ring is not None:
        dists["ring_live"] = ring
    else:
        notes.append("ring times of live answers: fewer than 50 observations saved, from the defaults table")
    if handle is not None:
        dists["talk"] = handle  # recorded as one handle time: talk and wrap-up together
        dists["wrapup"] = parse_dist(0.0, "wrapup")
    else:
        notes.append("talk and wrap-up times: fewer than 50 observations saved, from the defaults table")

    if agents is None:
        gauges = {_text(k): _text(v) for k, v in (client.hgetall(stats_key(tenant, campaign)) or {}).items()}
        try:
            agents = int(float(gauges.get("agents_free", 0))) + int(float(gauges.get("agents_busy", 0)))
        except ValueError:
            agents = 0
        if agents <= 0:
            raise HistoryError(f"campaign {tenant}/{campaign}: the agent count is not recorded; give --agents N")
        notes.append(f"agents: {agents}, from the campaign's live gauges (give --agents to change)")
    phases[0] = Phase(phases[0].name, 0.0, {**phases[0].values, **dists, "agents": Curve.constant(float(agents))})

    stored = CampaignStore(client).get(tenant, campaign)
    policy = PacingPolicy()
    jurisdiction = "US"
    if stored is not None:
        try:
            policy = PacingPolicy.from_campaign(stored.config)
        except PolicyError as exc:
            notes.append(f"campaign pacing not usable ({exc}); predictive assumed")
        jurisdiction = str(stored.config.get("jurisdiction") or stored.config.get("country") or "US")
    return Scenario(
        duration=(last - first + 1) * 3600.0,
        phases=tuple(phases),
        campaigns=(CampaignSpec(campaign, policy),),
        jurisdiction=jurisdiction,
        ring_timeout=float(table["ring_timeout"]),
        amd_seconds=float(table["amd_seconds"]),
        machine_is_remainder=False,
        notes=tuple(notes),
    )
