"""Estimators pacing feeds on: pure classes, fed observations, asked for snapshots.

- `AnswerRateEstimator`: live answers / completed attempts over the last N attempts, with a
  prior so a new campaign starts from a sane guess instead of 0/0.
- `DurationHistogram`: an empirical duration distribution (ring time, handle time) with
  exponential forgetting; `snapshot()` returns an immutable `Survival` that `decide()` reads.
  Empirical rather than a fitted lognormal because real talk times have fat, lumpy tails
  (scripted calls, voicemail drops) and the predictive model needs P(free within t | busy e),
  which is exactly what a survival table answers in O(1).
- `RecentOriginates`: originates in the last second (or `cps_window`), for the calls-per-second ceiling.

No clock is read here: observations and `now` are arguments.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["AnswerRateEstimator", "DurationHistogram", "RecentOriginates", "Survival", "cps_window"]


class AnswerRateEstimator:
    """Share of attempts a live person answered, over the last `window` settled attempts.

    Outcomes are counted by the time the call was placed, and only once every call placed
    at that time has surely ended (`settle_seconds`, at least the ring timeout). Counting
    outcomes as they arrive would be biased whenever the dial rate changes: busy signals come
    back in a second, answers in about seven, no-answers only at the timeout, so just after a
    burst of calls the observed rate is far too low and pacing would dial far too much.

    The prior counts as `prior_weight` pseudo-attempts at `prior_rate`; it matters only until
    real attempts outnumber it.
    """

    def __init__(
        self,
        window: int = 400,
        prior_rate: float = 0.3,
        prior_weight: float = 20.0,
        settle_seconds: float = 30.0,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        if not 0.0 <= prior_rate <= 1.0 or prior_weight < 0:
            raise ValueError("prior_rate must be in [0, 1] and prior_weight >= 0")
        self._pending: list[tuple[float, bool]] = []  # heap by placement time
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._answered = 0
        self.prior_rate = prior_rate
        self.prior_weight = prior_weight
        self.settle_seconds = settle_seconds

    def observe(self, placed_at: float, live_answer: bool) -> None:
        """The call placed at `placed_at` ended, answered by a person or not."""
        heapq.heappush(self._pending, (placed_at, bool(live_answer)))

    def _settle(self, now: float) -> None:
        pending, outcomes = self._pending, self._outcomes
        horizon = now - self.settle_seconds
        while pending and pending[0][0] <= horizon:
            live = heapq.heappop(pending)[1]
            if len(outcomes) == outcomes.maxlen and outcomes[0]:
                self._answered -= 1
            outcomes.append(live)
            if live:
                self._answered += 1

    def observations(self, now: float) -> int:
        self._settle(now)
        return len(self._outcomes)

    def export(self) -> dict[str, Any]:
        """JSON-ready state (to hand a campaign over to another process)."""
        return {"pending": [[t, int(live)] for t, live in self._pending], "outcomes": [int(o) for o in self._outcomes]}

    def load(self, data: Mapping[str, Any]) -> None:
        """Replace the state with an `export()`; ValueError if it is malformed."""
        try:
            pending = [(float(t), bool(live)) for t, live in data["pending"]]
            outcomes = [bool(o) for o in data["outcomes"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"answer rate state: malformed ({exc})") from None
        heapq.heapify(pending)
        self._pending = pending
        self._outcomes = deque(outcomes, maxlen=self._outcomes.maxlen)
        self._answered = sum(self._outcomes)

    def rate(self, now: float) -> float:
        """The answer rate of calls placed before now - settle_seconds."""
        self._settle(now)
        denominator = len(self._outcomes) + self.prior_weight
        if not denominator:
            return 0.0
        return (self._answered + self.prior_rate * self.prior_weight) / denominator


class Survival:
    """An immutable survival table: `at(x)` = P(duration >= x), on a grid of `step` seconds.

    Beyond the last grid point the table holds the share of durations longer than the
    histogram's range; such durations are treated as never ending within any horizon
    (conservative for pacing: it will not count on those agents).
    """

    __slots__ = ("mean", "step", "values")

    def __init__(self, survival: tuple[float, ...], step: float, mean: float) -> None:
        if not survival or survival[0] <= 0 or step <= 0:
            raise ValueError("survival table must start positive and step must be positive")
        self.values = survival  # values[k] = P(duration >= k * step); read directly in hot loops
        self.step = step
        self.mean = mean

    def at(self, x: float) -> float:
        if x <= 0:
            return 1.0
        s = self.values
        k = int(x / self.step)
        return s[k] if k < len(s) else s[-1]

    def done_within(self, elapsed: float, horizon: float) -> float:
        """P(duration < elapsed + horizon | duration >= elapsed); 0 past the observed range."""
        alive = self.at(elapsed)
        if alive <= 0.0:
            return 0.0
        return max(0.0, (alive - self.at(elapsed + horizon)) / alive)

    @classmethod
    def lognormal(cls, median: float, sigma: float, step: float = 1.0, max_seconds: float = 3600.0) -> Survival:
        """The survival table of a lognormal (priors, tests)."""
        mu = math.log(median)
        n = int(max_seconds / step) + 1
        values = [1.0]
        for k in range(1, n):
            values.append(0.5 * math.erfc((math.log(k * step) - mu) / (sigma * math.sqrt(2.0))))
        return cls(tuple(values), step, median * math.exp(sigma * sigma / 2))

    @classmethod
    def fixed(cls, seconds: float, step: float = 1.0) -> Survival:
        n = int(seconds / step) + 2
        return cls(tuple(1.0 if k * step <= seconds else 0.0 for k in range(n)), step, seconds)


class DurationHistogram:
    """Empirical distribution of a duration with exponential forgetting.

    Each observation weighs 2^(1/half_life) times the previous one, so an observation
    `half_life` observations old counts half. Prior samples weigh like the first observation.
    Durations are binned by `step` seconds up to `max_seconds`; longer ones land in an
    overflow bin.
    """

    def __init__(
        self,
        step: float = 1.0,
        max_seconds: float = 3600.0,
        half_life: float = 500.0,
        prior: Iterable[float] = (),
    ) -> None:
        if step <= 0 or max_seconds <= step or half_life <= 0:
            raise ValueError("need step > 0, max_seconds > step and half_life > 0")
        self.step = step
        self._n = int(max_seconds / step)
        self._bins = [0.0] * (self._n + 1)  # last bin: overflow
        self._total = 0.0
        self._sum = 0.0
        self._weight = 1.0
        self._growth = 2.0 ** (1.0 / half_life)
        self.observations = 0
        for seconds in prior:
            self._add(seconds)
        self._snapshot: Survival | None = None

    def _add(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        k = min(int(seconds / self.step), self._n)
        w = self._weight
        self._bins[k] += w
        self._total += w
        self._sum += w * seconds
        self._weight = w * self._growth
        if self._weight > 1e12:  # renormalise before floats lose precision
            scale = 1.0 / self._weight
            self._bins = [b * scale for b in self._bins]
            self._total *= scale
            self._sum *= scale
            self._weight = 1.0

    def observe(self, seconds: float) -> None:
        self._add(seconds)
        self.observations += 1
        self._snapshot = None

    @property
    def mean(self) -> float:
        return self._sum / self._total if self._total else 0.0

    def export(self) -> dict[str, Any]:
        """JSON-ready state, weights rescaled so the next observation weighs 1."""
        scale = 1.0 / self._weight
        bins = {str(k): b * scale for k, b in enumerate(self._bins) if b}
        return {"step": self.step, "n": self._n, "bins": bins, "sum": self._sum * scale,
                "growth": self._growth, "observations": self.observations}

    def load(self, data: Mapping[str, Any]) -> None:
        """Replace the state with an `export()` of a histogram of the same shape."""
        try:
            if float(data["step"]) != self.step or int(data["n"]) != self._n:
                raise ValueError("different bins")
            bins = [0.0] * (self._n + 1)
            for k, b in data["bins"].items():
                bins[int(k)] = float(b)
            total, total_sum = sum(bins), float(data["sum"])
            observations = int(data["observations"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(f"duration histogram state: malformed ({exc})") from None
        if not total or any(b < 0 for b in bins):
            raise ValueError("duration histogram state: no weight")
        self._bins, self._total, self._sum, self._weight = bins, total, total_sum, 1.0
        self.observations = observations
        self._snapshot = None

    def snapshot(self, censored: Iterable[float] = ()) -> Survival:
        """The survival table (Kaplan-Meier over the bins).

        censored: durations still running, known only to be at least this long (agents busy
        right now). Without them the table would be biased short whenever long calls are in
        progress, e.g. at the start of a shift, when only the short calls have ended yet.
        Cached until the next observation when nothing is censored.
        """
        running = [max(0.0, c) for c in censored]
        if not running and self._snapshot is not None:
            return self._snapshot
        if not self._total:
            raise ValueError("no observations and no prior: nothing to estimate from")
        n = self._n
        bins = self._bins
        # Censored durations weigh like the newest observation; they are at risk in every bin
        # up to (not including) the bin of their elapsed time.
        censored_from = [0.0] * (n + 2)
        w = self._weight
        for c in running:
            censored_from[min(int(c / self.step), n) + 1] += w
        at_risk = self._total + w * len(running)
        survival = 1.0
        values = [1.0]
        # Most bins are empty: survival only moves at bins where something ended or a running duration
        # is censored, so walk those and copy the survival across the gaps (this runs at every refresh).
        marks = sorted({*itertools.compress(range(n), bins), *(min(int(c / self.step), n) + 1 for c in running)})
        prev = 0
        for k in marks:
            if k >= n:
                break
            if k > prev:
                values.extend([survival] * (k - prev))
            at_risk -= censored_from[k]
            b = bins[k]
            if b:
                if at_risk > 0.0:
                    f = 1.0 - b / at_risk
                    survival = survival * f if f > 0.0 else 0.0
                at_risk -= b
            values.append(survival)
            prev = k + 1
        if n > prev:
            values.extend([survival] * (n - prev))
        mean = sum(values[1:]) * self.step if running else self.mean
        snapshot = Survival(tuple(values), self.step, mean)
        if not running:
            self._snapshot = snapshot
        return snapshot


def cps_window(calls_per_second: float) -> tuple[int, int]:
    """(calls, window in ms) for a calls-per-second ceiling: 10 -> 10 per 1000 ms, 2.5 -> 2 per 800 ms,
    0.5 -> 1 per 2000 ms; (0, 0) for none."""
    if calls_per_second <= 0:
        return 0, 0
    calls = max(1, math.floor(calls_per_second))
    return calls, math.ceil(1000 * calls / calls_per_second)


class RecentOriginates:
    """How many originates went out in the last `window` seconds (for calls-per-second)."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def record(self, now: float, count: int = 1) -> None:
        self._times.extend([now] * count)

    def count(self, now: float) -> int:
        times = self._times
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)
