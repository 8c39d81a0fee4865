"""A simulated day for `dialer simulate`: the world over time, and the campaigns that dial it.

A scenario file (TOML) describes what changes during a day: the answer rate drifting from morning to
evening, agents logging in and out, talk times that change with the offer, and several campaigns sharing
one pool of agents. Anything a file does not say comes from the defaults table
(dialer/data/simulation-defaults.toml, one source per figure; docs/pacing.md).

    duration = "8h"                # also: seed, jurisdiction, ring_timeout, tick, trunk_channels, calls_per_second
    [world]                        # the day's starting values; numbers, or curves [[time, value], ...]
    agents = 20
    answer_rate = [["0h", 0.30], ["8h", 0.10]]     # piecewise linear, constant beyond its ends
    talk = { kind = "lognormal", mean = 90, sigma = 0.8 }
    [[phases]]                     # from `at` on, these values replace the ones before
    name = "half the team leaves"
    at = "4h"
    agents = 10
    [[campaigns]]                  # one or more; they share the agents
    name = "sales"
    mode = "predictive"            # progressive, power, predictive, agentless
    cap = 0.03                     # also: ratio (power), weight and priority (agent sharing), guard ("15m", "1h"),
                                   # legal_campaign (campaigns with one key share one abandon window), pacing = {...}

Pure: parsing and evaluation only; `dialer.simulate` runs it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from dialer.pacing import DEFAULT_ABANDON_CAP, PacingPolicy, PolicyError
from dialer.pacing.legal import legal_key
from dialer.sandbox.behaviour import Duration, ProfileError

__all__ = [
    "SHARE_KEYS",
    "CampaignSpec",
    "Curve",
    "Dist",
    "Empirical",
    "Mixture",
    "Phase",
    "Scenario",
    "ScenarioError",
    "World",
    "defaults",
    "load_scenario",
    "parse_dist",
    "parse_duration",
    "scenario_from_mapping",
]


class ScenarioError(ValueError):
    """A scenario is invalid; the message names the field."""


# -- durations and times ---------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'8h', '90m', '3600s', '1d', '1h30m' or plain seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r} (examples: 8h, 90m, 3600s, 1h30m)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise ScenarioError(f"{what}: expected a time (seconds or '4h'), got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ScenarioError(f"{what}: {exc}") from None
    else:
        raise ScenarioError(f"{what}: expected a time (seconds or '4h'), got {value!r}")
    if seconds < 0 or not math.isfinite(seconds):
        raise ScenarioError(f"{what}: must be a finite time >= 0, got {value!r}")
    return seconds


def _number(value: object, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{what}: expected a number, got {value!r}")
    number = float(value)
    if not low <= number <= high:
        raise ScenarioError(f"{what}: must be between {low:g} and {high:g}, got {number:g}")
    return number


# -- distributions ---------------------------------------------------------------------------------

class Dist(Protocol):
    """A duration distribution in seconds (sandbox `Duration`, `Mixture`, `Empirical`)."""

    def sample(self, rng: random.Random) -> float: ...

    @property
    def mean(self) -> float: ...


@dataclass(frozen=True)
class Mixture:
    """Pick a component by weight, then sample it (ring times: people answer early or late)."""

    components: tuple[tuple[float, Dist], ...]
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        total = sum(w for w, _ in self.components)
        if not self.components or total <= 0 or any(w < 0 for w, _ in self.components):
            raise ScenarioError("a mixture needs components with weights >= 0 and a positive total")
        running, cumulative = 0.0, []
        for w, _ in self.components:
            running += w / total
            cumulative.append(running)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    def sample(self, rng: random.Random) -> float:
        k = min(bisect.bisect_right(self._cumulative, rng.random()), len(self.components) - 1)
        return self.components[k][1].sample(rng)

    @property
    def mean(self) -> float:
        total = sum(w for w, _ in self.components)
        return sum(w * d.mean for w, d in self.components) / total


@dataclass(frozen=True)
class Empirical:
    """Observed durations with weights (a histogram from the campaign's history): a sample is a
    bin's value plus a uniform spread over the bin width."""

    values: tuple[float, ...]
    weights: tuple[float, ...]
    width: float = 0.0
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        total = sum(self.weights)
        if not self.values or len(self.values) != len(self.weights) or total <= 0:
            raise ScenarioError("an empirical distribution needs values with positive total weight")
        running, cumulative = 0.0, []
        for w in self.weights:
            running += w / total
            cumulative.append(running)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    def sample(self, rng: random.Random) -> float:
        k = min(bisect.bisect_right(self._cumulative, rng.random()), len(self.values) - 1)
        return self.values[k] + (rng.random() * self.width if self.width else 0.0)

    @property
    def mean(self) -> float:
        total = sum(self.weights)
        return sum(v * w for v, w in zip(self.values, self.weights, strict=True)) / total + self.width / 2


_DIST_KEYS = {"kind", "value", "median", "mean", "sigma", "low", "high", "weight"}


def parse_dist(value: object, what: str) -> Dist:
    """A number (fixed), or a table: `{kind = "lognormal", median = 8 | mean = 90, sigma = 0.5, low, high}`,
    `{kind = "uniform", low, high}`, `{kind = "exponential", mean}`, `{kind = "fixed", value}`, or
    `{components = [{weight = 0.6, kind = ...}, ...]}` (a mixture)."""
    if isinstance(value, (Duration, Mixture, Empirical)):
        return value
    if isinstance(value, bool):
        raise ScenarioError(f"{what}: expected seconds or a distribution table, got {value!r}")
    if isinstance(value, (int, float)):
        return Duration.fixed(_number(value, what, 0.0))
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{what}: expected seconds or a distribution table, got {value!r}")
    if "components" in value:
        extra = set(value) - {"components", "source"}
        if extra:
            raise ScenarioError(f"{what}: unknown keys {sorted(extra)} next to components")
        parts = value["components"]
        if not isinstance(parts, list) or not parts:
            raise ScenarioError(f"{what}.components: expected a list of distribution tables")
        components = []
        for i, part in enumerate(parts):
            if not isinstance(part, Mapping):
                raise ScenarioError(f"{what}.components[{i}]: expected a table")
            weight = _number(part.get("weight", 1.0), f"{what}.components[{i}].weight", 0.0)
            components.append((weight, parse_dist({k: v for k, v in part.items() if k != "weight"},
                                                  f"{what}.components[{i}]")))
        return Mixture(tuple(components))
    unknown = set(value) - _DIST_KEYS
    if unknown:
        raise ScenarioError(f"{what}: unknown keys {sorted(unknown)} ({', '.join(sorted(_DIST_KEYS - {'weight'}))})")
    kind = value.get("kind", "fixed")
    low = _number(value.get("low", 0.0), f"{what}.low", 0.0)
    high = _number(value.get("high", math.inf), f"{what}.high", 0.0)
    try:
        if kind == "fixed":
            return Duration("fixed", _number(value.get("value"), f"{what}.value", 0.0), 0.0, low, high)
        if kind == "uniform":
            return Duration.uniform(low, high if math.isfinite(high) else low)
        if kind == "exponential":
            return Duration.exponential(_number(value.get("mean"), f"{what}.mean", 0.0), low, high)
        if kind == "lognormal":
            sigma = _number(value.get("sigma", 0.5), f"{what}.sigma", 0.0, 5.0)
            if "median" in value and "mean" in value:
                raise ScenarioError(f"{what}: give median or mean, not both")
            if "mean" in value:
                median = _number(value["mean"], f"{what}.mean", 0.0) / math.exp(sigma * sigma / 2)
            else:
                median = _number(value.get("median"), f"{what}.median", 0.0)
            return Duration.lognormal(median, sigma, low, high)
    except ProfileError as exc:
        raise ScenarioError(f"{what}: {exc}") from None
    raise ScenarioError(f"{what}: unknown kind {kind!r} (fixed, uniform, lognormal, exponential)")


# -- curves ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Curve:
    """A value over time: piecewise linear through `points` (time, value), constant beyond its ends."""

    points: tuple[tuple[float, float], ...]

    @classmethod
    def constant(cls, value: float) -> Curve:
        return cls(((0.0, value),))

    def at(self, t: float) -> float:
        points = self.points
        if t <= points[0][0]:
            return points[0][1]
        if t >= points[-1][0]:
            return points[-1][1]
        k = bisect.bisect_right(points, (t, math.inf))
        (t0, v0), (t1, v1) = points[k - 1], points[k]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1

    @property
    def knots(self) -> tuple[float, ...]:
        return tuple(t for t, _ in self.points)


def _curve(value: object, what: str, low: float, high: float) -> Curve:
    if isinstance(value, Curve):
        return value
    if isinstance(value, list):
        if not value:
            raise ScenarioError(f"{what}: a curve needs at least one [time, value] point")
        points = []
        for i, point in enumerate(value):
            if not isinstance(point, list) or len(point) != 2:
                raise ScenarioError(f"{what}[{i}]: expected [time, value], got {point!r}")
            points.append((_seconds(point[0], f"{what}[{i}] time"), _number(point[1], f"{what}[{i}] value", low, high)))
        if any(b[0] < a[0] for a, b in itertools.pairwise(points)):
            raise ScenarioError(f"{what}: curve times must not go back")
        return Curve(tuple(points))
    return Curve.constant(_number(value, what, low, high))


# -- the world -------------------------------------------------------------------------------------

# Shares of all attempts; no answer is what is left (or machines are, see `World`).
SHARE_KEYS = ("answer_rate", "machine_rate", "busy", "failed", "no_answer")
CURVE_KEYS = (*SHARE_KEYS, "agents")
DIST_KEYS = ("ring_live", "ring_machine", "busy_ring", "talk", "wrapup")
WORLD_KEYS = frozenset((*CURVE_KEYS, *DIST_KEYS))


@cache
def defaults() -> dict[str, Any]:
    """The defaults table (dialer/data/simulation-defaults.toml): key -> value (numbers, 'remainder' or
    distributions), each with its `source` in the file."""
    text = resources.files("dialer").joinpath("data/simulation-defaults.toml").read_text(encoding="utf-8")
    table = tomllib.loads(text)
    values: dict[str, Any] = {}
    for key, entry in table.items():
        values[key] = {k: v for k, v in entry.items() if k != "source"} if "components" in entry else entry["value"]
    return values


@dataclass(frozen=True)
class World:
    """What callees and agents do at one instant. Shares are of all attempts; the simulator draws an
    outcome per call from them and durations from the distributions."""

    answer_rate: float
    machine_rate: float
    busy: float
    failed: float
    agents: int
    ring_live: Dist
    ring_machine: Dist
    busy_ring: Dist
    talk: Dist
    wrapup: Dist

    @property
    def no_answer(self) -> float:
        return max(0.0, 1.0 - self.answer_rate - self.machine_rate - self.busy - self.failed)


@dataclass(frozen=True)
class Phase:
    """From `at` on, `values` (curves and distributions) replace the earlier ones."""

    name: str
    at: float
    values: Mapping[str, Any]


@dataclass(frozen=True)
class CampaignSpec:
    """One campaign of the scenario: its pacing policy, its weight in sharing agents, its short-window
    guard (seconds, None = off)."""

    name: str
    policy: PacingPolicy
    weight: float = 1.0
    guard: float | None = None
    priority: int = 0
    legal_campaign: str = ""  # campaigns with the same key share one legal window (dialer/pacing/legal.py)


@dataclass(frozen=True)
class Scenario:
    duration: float
    phases: tuple[Phase, ...]  # the first starts at 0 and holds every key
    campaigns: tuple[CampaignSpec, ...]
    seed: int = 1
    jurisdiction: str = "US"
    ring_timeout: float = 25.0
    amd_seconds: float = 3.0
    tick: float = 1.0
    trunk_channels: int | None = None
    calls_per_second: float | None = None
    machine_is_remainder: bool = True  # machines = what no answer's default share leaves
    notes: tuple[str, ...] = ()  # what the builder had to assume (from-history: short history)
    legal_hold: bool = True  # False: no cap-reached / cap-room hold (the benchmark's fixed-ratio oracle only)
    history: tuple[int, int] = (0, 0)  # (live answers, abandons) already in the legal window when the day starts
    # (a legal campaign's: its window's, counted once for its members)
    legal_others: int = 0  # members of each legal campaign outside the scenario that may still dial (room split)

    def phase_index(self, t: float) -> int:
        return max(0, bisect.bisect_right([p.at for p in self.phases], t) - 1)

    def _value(self, key: str, index: int) -> Any:
        for phase in reversed(self.phases[: index + 1]):
            if key in phase.values:
                return phase.values[key]
        raise KeyError(key)

    def world_at(self, t: float) -> World:
        """The world at time t (seconds from the start of the day)."""
        i = self.phase_index(t)
        shares = {k: self._value(k, i).at(t) for k in ("answer_rate", "busy", "failed")}
        if self.machine_is_remainder:
            no_answer = self._value("no_answer", i).at(t)
            machine = max(0.0, 1.0 - shares["answer_rate"] - shares["busy"] - shares["failed"] - no_answer)
        else:
            machine = self._value("machine_rate", i).at(t)
        return World(
            answer_rate=shares["answer_rate"],
            machine_rate=machine,
            busy=shares["busy"],
            failed=shares["failed"],
            agents=max(0, round(self._value("agents", i).at(t))),
            **{k: self._value(k, i) for k in DIST_KEYS},
        )

    def steady_until(self, t: float) -> float:
        """A time up to which (not included) `world_at` gives the same world as at `t`: the next phase start while
        no curve in effect still moves after `t`, else `t` itself (work it out again next time). The simulator
        asks for the world every simulated second; a constant day need not interpolate 28,800 times."""
        i = self.phase_index(t)
        for key in CURVE_KEYS:
            try:
                curve = self._value(key, i)
            except KeyError:
                continue
            points = curve.points
            if t < points[-1][0] and any(v != points[0][1] for _, v in points):
                return t
        return self.phases[i + 1].at if i + 1 < len(self.phases) else math.inf

    def boundaries(self) -> list[float]:
        """Phase starts, then the end."""
        return [p.at for p in self.phases] + [self.duration]

    def with_campaigns(self, campaigns: Sequence[CampaignSpec]) -> Scenario:
        return replace(self, campaigns=tuple(campaigns))

    def with_values(self, **values: Any) -> Scenario:
        """The same day with these world values for the whole day (what-if: `agents=20`)."""
        phases = [Phase(p.name, p.at, {k: v for k, v in p.values.items() if k not in values}) for p in self.phases]
        phases[0] = Phase(phases[0].name, 0.0, {**phases[0].values, **_world_values(values, "override")})
        return replace(self, phases=tuple(phases))


def _world_values(data: Mapping[str, Any], what: str) -> dict[str, Any]:
    unknown = set(data) - WORLD_KEYS - {"name", "at"}
    if unknown:
        raise ScenarioError(f"{what}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(WORLD_KEYS))})")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("name", "at"):
            continue
        if key == "agents":
            values[key] = _curve(value, f"{what}.agents", 0.0, 100_000.0)
        elif key in SHARE_KEYS:
            values[key] = _curve(value, f"{what}.{key}", 0.0, 1.0)
        else:
            values[key] = parse_dist(value, f"{what}.{key}")
    return values


def _default_world() -> dict[str, Any]:
    table = defaults()
    values: dict[str, Any] = {}
    for key in ("answer_rate", "busy", "failed", "no_answer", "agents"):
        values[key] = Curve.constant(float(table[key]))
    for key in DIST_KEYS:
        values[key] = parse_dist(table[key], f"defaults.{key}")
    return values


_SCENARIO_KEYS = {"duration", "seed", "jurisdiction", "ring_timeout", "tick", "trunk_channels", "calls_per_second",
                  "world", "phases", "campaigns"}
_CAMPAIGN_KEYS = {"name", "mode", "cap", "ratio", "weight", "priority", "guard", "pacing", "legal_campaign"}


def _campaign(data: object, i: int) -> CampaignSpec:
    what = f"campaigns[{i}]"
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{what}: expected a table")
    unknown = set(data) - _CAMPAIGN_KEYS
    if unknown:
        raise ScenarioError(f"{what}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(_CAMPAIGN_KEYS))})")
    settings: dict[str, object] = dict(data.get("pacing") or {})
    if "mode" in data:
        settings["mode"] = data["mode"]
    settings.setdefault("mode", "predictive")
    if "cap" in data:
        settings["abandon_cap"] = data["cap"]
    settings.setdefault("abandon_cap", DEFAULT_ABANDON_CAP)
    if "ratio" in data:
        settings["power_ratio"] = data["ratio"]
    try:
        policy = PacingPolicy.from_mapping(settings)
    except PolicyError as exc:
        raise ScenarioError(f"{what}: {exc}") from None
    guard = data.get("guard")
    guard_seconds = None if guard in (None, False, "off") else _seconds(guard, f"{what}.guard")
    if guard_seconds is not None and (guard_seconds < 60 or guard_seconds % 60):
        raise ScenarioError(f"{what}.guard: a whole number of minutes (the runtime's abandon_guard_minutes), "
                            f"got {guard!r}")
    weight = _number(data.get("weight", 1.0), f"{what}.weight", 0.0)
    if weight <= 0:
        raise ScenarioError(f"{what}.weight: must be above 0 (use priority to serve a campaign last), got {weight:g}")
    priority = data.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -9 <= priority <= 9:
        raise ScenarioError(f"{what}.priority: a whole number from -9 to 9, got {priority!r}")
    try:
        legal = legal_key(data)
    except PolicyError as exc:
        raise ScenarioError(f"{what}.{exc}") from None
    return CampaignSpec(
        name=str(data.get("name", f"campaign-{i + 1}")),
        policy=policy,
        weight=weight,
        guard=guard_seconds,
        priority=priority,
        legal_campaign=legal,
    )


def scenario_from_mapping(data: Mapping[str, Any]) -> Scenario:
    """A scenario from a parsed TOML document; ScenarioError names the field at fault."""
    unknown = set(data) - _SCENARIO_KEYS
    if unknown:
        raise ScenarioError(f"unknown keys {sorted(unknown)} (known: {', '.join(sorted(_SCENARIO_KEYS))})")
    duration = _seconds(data.get("duration", "8h"), "duration")
    if duration <= 0:
        raise ScenarioError("duration: must be positive")
    world = data.get("world", {})
    if not isinstance(world, Mapping):
        raise ScenarioError("world: expected a table")
    first = {**_default_world(), **_world_values(world, "world")}
    phases = [Phase(str(world.get("name", "start")), 0.0, first)]
    raw_phases = data.get("phases", [])
    if not isinstance(raw_phases, list):
        raise ScenarioError("phases: expected [[phases]] tables")
    for i, raw in enumerate(raw_phases):
        if not isinstance(raw, Mapping):
            raise ScenarioError(f"phases[{i}]: expected a table")
        if "at" not in raw:
            raise ScenarioError(f"phases[{i}].at: missing (when the phase starts, e.g. '4h')")
        at = _seconds(raw["at"], f"phases[{i}].at")
        if at <= phases[-1].at or at >= duration:
            raise ScenarioError(f"phases[{i}].at: phases must start in order, after 0 and before the end "
                                f"({raw['at']!r})")
        phases.append(Phase(str(raw.get("name", f"phase {i + 2}")), at, _world_values(raw, f"phases[{i}]")))
    raw_campaigns = data.get("campaigns") or [{"name": "campaign"}]
    if not isinstance(raw_campaigns, list):
        raise ScenarioError("campaigns: expected [[campaigns]] tables")
    campaigns = tuple(_campaign(c, i) for i, c in enumerate(raw_campaigns))
    names = [c.name for c in campaigns]
    if len(set(names)) != len(names):
        raise ScenarioError("campaigns: names must be distinct")
    machine_set = any("machine_rate" in p.values for p in phases)
    if machine_set and ("no_answer" in world or any("no_answer" in p.values for p in phases[1:])):
        raise ScenarioError("world: give machine_rate or no_answer, not both (the other is the remainder)")
    trunk = data.get("trunk_channels")
    cps = data.get("calls_per_second")
    scenario = Scenario(
        duration=duration,
        phases=tuple(phases),
        campaigns=campaigns,
        seed=int(_number(data.get("seed", 1), "seed")),
        jurisdiction=str(data.get("jurisdiction", "US")),
        ring_timeout=_number(data.get("ring_timeout", defaults()["ring_timeout"]), "ring_timeout", 1.0, 600.0),
        amd_seconds=float(defaults()["amd_seconds"]),
        tick=_number(data.get("tick", 1.0), "tick", 0.1, 60.0),
        trunk_channels=None if trunk is None else int(_number(trunk, "trunk_channels", 0)),
        calls_per_second=None if cps is None else _number(cps, "calls_per_second", 0.0),
        machine_is_remainder=not machine_set,
    )
    check_shares(scenario)
    return scenario


def check_shares(scenario: Scenario) -> None:
    """Shares must add up to at most 1 at every instant. They are piecewise linear, so checking every
    curve knot and both sides of every phase start is enough."""
    instants = {0.0, scenario.duration}
    for phase in scenario.phases:
        instants.add(phase.at)
        if phase.at > 0:
            instants.add(phase.at - 1e-6)
        for value in phase.values.values():
            if isinstance(value, Curve):
                instants.update(t for t in value.knots if 0 <= t <= scenario.duration)
    for t in sorted(instants):
        world = scenario.world_at(t)
        total = world.answer_rate + world.machine_rate + world.busy + world.failed
        if not scenario.machine_is_remainder and total > 1.0 + 1e-9:
            raise ScenarioError(f"world at {t / 3600:.2f} h: answer_rate + machine_rate + busy + failed = "
                                f"{total:.3f}, more than 1")
        if scenario.machine_is_remainder:
            fixed = world.answer_rate + world.busy + world.failed
            if fixed > 1.0 + 1e-9:
                raise ScenarioError(f"world at {t / 3600:.2f} h: answer_rate + busy + failed = {fixed:.3f}, "
                                    "more than 1")


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; ScenarioError (naming the file and field) when it is unreadable or invalid."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text") from None
    try:
        return scenario_from_mapping(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def single_campaign(policy: PacingPolicy, guard: float | None = None, name: str = "campaign",
                    legal_campaign: str = "") -> tuple[CampaignSpec]:
    return (CampaignSpec(name, policy, 1.0, guard, legal_campaign=legal_campaign),)


def constant_scenario(
    policy: PacingPolicy,
    *,
    duration: float,
    seed: int,
    values: Mapping[str, Any],
    guard: float | None = None,
    legal_campaign: str = "",
    **options: Any,
) -> Scenario:
    """One constant phase, one campaign: what the flags describe."""
    world = {**_default_world(), **_world_values(values, "flags")}
    machine_set = "machine_rate" in values
    scenario = Scenario(duration=duration, phases=(Phase("day", 0.0, world),),
                        campaigns=single_campaign(policy, guard, legal_campaign=legal_campaign), seed=seed,
                        machine_is_remainder=not machine_set, **options)
    check_shares(scenario)
    return scenario

