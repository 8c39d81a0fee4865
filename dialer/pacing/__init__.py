"""Pacing: how many calls to place now. Pure (no I/O, no clock); see docs/pacing.md.

The runtime, each tick: build a `PacingState` from its observations and estimator snapshots,
call `decide(policy, state)`, place `Decision.calls` calls (each through the gate).
"""

from dialer.pacing.abandons import (
    ABANDON_WINDOWS,
    AbandonCounter,
    AbandonStats,
    RedisAbandonCounter,
    window_for,
)
from dialer.pacing.decide import control_abandon_rate, decide, expected_overflow
from dialer.pacing.estimators import (
    AnswerRateEstimator,
    DurationHistogram,
    RecentOriginates,
    Survival,
    cps_window,
)
from dialer.pacing.model import (
    CONNECT_GRACE_SECONDS,
    DEFAULT_ABANDON_CAP,
    Decision,
    PacingMode,
    PacingPolicy,
    PacingState,
    PolicyError,
)
from dialer.pacing.tracker import CampaignEstimators

__all__ = [
    "ABANDON_WINDOWS",
    "CONNECT_GRACE_SECONDS",
    "DEFAULT_ABANDON_CAP",
    "AbandonCounter",
    "AbandonStats",
    "AnswerRateEstimator",
    "CampaignEstimators",
    "Decision",
    "DurationHistogram",
    "PacingMode",
    "PacingPolicy",
    "PacingState",
    "PolicyError",
    "RecentOriginates",
    "RedisAbandonCounter",
    "Survival",
    "control_abandon_rate",
    "cps_window",
    "decide",
    "expected_overflow",
    "window_for",
]
