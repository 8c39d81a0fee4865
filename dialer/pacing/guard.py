"""A cap is a cap: when a campaign may only place calls that have an agent waiting for them.

Two rules, both pure (counts in, verdict out), used by the runtime and by the simulator alike:

* **legal cap**: when the campaign's abandon rate over its legal window (abandons / live answers, the raw figure
  the regulator counts) is over its cap, it stops placing calls that could be abandoned: only calls for which an
  agent is reserved (a free agent that no call in flight, of any campaign, may take) until the rate is back under.
  Backing off to "progressive" is not enough when the rate is already over: the back-off in decide() uses a
  smoothed rate, and its progressive fallback counts only the campaign's own calls.
* **short-window guard** (optional, per campaign; off by default): a ceiling over a short rolling window (for
  example 3% over any 60 minutes, or 15) so a campaign can promise "never above 3% in any hour", not just over the
  legal 24 h or 30 days. The campaign keeps placing abandonable calls only while one more abandon would keep the
  window at or under its ceiling; the runtime also feeds the window's counts to the back-off (the worst of the
  legal and short windows drives it), so predictive slows down before the stop.

While a rule holds, the campaign is paced as progressive with every call in flight towards its agents counted as
answered (`reserved_only`); the verdict's reason and text are what the dashboard shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from dialer.pacing.decide import decide
from dialer.pacing.model import Decision, PacingMode, PacingPolicy, PacingState, PolicyError

__all__ = ["AbandonGuard", "Verdict", "abandon_verdict", "decide_within"]

CAP_REACHED = "cap-reached"
GUARD_WINDOW = "guard-window"


@dataclass(frozen=True)
class AbandonGuard:
    """The short-window guard of a campaign. minutes 0: off. ceiling None: the campaign's abandon_cap."""

    minutes: int = 0
    ceiling: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.minutes <= 1440:
            raise PolicyError(f"abandon_guard_minutes: must be between 0 (off) and 1440, got {self.minutes}")
        if self.ceiling is not None and not 0.0 <= self.ceiling <= 1.0:
            raise PolicyError(f"abandon_guard_cap: must be between 0 and 1, got {self.ceiling}")

    @property
    def on(self) -> bool:
        return self.minutes > 0

    @property
    def seconds(self) -> int:
        return self.minutes * 60

    @classmethod
    def from_campaign(cls, config: Mapping[str, object]) -> AbandonGuard:
        """`abandon_guard_minutes` (0 or absent: off) and `abandon_guard_cap` (absent: the abandon_cap)."""
        minutes, ceiling = config.get("abandon_guard_minutes", 0), config.get("abandon_guard_cap")
        if isinstance(minutes, bool) or not isinstance(minutes, int):
            raise PolicyError(f"abandon_guard_minutes: expected a whole number of minutes, got {minutes!r}")
        if ceiling is not None and (isinstance(ceiling, bool) or not isinstance(ceiling, (int, float))):
            raise PolicyError(f"abandon_guard_cap: expected a number, got {ceiling!r}")
        return cls(minutes, None if ceiling is None else float(ceiling))


@dataclass(frozen=True)
class Verdict:
    """reserved_only: place only calls with an agent reserved. reason: cap-reached | guard-window | ''."""

    reserved_only: bool
    reason: str = ""
    text: str = ""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def abandon_verdict(cap: float, legal: tuple[int, int], *, window_label: str = "legal window",
                    guard: AbandonGuard | None = None, recent: tuple[int, int] | None = None) -> Verdict:
    """`legal` and `recent`: (live answers, abandons) over the legal window and the guard's window."""
    answers, abandons = legal
    if answers > 0 and abandons / answers > cap:
        return Verdict(True, CAP_REACHED,
                       f"abandon rate {_pct(abandons / answers)} ({abandons} of {answers} answered) over the "
                       f"{window_label} is over the {_pct(cap)} cap: only calls with an agent reserved are placed "
                       "until it is back under")
    if guard is not None and guard.on and recent is not None:
        ceiling = cap if guard.ceiling is None else guard.ceiling
        answers, abandons = recent
        # one more answered call abandoned must keep the window at or under the ceiling
        if abandons + 1 > ceiling * (answers + 1) + 1e-9:
            rate = abandons / answers if answers else 0.0
            return Verdict(True, GUARD_WINDOW,
                           f"abandon rate {_pct(rate)} ({abandons} of {answers} answered) over the last "
                           f"{guard.minutes} minutes leaves no room under the {_pct(ceiling)} guard: only calls with "
                           "an agent reserved are placed until the window has room for one more abandon")
    return Verdict(False)


def decide_within(policy: PacingPolicy, state: PacingState, verdict: Verdict) -> Decision:
    """decide(), but under a reserved-only verdict as progressive (the caller counts every call in flight towards
    the campaign's agents in `state.ringing`, so each new call has a free agent nobody else's call may take)."""
    if not verdict.reserved_only or policy.mode is PacingMode.AGENTLESS:
        return decide(policy, state)
    decision = decide(dataclasses.replace(policy, mode=PacingMode.PROGRESSIVE), state)
    reason = decision.reason if decision.reason == "no-agents" else verdict.reason
    return dataclasses.replace(decision, mode=policy.mode, reason=reason)
