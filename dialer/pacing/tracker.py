"""One campaign's estimators, fed by call events, turned into a `PacingState` on demand.

The runtime (and the simulator) keep one `CampaignEstimators` per campaign per process and
call the `on_*` methods as events arrive; each tick they call `state(...)` with what only
they know (agents, calls in flight, abandon counts, trunk usage) and pass the result to
`decide()`. Pure: every method takes the time it needs as an argument.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dialer.pacing.estimators import AnswerRateEstimator, DurationHistogram, RecentOriginates, Survival
from dialer.pacing.model import PacingState

__all__ = ["CampaignEstimators", "lognormal_quantiles"]


def lognormal_quantiles(mean: float, sigma: float, points: int = 20) -> list[float]:
    """`points` evenly spaced quantiles of a lognormal with this mean (prior samples)."""
    from statistics import NormalDist

    mu = math.log(mean) - sigma * sigma / 2
    unit = NormalDist()
    return [math.exp(mu + sigma * unit.inv_cdf((i + 0.5) / points)) for i in range(points)]


class CampaignEstimators:
    """Answer rate, ring times and handle time of one campaign, with sane priors.

    refresh_seconds: survival snapshots are rebuilt at most this often (rebuilding is
    O(histogram size); the distributions move slowly).
    """

    def __init__(
        self,
        ring_timeout: float = 25.0,
        prior_answer_rate: float = 0.5,
        prior_ring_mean: float = 8.0,
        prior_handle_mean: float = 120.0,
        refresh_seconds: float = 30.0,
        answer_window: int = 400,
    ) -> None:
        self.answer_rate = AnswerRateEstimator(
            window=answer_window, prior_rate=prior_answer_rate, settle_seconds=ring_timeout + 5.0
        )
        self.ring_answered = DurationHistogram(
            step=0.5, max_seconds=120.0, half_life=300.0, prior=lognormal_quantiles(prior_ring_mean, 0.5)
        )
        self.ring_other = DurationHistogram(
            step=0.5, max_seconds=180.0, half_life=500.0, prior=[2.0] * 10 + [ring_timeout] * 10
        )
        self.handle = DurationHistogram(
            step=1.0, max_seconds=3600.0, half_life=500.0, prior=lognormal_quantiles(prior_handle_mean, 0.8)
        )
        self.originates = RecentOriginates()
        self.refresh_seconds = refresh_seconds
        self._snapshots: tuple[Survival, Survival, Survival] | None = None
        self._refreshed_at = -math.inf

    # -- events ---------------------------------------------------------------------------
    def on_originate(self, now: float, count: int = 1) -> None:
        self.originates.record(now, count)

    def on_live_answer(self, now: float, ring_seconds: float) -> None:
        """A person answered at `now` after ring_seconds (whether or not an agent was found)."""
        self.answer_rate.observe(now - ring_seconds, True)
        self.ring_answered.observe(ring_seconds)

    def on_no_live_answer(self, now: float, seconds_in_flight: float) -> None:
        """The attempt ended at `now` without a live answer (busy, no answer, machine, failure)."""
        self.answer_rate.observe(now - seconds_in_flight, False)
        self.ring_other.observe(seconds_in_flight)

    def on_agent_free(self, handle_seconds: float) -> None:
        """An agent finished a call (connect to ready again, wrap-up included)."""
        self.handle.observe(handle_seconds)

    # -- hand-over ------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """JSON-ready estimates, for the process that takes this campaign over (lease change,
        crash): without them it starts again from the priors."""
        return {
            "version": 1,
            "answer_rate": self.answer_rate.export(),
            "ring_answered": self.ring_answered.export(),
            "ring_other": self.ring_other.export(),
            "handle": self.handle.export(),
        }

    def load(self, data: Mapping[str, Any]) -> None:
        """Adopt an `export()`. All or nothing: on ValueError nothing has changed (keep the priors)."""
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise ValueError("estimator state: unknown version")
        fresh = CampaignEstimators.__new__(CampaignEstimators)
        fresh.__dict__.update(copy.deepcopy(self.__dict__))
        fresh.answer_rate.load(data["answer_rate"])
        fresh.ring_answered.load(data["ring_answered"])
        fresh.ring_other.load(data["ring_other"])
        fresh.handle.load(data["handle"])
        self.__dict__.update(fresh.__dict__)
        self._snapshots = None

    # -- observation ----------------------------------------------------------------------
    def snapshots(self, now: float, busy_elapsed: Sequence[float] = ()) -> tuple[Survival, Survival, Survival]:
        """Survival tables of ring times and handle time; busy agents' elapsed times are
        censored handle times (they have lasted at least that long)."""
        if self._snapshots is None or now - self._refreshed_at >= self.refresh_seconds:
            self._snapshots = (
                self.ring_answered.snapshot(),
                self.ring_other.snapshot(),
                self.handle.snapshot(censored=busy_elapsed),
            )
            self._refreshed_at = now
        return self._snapshots

    def state(
        self,
        now: float,
        free_agents: int,
        busy_elapsed: Iterable[float] = (),
        ringing: Iterable[float] = (),
        abandons: int = 0,
        live_answers: int = 0,
        agents_freeing: Iterable[float] = (),
        trunk_channel_limit: int | None = None,
        trunk_channels_in_use: int = 0,
        calls_per_second: float | None = None,
        ai_sessions_available: int = 0,
    ) -> PacingState:
        busy = tuple(busy_elapsed)
        ring, other, handle = self.snapshots(now, busy)
        return PacingState(
            now=now,
            free_agents=free_agents,
            busy_elapsed=busy,
            agents_freeing=tuple(agents_freeing),
            ringing=tuple(ringing),
            answer_rate=self.answer_rate.rate(now),
            ring_answered=ring,
            ring_other=other,
            handle=handle,
            abandons=abandons,
            live_answers=live_answers,
            trunk_channel_limit=trunk_channel_limit,
            trunk_channels_in_use=trunk_channels_in_use,
            calls_per_second=calls_per_second,
            originates_last_second=self.originates.count(now),
            ai_sessions_available=ai_sessions_available,
        )
