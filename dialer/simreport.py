"""The report of a simulated day: totals, per campaign, per phase, per 15-minute window, a sparkline chart.

Pure formatting of a `SimResult` (text lines or a JSON-ready dict).
"""

from __future__ import annotations

from typing import Any

from dialer.simulate import Bucket, SimResult

__all__ = ["report_dict", "report_lines", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], top: float) -> str:
    """One character per value, from ▁ (0) to █ (top or more); a blank where there is no value (NaN)."""
    out = []
    for v in values:
        if v != v:  # NaN: no answers in that window
            out.append(" ")
            continue
        k = 0 if top <= 0 else round(min(1.0, max(0.0, v / top)) * (len(_BARS) - 1))
        out.append(_BARS[k])
    return "".join(out)


def _clock(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60:d}:{minutes % 60:02d}"


def _row(b: Bucket, label: str) -> str:
    answers = sum(b.answers)
    rate = f"{b.abandon_rate:6.2%}" if answers else "     -"
    return (f"  {label:<22} {sum(b.attempts):>8} {answers:>7} {sum(b.abandons):>6} {rate:>7} "
            f"{b.occupancy:>7.1%} {b.idle_seconds / 3600:>8.1f}")


_HEADER = f"  {'':<22} {'attempts':>8} {'answers':>7} {'aband.':>6} {'aband.%':>7} {'occup.':>7} {'idle h':>8}"


def report_lines(result: SimResult, *, windows: bool = True) -> list[str]:
    s = result.scenario
    names = [c.name for c in result.campaigns]
    lines = [
        f"  calls placed              {result.calls_placed}",
        f"  live answers              {result.live_answers}",
        f"  connected to an agent     {result.connected}",
        f"  abandoned                 {result.abandons}",
        f"  abandon rate              {result.abandon_rate:.2%}  (cap "
        + ", ".join(f"{c.policy.abandon_cap:.0%}" for c in s.campaigns) + " of live answers)",
        f"  occupancy                 {result.occupancy:.1%}",
        f"  answered per agent-hour   {result.answered_per_agent_hour:.1f}",
        f"  attempts per agent-hour   {result.attempts_per_agent_hour:.1f}",
        f"  customer wait mean        {result.wait_mean:.2f} s",
        f"  customer wait p95         {result.wait_p95:.2f} s",
    ]
    reasons = ", ".join(f"{k} {v}" for k, v in result.reasons.most_common())
    lines.append(f"  pacing decisions          {result.decisions} ({reasons})")
    if result.limited:
        lines.append(f"  cut by ceilings           {dict(result.limited)}")
    for c, spec in zip(result.campaigns, s.campaigns, strict=True):
        guard = f", guard {spec.guard / 60:g} min ({c.guarded} decisions cut)" if spec.guard else ""
        if len(result.campaigns) > 1 or spec.guard:
            lines.append(f"  campaign {c.name} ({c.mode.value}, weight {spec.weight:g}{guard}): "
                         f"{c.calls_placed} calls, {c.live_answers} answers, {c.abandons} abandoned "
                         f"({c.abandon_rate:.2%}), agent time {c.busy_seconds / 3600:.1f} h")
    worst = result.worst_window()
    if worst is not None:
        per = "; ".join(f"{n} {w.abandons[i]}/{w.answers[i]}" for i, n in enumerate(names) for w in [worst]
                        if len(names) > 1)
        lines.append(f"  worst 15-min window       {_clock(worst.start)}-{_clock(worst.end)}: "
                     f"{worst.abandon_rate:.2%} ({sum(worst.abandons)} of {sum(worst.answers)} answers"
                     + (f"; {per}" if per else "") + ")")
    lines.append("")
    lines.append("Per phase:")
    lines.append(_HEADER)
    for b in result.phases():
        lines.append(_row(b, f"{b.name[:12]} {_clock(b.start)}-{_clock(b.end)}"))
    win = result.windows()
    lines.append("")
    rates = [b.abandon_rate if sum(b.answers) else float("nan") for b in win]
    lines.append("Per 15-minute window (one character each, left to right from the start of the day):")
    lines.append(f"  abandon % (█ = 6%)  {sparkline(rates, 0.06)}")
    lines.append(f"  occupancy (█ = 100%) {sparkline([b.occupancy for b in win], 1.0)}")
    if windows:
        lines.append(_HEADER)
        for b in win:
            lines.append(_row(b, f"{_clock(b.start)}-{_clock(b.end)}"))
    return lines


def report_dict(result: SimResult) -> dict[str, Any]:
    names = [c.name for c in result.campaigns]
    worst = result.worst_window()
    return {
        **result.summary(),
        "reasons": dict(result.reasons),
        "campaigns": [
            {"name": c.name, "mode": c.mode.value, "calls_placed": c.calls_placed, "live_answers": c.live_answers,
             "connected": c.connected, "abandons": c.abandons, "abandon_rate": round(c.abandon_rate, 5),
             "busy_seconds": round(c.busy_seconds, 1), "guarded_decisions": c.guarded,
             "reasons": dict(c.reasons)}
            for c in result.campaigns
        ],
        "phases": [b.as_dict(names) for b in result.phases()],
        "windows": [b.as_dict(names) for b in result.windows()],
        "worst_window": worst.as_dict(names) if worst is not None else None,
        "notes": list(result.scenario.notes),
    }
