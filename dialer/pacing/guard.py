"""A cap is a cap: when a campaign may only place calls that have an agent waiting for them.

Two rules, both pure (counts in, verdict out), used by the runtime and by the simulator alike:

* **legal cap**: when the campaign's abandon rate over its legal window (abandons / live answers, the raw figure
  the regulator counts) is over its cap, it stops placing calls that could be abandoned: only calls for which an
  agent is reserved (a free agent that no call in flight, of any campaign, may take) until the rate is back under.
  Backing off to "progressive" is not enough when the rate is already over: the back-off in decide() uses a
  smoothed rate, and its progressive fallback counts only the campaign's own calls.
* **room for one more**: a campaign may place a call that could be abandoned only while its legal window can
  take one more abandon and stay at or under the cap (abandons + 1 <= cap x live answers). A window's first 33
  live answers at a 3% cap leave no room (one abandon in 25 answers is 4%), so every campaign starts its window
  placing only calls with an agent reserved, and after an abandon it waits for the answers that make room again.
  Without it, a small or young campaign could go over its cap on its first abandon, which no later pacing undoes
  if the campaign ends there.
* **joining a legal campaign** (legal.py): a campaign that shares its legal window with others places only calls
  with an agent reserved for a few seconds after it joined, until every process splits the room with it.
* **short-window guard** (optional, per campaign; off by default): a ceiling on the abandon rate of every clock
  window (15 minutes, an hour: 10:00-10:15, 10:15-10:30 ...) so a campaign can promise "never above 3% in any
  quarter-hour / hour", not just over the legal 24 h or 30 days. The arithmetic is the simulator's
  (`window_guard.guard_scale`, measured in BENCHMARKS.md): with no room left in the window's abandon budget the
  campaign places only calls with an agent reserved; otherwise its overdial is scaled down by the share of the
  budget still unused (`window_guard.guarded_policy`), so the runtime runs what the benchmark measured.

While a rule holds, the campaign is paced as progressive with every call in flight towards its agents counted as
answered (`reserved_only`); the verdict's reason and text are what the dashboard shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from dialer.pacing.decide import decide
from dialer.pacing.legal import LEGAL_JOIN
from dialer.pacing.model import Decision, PacingMode, PacingPolicy, PacingState, PolicyError
from dialer.pacing.window_guard import guard_scale, guarded_policy, window_start

__all__ = ["AbandonGuard", "GuardWindow", "Verdict", "abandon_verdict", "decide_within", "guard_window"]

CAP_REACHED = "cap-reached"
CAP_ROOM = "cap-room"
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
class GuardWindow:
    """The guard's clock window holding `now`: its start, (live answers, abandons) so far, and the answers the
    previous window had (the estimate of this one's, until it has more)."""

    start: float
    answers: int = 0
    abandons: int = 0
    previous_answers: int = 0


def guard_window(now: float, guard: AbandonGuard) -> tuple[float, float, float]:
    """(previous window start, this window's start, now): what to count for the guard at `now`."""
    start = window_start(now, guard.seconds)
    return start - guard.seconds, start, now


@dataclass(frozen=True)
class Verdict:
    """reserved_only: place only calls with an agent reserved. reason: cap-reached | cap-room | guard-window | ''.
    scale: the share of its normal overdial the campaign may use (the guard's; 1: no limit)."""

    reserved_only: bool
    reason: str = ""
    text: str = ""
    scale: float = 1.0


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def abandon_verdict(cap: float, legal: tuple[int, int], *, window_label: str = "legal window",
                    guard: AbandonGuard | None = None, window: GuardWindow | None = None,
                    joining: str = "") -> Verdict:
    """`legal`: (live answers, abandons) over the legal window (a legal campaign's member: its share,
    legal.member_share); `window`: the guard's clock window; `joining`: the legal campaign a member joined less than
    legal.SETTLE_SECONDS ago (it waits until every process counts it)."""
    answers, abandons = legal
    if joining:
        return Verdict(True, LEGAL_JOIN,
                       f"joined the legal campaign {joining} moments ago: only calls with an agent reserved are "
                       "placed until every dialer process counts it among the campaigns sharing its abandon window")
    if answers > 0 and abandons / answers > cap:
        return Verdict(True, CAP_REACHED,
                       f"abandon rate {_pct(abandons / answers)} ({abandons} of {answers} answered) over the "
                       f"{window_label} is over the {_pct(cap)} cap: only calls with an agent reserved are placed "
                       "until it is back under")
    if abandons + 1 > cap * answers:
        return Verdict(True, CAP_ROOM,
                       f"{abandons} abandoned of {answers} answered over the {window_label} leaves no room for one "
                       f"more under the {_pct(cap)} cap: only calls with an agent reserved are placed until enough "
                       "answers make room")
    if guard is not None and guard.on and window is not None:
        ceiling = cap if guard.ceiling is None else guard.ceiling
        scale = guard_scale(ceiling, window.abandons, window.answers, float(window.previous_answers))
        if scale <= 0.0:
            rate = window.abandons / window.answers if window.answers else 0.0
            return Verdict(True, GUARD_WINDOW,
                           f"abandon rate {_pct(rate)} ({window.abandons} of {window.answers} answered) in this "
                           f"{guard.minutes}-minute window leaves no room under the {_pct(ceiling)} guard: only "
                           "calls with an agent reserved are placed until the window has room (or the next one "
                           "starts)", 0.0)
        return Verdict(False, scale=scale)
    return Verdict(False)


def decide_within(policy: PacingPolicy, state: PacingState, verdict: Verdict) -> Decision:
    """decide(), but under a reserved-only verdict as progressive (the caller counts every call in flight towards
    the campaign's agents in `state.ringing`, so each new call has a free agent nobody else's call may take), and
    with the guard's scale on the overdial."""
    if policy.mode in (PacingMode.AGENTLESS, PacingMode.PROGRESSIVE):  # nothing to hold back: unchanged
        return decide(policy, state)
    if not verdict.reserved_only:
        return decide(guarded_policy(policy, verdict.scale), state)
    decision = decide(dataclasses.replace(policy, mode=PacingMode.PROGRESSIVE), state)
    reason = decision.reason if decision.reason == "no-agents" else verdict.reason
    return dataclasses.replace(decision, mode=policy.mode, reason=reason)
