"""What pacing decides from: the campaign's policy, one observation, and the decision.

All plain frozen data. Times are seconds; nothing here reads a clock. The runtime builds a
`PacingState` each tick from what it knows (agents, calls in flight, estimator snapshots,
abandon counters, trunk usage) and calls `dialer.pacing.decide(policy, state)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from dialer.pacing.estimators import Survival

__all__ = [
    "CONNECT_GRACE_SECONDS",
    "DEFAULT_ABANDON_CAP",
    "Decision",
    "PacingMode",
    "PacingPolicy",
    "PacingState",
    "PolicyError",
]

# Regulators count an answered call as abandoned when no agent is connected within 2 s of the
# end of the greeting (US TSR 16 CFR 310.4(b)(4)(i); Ofcom's persistent-misuse statement).
CONNECT_GRACE_SECONDS = 2.0
# US TSR and Ofcom both cap abandoned calls at 3% of live answers.
DEFAULT_ABANDON_CAP = 0.03


class PolicyError(ValueError):
    """A pacing policy is invalid (the message names the field)."""


class PacingMode(StrEnum):
    PROGRESSIVE = "progressive"  # one call per free agent
    POWER = "power"  # a fixed number of lines per free agent
    PREDICTIVE = "predictive"  # model-driven, held under the abandon cap
    AGENTLESS = "agentless"  # AI voice agents: bounded by free AI sessions


@dataclass(frozen=True)
class PacingPolicy:
    """A campaign's pacing settings (what a supervisor or a lawyer may change).

    abandon_cap: the legal ceiling on abandons / live answers over the jurisdiction's window.
    power_ratio: lines per free agent in power mode.
    predictive_target: the share of expected answers the predictive model may expect to
      overflow (a per-decision risk budget; the measured rate is what the cap applies to).
    backoff_start: predictive starts backing off when the measured rate reaches this share
      of the cap, and is fully progressive at the cap.
    max_lines_per_agent: a sanity ceiling on calls in flight per staffed agent in predictive
      mode (protects against a wrong answer-rate estimate).
    enforce_cap: power mode also falls back to progressive at the cap (True by default; the
      benchmark's hindsight search of fixed ratios turns it off).
    boost: predictive's budget may rise above predictive_target while the legal window is well
      under its cap (decide.BOOST); the short-window guard turns it off while it scales the
      overdial down, or the legal window's low rate would undo the guard (not a campaign setting).
    """

    mode: PacingMode = PacingMode.PREDICTIVE
    abandon_cap: float = DEFAULT_ABANDON_CAP
    power_ratio: float = 2.0
    predictive_target: float = 0.1
    backoff_start: float = 0.6
    max_lines_per_agent: float = 12.0
    enforce_cap: bool = True
    boost: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.mode, PacingMode):
            try:
                object.__setattr__(self, "mode", PacingMode(self.mode))
            except ValueError:
                modes = ", ".join(m.value for m in PacingMode)
                raise PolicyError(f"pacing.mode: unknown mode {self.mode!r} ({modes})") from None
        if not 0.0 <= self.abandon_cap <= 1.0:
            raise PolicyError(f"pacing.abandon_cap: must be between 0 and 1, got {self.abandon_cap}")
        if not 1.0 <= self.power_ratio <= 50.0:
            raise PolicyError(f"pacing.power_ratio: must be between 1 and 50, got {self.power_ratio}")
        if not 0.0 <= self.predictive_target <= 0.5:
            raise PolicyError(f"pacing.predictive_target: must be between 0 and 0.5, got {self.predictive_target}")
        if not 0.0 <= self.backoff_start < 1.0:
            raise PolicyError(f"pacing.backoff_start: must be in [0, 1), got {self.backoff_start}")
        if self.max_lines_per_agent < 1.0:
            raise PolicyError(f"pacing.max_lines_per_agent: must be >= 1, got {self.max_lines_per_agent}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> PacingPolicy:
        """From a campaign's settings (JSON/TOML table); unknown keys and wrong types are errors
        naming the field (a typo must not silently mean a default)."""
        kwargs: dict[str, object] = {}
        for key, value in data.items():
            if key not in _POLICY_FIELDS:
                raise PolicyError(f"pacing: unknown setting {key!r} ({', '.join(sorted(_POLICY_FIELDS))})")
            if key == "mode":
                kwargs[key] = value
            elif key == "enforce_cap":
                if not isinstance(value, bool):
                    raise PolicyError(f"pacing.enforce_cap: expected true or false, got {value!r}")
                kwargs[key] = value
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PolicyError(f"pacing.{key}: expected a number, got {value!r}")
            else:
                kwargs[key] = float(value)
        return cls(**kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_campaign(cls, config: Mapping[str, object]) -> PacingPolicy:
        """From a campaign configuration as `dialer.campaigns` stores it (`pacing_mode`,
        `pacing_ratio`, `abandon_cap`, `agent_kind`). AI-agent campaigns are paced agentless
        whatever their mode; `preview` is refused: a preview call is started by its agent, it is
        not paced."""
        mode = str(config.get("pacing_mode", "progressive"))
        if mode == "preview":
            raise PolicyError("pacing.mode: preview campaigns are dialed by their agents, not paced")
        if config.get("agent_kind") == "ai":
            mode = PacingMode.AGENTLESS.value
        settings: dict[str, object] = {"mode": mode}
        if "pacing_ratio" in config and mode == PacingMode.POWER.value:
            settings["power_ratio"] = config["pacing_ratio"]
        if "abandon_cap" in config:
            settings["abandon_cap"] = config["abandon_cap"]
        return cls.from_mapping(settings)

    def as_dict(self) -> dict[str, object]:
        return {name: (getattr(self, name).value if name == "mode" else getattr(self, name)) for name in _POLICY_FIELDS}


_POLICY_FIELDS = (
    "mode", "abandon_cap", "power_ratio", "predictive_target", "backoff_start", "max_lines_per_agent", "enforce_cap",
)


@dataclass(frozen=True)
class PacingState:
    """One observation of a campaign, taken by the runtime at `now`.

    free_agents: agents (or, in agentless mode, AI sessions) idle and ready now.
    busy_elapsed: for each busy agent, seconds since it took its current call (talk plus
      wrap-up so far); with the handle-time estimate this gives each agent's chance to be
      free by the time a call placed now is answered.
    agents_freeing: explicit time-to-free estimates (seconds) for busy agents that told us
      (for example "wrap-up ends in 4 s"); such agents must NOT also be in busy_elapsed.
    ringing: for each call in flight (placed, not yet answered or failed), seconds since it
      was placed.
    answer_rate: live answers / completed attempts (estimator output).
    ring_answered: survival of the ring time of calls a person answers.
    ring_other: survival of the time until an attempt ends without a live answer
      (busy, no answer, machine, failure).
    handle: survival of the handle time (agent connect to agent free).
    abandons, live_answers: the campaign's counts over its regulatory window.
    trunk_channel_limit, trunk_channels_in_use: the trunk's channels (None: no limit known).
    calls_per_second, originates_last_second: the calls-per-second ceiling and how many
      originates went out in the last second (None: no ceiling).
    ai_sessions_available: free AI-agent sessions (agentless mode).
    """

    now: float
    free_agents: int
    busy_elapsed: tuple[float, ...] = ()
    agents_freeing: tuple[float, ...] = ()
    ringing: tuple[float, ...] = ()
    answer_rate: float = 0.0
    ring_answered: Survival | None = None
    ring_other: Survival | None = None
    handle: Survival | None = None
    abandons: int = 0
    live_answers: int = 0
    trunk_channel_limit: int | None = None
    trunk_channels_in_use: int = 0
    calls_per_second: float | None = None
    originates_last_second: int = 0
    ai_sessions_available: int = 0

    @property
    def staffed_agents(self) -> int:
        return self.free_agents + len(self.busy_elapsed) + len(self.agents_freeing)


@dataclass(frozen=True)
class Decision:
    """How many calls to place now, and why.

    calls: place exactly this many now (never above a ceiling).
    wanted: what the mode asked for before the ceilings.
    reason: a code saying what drove the decision (see docs/pacing.md).
    limited_by: "trunk" or "cps" when a hard ceiling cut the number, else None.
    """

    calls: int
    wanted: int
    mode: PacingMode
    reason: str
    limited_by: str | None = None
    detail: dict[str, float] = field(default_factory=dict, compare=False)
