"""What happens to one simulated call: pure, seeded models of callees and agents.

Shared by the sandbox PBX (which turns a plan into AMI events on a clock) and the pacing
simulator (which only needs the numbers). Nothing here reads a clock or a global random
state: every sample takes a `random.Random` and returns a plain frozen dataclass.

Two ways to decide a callee's fate:
- `CalleeProfile.sample(rng)`: probabilities and durations (the realistic mode);
- `reference_plan(number)`: the last digit of the number picks the behaviour, exactly as the
  `[sim-callee]` context of the real-Asterisk reference (tests use it to compare event
  sequences with the transcript). Digits 7 (opt-out) and 8 (answering machine) are our
  additions: the reference treats them as "other" and never dialed them (it dialed 1-6).

Durations are in seconds of simulated time; the PBX divides them by its time scale.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "AgentPlan",
    "AgentProfile",
    "CallPlan",
    "CalleeProfile",
    "Duration",
    "Fate",
    "ProfileError",
    "reference_plan",
]


class ProfileError(ValueError):
    """A profile from a config file is invalid (message names the field)."""


class Fate(StrEnum):
    """What the far end does with the call attempt (before our dialplan runs)."""

    ANSWER = "answer"  # a human (or a machine, see CallPlan.machine) picks up
    BUSY = "busy"  # OriginateResponse Reason 5, Hangup cause 17
    NO_ANSWER = "no_answer"  # rings until the Originate timeout: Reason 3
    CONGESTION = "congestion"  # Reason 8, cause 34
    FAILED = "failed"  # channel could not be created: Reason 0


@dataclass(frozen=True)
class Duration:
    """A duration distribution in seconds.

    kinds: `fixed` (value=a), `uniform` (a..b), `lognormal` (median=a, sigma=b),
    `exponential` (mean=a). Samples are clipped to [low, high].
    """

    kind: str = "fixed"
    a: float = 0.0
    b: float = 0.0
    low: float = 0.0
    high: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "uniform", "lognormal", "exponential"):
            raise ProfileError(f"unknown duration kind {self.kind!r} (fixed, uniform, lognormal, exponential)")
        if self.a < 0 or self.b < 0 or self.low < 0 or self.high < self.low:
            raise ProfileError(f"invalid {self.kind} duration parameters: a={self.a} b={self.b}")
        if self.kind == "uniform" and self.b < self.a:
            raise ProfileError(f"uniform duration needs a <= b, got {self.a}..{self.b}")
        if self.kind in ("lognormal", "exponential") and self.a <= 0:
            raise ProfileError(f"{self.kind} duration needs a positive median/mean, got {self.a}")

    @classmethod
    def fixed(cls, seconds: float) -> Duration:
        return cls("fixed", seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Duration:
        return cls("uniform", low, high)

    @classmethod
    def lognormal(cls, median: float, sigma: float, low: float = 0.0, high: float = math.inf) -> Duration:
        return cls("lognormal", median, sigma, low, high)

    @classmethod
    def exponential(cls, mean: float, low: float = 0.0, high: float = math.inf) -> Duration:
        return cls("exponential", mean, 0.0, low, high)

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            value = self.a
        elif self.kind == "uniform":
            value = rng.uniform(self.a, self.b)
        elif self.kind == "lognormal":
            value = rng.lognormvariate(math.log(self.a), self.b)
        else:
            value = rng.expovariate(1.0 / self.a)
        return min(max(value, self.low), self.high)

    @property
    def mean(self) -> float:
        """Expected value before clipping (for pacing estimates)."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        if self.kind == "lognormal":
            return self.a * math.exp(self.b**2 / 2)
        return self.a

    @classmethod
    def from_value(cls, value: object, what: str) -> Duration:
        """From config: a number (fixed), `[low, high]` (uniform), or a table
        `{kind = "lognormal", median = 120, sigma = 0.5, low = 5, high = 1800}`."""
        if isinstance(value, Duration):
            return value
        if isinstance(value, bool):
            raise ProfileError(f"{what}: expected seconds, got {value!r}")
        if isinstance(value, (int, float)):
            return cls.fixed(float(value))
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value):
            return cls.uniform(float(value[0]), float(value[1]))
        if isinstance(value, Mapping):
            kind = str(value.get("kind", "fixed"))
            known = {"kind", "value", "median", "sigma", "mean", "low", "high", "min", "max"}
            unknown = set(value) - known
            if unknown:
                raise ProfileError(f"{what}: unknown keys {sorted(unknown)}")
            try:
                low = float(value.get("low", value.get("min", 0.0)))
                high = float(value.get("high", value.get("max", math.inf)))
                if kind == "fixed":
                    return cls("fixed", float(value["value"]), 0.0, low, high)
                if kind == "uniform":
                    return cls("uniform", low, high if high != math.inf else low)
                if kind == "lognormal":
                    return cls("lognormal", float(value["median"]), float(value.get("sigma", 0.5)), low, high)
                if kind == "exponential":
                    return cls("exponential", float(value["mean"]), 0.0, low, high)
            except KeyError as exc:
                raise ProfileError(f"{what}: {kind} duration needs {exc.args[0]!r}") from None
            except (TypeError, ValueError) as exc:
                raise ProfileError(f"{what}: {exc}") from None
            except ProfileError as exc:
                raise ProfileError(f"{what}: {exc}") from None
            raise ProfileError(f"{what}: unknown duration kind {kind!r}")
        raise ProfileError(f"{what}: expected seconds, [low, high] or a table, got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class CallPlan:
    """What will happen to one call on the callee's side. Times in simulated seconds.

    ring_seconds: ringing before the fate takes effect (answer, busy signal, congestion);
      for NO_ANSWER the phone rings until the Originate timeout whatever this says.
    stay_seconds: after answer, how long the callee stays on the line before hanging up
      (if nobody hangs up first).
    optout_after: after answer, when the callee presses the opt-out digit (None: never).
    machine: the answering party is an answering machine (AMD reports MACHINE).
    """

    fate: Fate
    ring_seconds: float = 0.0
    stay_seconds: float = 0.0
    machine: bool = False
    optout_after: float | None = None

    @property
    def answers(self) -> bool:
        return self.fate is Fate.ANSWER


@dataclass(frozen=True)
class CalleeProfile:
    """A population of called people.

    answer/busy/congestion/failed are probabilities of each fate; the remainder is
    "no answer". machine is the share of answers that are answering machines; optout is the
    probability that a human who answers presses the opt-out digit (after `optout_after`).
    """

    answer: float = 0.6
    busy: float = 0.1
    congestion: float = 0.02
    failed: float = 0.0
    machine: float = 0.1
    optout: float = 0.02
    ring: Duration = field(default_factory=lambda: Duration.lognormal(6.0, 0.5, low=1.0, high=40.0))
    busy_ring: Duration = field(default_factory=lambda: Duration.uniform(0.5, 2.0))
    stay: Duration = field(default_factory=lambda: Duration.lognormal(90.0, 0.8, low=3.0, high=1800.0))
    optout_after: Duration = field(default_factory=lambda: Duration.uniform(1.0, 8.0))

    def __post_init__(self) -> None:
        for name in ("answer", "busy", "congestion", "failed", "machine", "optout"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ProfileError(f"callee.{name}: probability must be between 0 and 1, got {value!r}")
        total = self.answer + self.busy + self.congestion + self.failed
        if total > 1.0 + 1e-9:
            raise ProfileError(f"callee: answer+busy+congestion+failed = {total:.3f} exceeds 1")

    @property
    def no_answer(self) -> float:
        return max(0.0, 1.0 - self.answer - self.busy - self.congestion - self.failed)

    def sample(self, rng: random.Random) -> CallPlan:
        """Draw one call's fate. Always consumes the same number of draws, so plans of later
        calls do not depend on earlier outcomes (keeps seeded runs comparable)."""
        u_fate, u_machine, u_optout = rng.random(), rng.random(), rng.random()
        ring = self.ring.sample(rng)
        busy_ring = self.busy_ring.sample(rng)
        stay = self.stay.sample(rng)
        optout_after = self.optout_after.sample(rng)
        edges = (
            (self.answer, Fate.ANSWER),
            (self.busy, Fate.BUSY),
            (self.congestion, Fate.CONGESTION),
            (self.failed, Fate.FAILED),
        )
        fate = Fate.NO_ANSWER
        acc = 0.0
        for p, candidate in edges:
            acc += p
            if u_fate < acc:
                fate = candidate
                break
        if fate is Fate.ANSWER:
            machine = u_machine < self.machine
            opts_out = (not machine) and u_optout < self.optout
            return CallPlan(fate, ring, stay, machine, optout_after if opts_out else None)
        if fate in (Fate.BUSY, Fate.CONGESTION):
            return CallPlan(fate, busy_ring)
        if fate is Fate.FAILED:
            return CallPlan(fate, 0.0)
        return CallPlan(Fate.NO_ANSWER, math.inf)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], what: str = "callee") -> CalleeProfile:
        """From a TOML table; unknown keys are errors (a typo must not silently mean a default)."""
        kwargs: dict[str, object] = {}
        durations = {"ring", "busy_ring", "stay", "optout_after"}
        probabilities = {"answer", "busy", "congestion", "failed", "machine", "optout"}
        for key, value in data.items():
            if key in durations:
                kwargs[key] = Duration.from_value(value, f"{what}.{key}")
            elif key in probabilities:
                if not _is_number(value):
                    raise ProfileError(f"{what}.{key}: expected a probability, got {value!r}")
                kwargs[key] = float(value)  # type: ignore[arg-type]
            else:
                raise ProfileError(f"{what}: unknown key {key!r}")
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except ProfileError as exc:
            raise ProfileError(str(exc).replace("callee", what, 1)) from None


@dataclass(frozen=True)
class AgentPlan:
    """One connected conversation: the agent answers after ring_seconds, talks talk_seconds,
    then is unavailable for wrapup_seconds."""

    ring_seconds: float
    talk_seconds: float
    wrapup_seconds: float


@dataclass(frozen=True)
class AgentProfile:
    """A pool of agents (human queue members or AI-agent sessions).

    Defaults follow the reference queue: agents answer at once, talk 5-15 s
    (`Wait(${RAND(5,15)})`), wrap up 2 s (`wrapuptime = 2`).
    """

    ring: Duration = field(default_factory=lambda: Duration.fixed(0.0))
    talk: Duration = field(default_factory=lambda: Duration.uniform(5.0, 15.0))
    wrapup: Duration = field(default_factory=lambda: Duration.fixed(2.0))

    def sample(self, rng: random.Random) -> AgentPlan:
        return AgentPlan(self.ring.sample(rng), self.talk.sample(rng), self.wrapup.sample(rng))

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], what: str = "agents") -> AgentProfile:
        kwargs: dict[str, Duration] = {}
        for key, value in data.items():
            if key not in ("ring", "talk", "wrapup"):
                raise ProfileError(f"{what}: unknown key {key!r}")
            kwargs[key] = Duration.from_value(value, f"{what}.{key}")
        return cls(**kwargs)


# The reference's [sim-callee]: last digit -> behaviour (ring, answer?, stay).
_REFERENCE: dict[str, CallPlan] = {
    "1": CallPlan(Fate.ANSWER, ring_seconds=2.0, stay_seconds=20.0),
    "2": CallPlan(Fate.BUSY, ring_seconds=0.0),
    "3": CallPlan(Fate.NO_ANSWER, ring_seconds=math.inf),
    "4": CallPlan(Fate.CONGESTION, ring_seconds=0.0),
    "5": CallPlan(Fate.ANSWER, ring_seconds=1.0, stay_seconds=4.0),
    # Our additions (the reference dialed 1-6 only): a person who opts out, and a machine.
    "7": CallPlan(Fate.ANSWER, ring_seconds=1.0, stay_seconds=10.0, optout_after=0.5),
    "8": CallPlan(Fate.ANSWER, ring_seconds=1.0, stay_seconds=10.0, machine=True),
}
_REFERENCE_DEFAULT = CallPlan(Fate.ANSWER, ring_seconds=1.0, stay_seconds=10.0)


def reference_plan(number: str) -> CallPlan:
    """The deterministic "last digit picks the behaviour" mode (see module docstring).

    1: answers after 2 s, stays 20 s; 2: busy; 3: never answers; 4: congestion;
    5: answers after 1 s, stays 4 s; 7: answers after 1 s and presses the opt-out digit 0.5 s
    later; 8: answering machine (answers after 1 s, 10 s greeting); anything else (6, 9, 0):
    answers after 1 s, stays 10 s.
    """
    digits = [c for c in number if c.isdigit()]
    if not digits:
        return _REFERENCE_DEFAULT
    return _REFERENCE.get(digits[-1], _REFERENCE_DEFAULT)
