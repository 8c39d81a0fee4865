"""The short-window guard: an optional ceiling on the abandon rate in every clock window (15 min, 1 h).

The legal windows (30 days US, 24 h UK) absorb a bad quarter-hour; the people called in it do not. With
the guard, a campaign can promise "never above the cap in any quarter-hour / hour" (windows aligned on
the clock: 10:00-10:15, 10:15-10:30, ...).

How: the abandons the window may still take are `cap x expected answers of the window - abandons so far`
(expected answers: the larger of the answers so far and the caller's estimate, e.g. the previous
window's), less one kept back for the calls already in flight. With no room left, the campaign places no
call that could be abandoned (progressive, like `cap-reached`); otherwise predictive's risk budget and
power's extra lines are scaled by the square of the share of that budget still unused. A window's
first answers have no room yet (3% of 20 answers is 0.6 of an abandon), so a guarded campaign starts its
day progressive and a small team (few answers per window) runs well below its full predictive pace:
that is the price of the promise. Pure: counts and times are arguments.
"""

from __future__ import annotations

import math
from dataclasses import replace

from dialer.pacing.model import PacingMode, PacingPolicy

__all__ = ["guard_scale", "guarded_policy", "window_start"]


def window_start(now: float, window: float) -> float:
    """The start of the clock window holding `now` (windows aligned on multiples of `window`)."""
    return math.floor(now / window) * window


def guard_scale(cap: float, abandons: int, answers: int, expected_answers: float) -> float:
    """1 = no limit from the guard, 0 = no call that could be abandoned, in between: the share of the
    normal risk the campaign may take now.

    The share of the window's abandon budget still unused, squared: a campaign slows as soon as the
    window's first abandon lands, not only when the budget is gone, because the calls already in flight
    were placed at the old pace. (Measured on bench/scenarios: linear scaling left worst windows of
    4.5-4.9% with 20 agents, squared 2.2-4.2%, cubed no better; BENCHMARKS.md.)"""
    expected = max(float(answers), expected_answers)
    # One abandon of the budget is kept back for the calls already in flight.
    room = cap * expected - abandons - 1.0
    if room <= 0.0:
        return 0.0
    return min(1.0, room / (cap * expected)) ** 2


def guarded_policy(policy: PacingPolicy, scale: float) -> PacingPolicy:
    """The policy with its overdial scaled by the guard (progressive and agentless never overdial)."""
    if scale >= 1.0:
        return policy
    scale = max(0.0, scale)
    if policy.mode is PacingMode.PREDICTIVE:
        return replace(policy, predictive_target=policy.predictive_target * scale, boost=False)
    if policy.mode is PacingMode.POWER:
        return replace(policy, power_ratio=1.0 + (policy.power_ratio - 1.0) * scale)
    return policy
