"""Discrete-event simulation of a day of campaigns driving the real pacing code.

A heap of timed events on a simulated clock: pacing ticks, call outcomes, answers, agents
freeing up, callers giving up after the 2 s connect grace. The world (answer and machine rates,
ring, talk and wrap-up times, agents logged in) follows a `Scenario` (dialer/scenario.py) that may
change over the day; several campaigns may share the agents. Pacing is `dialer.pacing.decide`, fed by
the same `CampaignEstimators` the runtime uses, and decided by the runtime's own rule for campaigns on a pool of
agents (`dialer.pacing.pool.plan_on_pool`: the legal hold, the short-window guard, progressive slices and the split
of the pool's lines), so what the simulation shows is what the engine does.

Seeded: the same scenario gives the same result. Each campaign's callees draw from their own random
stream, so two modes with the same seed face the same sequence of callees.

Figures are kept per elementary time segment (15-minute windows cut at phase starts) so the report
can give them per window and per phase (`SimResult.windows()`, `SimResult.phases()`).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from operator import sub

from dialer.pacing import (
    CONNECT_GRACE_SECONDS,
    AbandonCounter,
    CampaignEstimators,
    PacingMode,
    PacingPolicy,
    PacingState,
    RecentOriginates,
    cps_window,
    window_for,
)
from dialer.pacing.guard import GUARD_WINDOW, AbandonGuard, GuardWindow
from dialer.pacing.legal import member_share
from dialer.pacing.pool import plan_on_pool, reserves
from dialer.pacing.sharing import ShareClaim
from dialer.scenario import CampaignSpec, Scenario, constant_scenario, defaults

__all__ = ["REPORT_WINDOW", "Bucket", "CampaignResult", "SimConfig", "SimResult", "simulate", "simulate_scenario"]

# Event kinds (ints: ties after time never happen, the sequence number is unique).
_TICK, _ANSWER, _NOT_LIVE, _AGENT_FREE, _GIVE_UP = range(5)
REPORT_WINDOW = 900.0  # the report's windows: 15 minutes, aligned on the start of the day


@dataclass(frozen=True)
class SimConfig:
    """One campaign, one constant world: what `dialer simulate`'s flags describe. None = the defaults
    table (dialer/data/simulation-defaults.toml)."""

    mode: PacingMode = PacingMode.PREDICTIVE
    agents: int = 50
    answer_rate: float = 0.15  # live (human) answers per attempt
    talk_mean: float = 90.0
    talk_sigma: float = 0.8  # lognormal shape of talk time
    wrapup_mean: float | None = None
    duration: float = 8 * 3600.0
    seed: int = 1
    cap: float = 0.03
    ratio: float = 2.0
    jurisdiction: str = "US"
    machine_rate: float | None = None  # answering machines per attempt (None: what no answer's default leaves)
    busy_share: float | None = None
    ring_timeout: float | None = None
    trunk_channels: int | None = None
    calls_per_second: float | None = None
    tick: float = 1.0
    guard: float | None = None  # short-window guard (seconds), off by default
    policy: PacingPolicy | None = None  # overrides mode/cap/ratio when given
    legal_hold: bool = True  # False: no cap-reached / cap-room hold (only the benchmark's hindsight fixed ratios)
    history: tuple[int, int] = (0, 0)  # (live answers, abandons) in the legal window before the day (0: a new campaign)
    legal_others: int = 0  # > 0: the campaign is one of a legal campaign's members (the others dial elsewhere)

    def pacing_policy(self) -> PacingPolicy:
        if self.policy is not None:
            return self.policy
        return PacingPolicy(mode=self.mode, abandon_cap=self.cap, power_ratio=self.ratio)

    def scenario(self) -> Scenario:
        if self.agents < 0:
            raise ValueError("agents must be >= 0")
        table = defaults()
        fixed = (self.busy_share if self.busy_share is not None else table["busy"]) + table["failed"]
        ceiling = 1.0 - fixed - (self.machine_rate or 0.0)
        if not 0.0 < self.answer_rate <= ceiling:
            raise ValueError(f"answer rate must be in (0, {ceiling:.2f}] with these busy/failed/machine shares")
        values: dict[str, object] = {
            "agents": self.agents,
            "answer_rate": self.answer_rate,
            "talk": {"kind": "lognormal", "mean": self.talk_mean, "sigma": self.talk_sigma, "low": 1.0,
                     "high": 4 * 3600.0},
        }
        if self.wrapup_mean is not None:
            values["wrapup"] = {"kind": "lognormal", "mean": self.wrapup_mean, "sigma": 0.5, "high": 600.0}
        if self.machine_rate is not None:
            values["machine_rate"] = self.machine_rate
        if self.busy_share is not None:
            values["busy"] = self.busy_share
        return constant_scenario(
            self.pacing_policy(), duration=self.duration, seed=self.seed, values=values, guard=self.guard,
            jurisdiction=self.jurisdiction,
            ring_timeout=self.ring_timeout if self.ring_timeout is not None else float(table["ring_timeout"]),
            amd_seconds=float(table["amd_seconds"]), tick=self.tick, trunk_channels=self.trunk_channels,
            calls_per_second=self.calls_per_second, legal_hold=self.legal_hold, history=self.history,
            legal_others=self.legal_others, legal_campaign="offer" if self.legal_others else "",
        )


@dataclass
class CampaignResult:
    name: str
    mode: PacingMode
    calls_placed: int = 0
    live_answers: int = 0
    connected: int = 0
    abandons: int = 0
    busy_seconds: float = 0.0  # agent time on this campaign's calls (talk + wrap-up)
    waits: list[float] = field(default_factory=list, repr=False)
    decisions: int = 0
    guarded: int = 0  # decisions of a guarded campaign cut by its guard (or by the room under its legal cap)
    reasons: Counter[str] = field(default_factory=Counter)
    limited: Counter[str] = field(default_factory=Counter)
    # The highest abandon rate its legal window reached (history + its own calls, read at each abandon: the only
    # instants it rises): what the law caps at every instant, where abandon_rate is only the day's end.
    legal_peak: float = 0.0

    @property
    def abandon_rate(self) -> float:
        return self.abandons / self.live_answers if self.live_answers else 0.0


@dataclass
class Bucket:
    """Figures over [start, end): attempts, live answers, abandons per campaign; agent time for the pool."""

    start: float
    end: float
    name: str = ""
    attempts: list[int] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    abandons: list[int] = field(default_factory=list)
    busy_seconds: float = 0.0
    staffed_seconds: float = 0.0

    @property
    def abandon_rate(self) -> float:
        answers = sum(self.answers)
        return sum(self.abandons) / answers if answers else 0.0

    @property
    def occupancy(self) -> float:
        return self.busy_seconds / self.staffed_seconds if self.staffed_seconds else 0.0

    @property
    def idle_seconds(self) -> float:
        return max(0.0, self.staffed_seconds - self.busy_seconds)

    def add(self, other: Bucket) -> None:
        for mine, theirs in ((self.attempts, other.attempts), (self.answers, other.answers),
                             (self.abandons, other.abandons)):
            for i, v in enumerate(theirs):
                mine[i] += v
        self.busy_seconds += other.busy_seconds
        self.staffed_seconds += other.staffed_seconds

    def as_dict(self, names: Sequence[str]) -> dict[str, object]:
        return {
            "start": self.start, "end": self.end, "name": self.name,
            "attempts": sum(self.attempts), "live_answers": sum(self.answers), "abandons": sum(self.abandons),
            "abandon_rate": round(self.abandon_rate, 5), "occupancy": round(self.occupancy, 5),
            "idle_seconds": round(self.idle_seconds, 1),
            "campaigns": {n: {"attempts": self.attempts[i], "live_answers": self.answers[i],
                              "abandons": self.abandons[i]} for i, n in enumerate(names)},
        }


@dataclass
class SimResult:
    scenario: Scenario
    campaigns: list[CampaignResult]
    segments: list[Bucket] = field(repr=False)
    staffed_seconds: float = 0.0
    peak_channels: int = 0  # most trunk channels in use at once (ringing + waiting + connected)
    peak_originates_per_second: int = 0
    config: SimConfig | None = None

    # -- the whole day, all campaigns ----------------------------------------------------------------
    def _sum(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.campaigns)

    calls_placed = property(lambda self: self._sum("calls_placed"))
    live_answers = property(lambda self: self._sum("live_answers"))
    connected = property(lambda self: self._sum("connected"))
    abandons = property(lambda self: self._sum("abandons"))
    decisions = property(lambda self: self._sum("decisions"))

    @property
    def busy_seconds(self) -> float:
        return sum(c.busy_seconds for c in self.campaigns)

    @property
    def waits(self) -> list[float]:
        return [w for c in self.campaigns for w in c.waits]

    @property
    def reasons(self) -> Counter[str]:
        return sum((c.reasons for c in self.campaigns), Counter())

    @property
    def limited(self) -> Counter[str]:
        return sum((c.limited for c in self.campaigns), Counter())

    @property
    def agent_hours(self) -> float:
        return self.staffed_seconds / 3600.0

    @property
    def occupancy(self) -> float:
        """Share of staffed time agents spent handling calls (talk + wrap-up)."""
        return self.busy_seconds / self.staffed_seconds if self.staffed_seconds else 0.0

    @property
    def abandon_rate(self) -> float:
        return self.abandons / self.live_answers if self.live_answers else 0.0

    @property
    def legal_peak(self) -> float:
        """The highest legal-window abandon rate any campaign reached during the day (CampaignResult.legal_peak)."""
        return max((c.legal_peak for c in self.campaigns), default=0.0)

    @property
    def answered_per_agent_hour(self) -> float:
        return self.connected / self.agent_hours if self.agent_hours else 0.0

    @property
    def attempts_per_agent_hour(self) -> float:
        return self.calls_placed / self.agent_hours if self.agent_hours else 0.0

    @property
    def wait_mean(self) -> float:
        waits = self.waits
        return sum(waits) / len(waits) if waits else 0.0

    @property
    def wait_p95(self) -> float:
        ordered = sorted(self.waits)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    # -- per window and per phase --------------------------------------------------------------------
    def _merge(self, edges: Sequence[float], names: Sequence[str] | None = None) -> list[Bucket]:
        n = len(self.campaigns)
        out = [Bucket(a, b, names[i] if names else "", [0] * n, [0] * n, [0] * n)
               for i, (a, b) in enumerate(itertools.pairwise(edges))]
        starts = [b.start for b in out]
        for seg in self.segments:
            k = bisect.bisect_right(starts, seg.start) - 1
            if k >= 0:
                out[k].add(seg)
        return out

    def windows(self, width: float = REPORT_WINDOW) -> list[Bucket]:
        """Figures per clock window (default 15 minutes)."""
        end = self.scenario.duration
        edges = [i * width for i in range(math.ceil(end / width))] + [end]
        return self._merge(edges)

    def phases(self) -> list[Bucket]:
        return self._merge(self.scenario.boundaries(), [p.name for p in self.scenario.phases])

    def worst_window(self, width: float = REPORT_WINDOW, campaign: int | None = None) -> Bucket | None:
        """The window with the highest abandon rate (of one campaign, or all together); None without answers."""
        best: Bucket | None = None
        best_rate = -1.0
        for w in self.windows(width):
            answers = w.answers[campaign] if campaign is not None else sum(w.answers)
            abandons = w.abandons[campaign] if campaign is not None else sum(w.abandons)
            if answers and abandons / answers > best_rate:
                best, best_rate = w, abandons / answers
        return best

    def worst_window_rate(self, width: float = REPORT_WINDOW) -> float:
        """The highest abandon rate of any campaign in any window."""
        worst = 0.0
        for w in self.windows(width):
            for a, x in zip(w.answers, w.abandons, strict=True):
                if a:
                    worst = max(worst, x / a)
        return worst

    def summary(self) -> dict[str, float | int]:
        return {
            "calls_placed": self.calls_placed,
            "live_answers": self.live_answers,
            "connected": self.connected,
            "abandons": self.abandons,
            "abandon_rate": round(self.abandon_rate, 5),
            "occupancy": round(self.occupancy, 5),
            "answered_per_agent_hour": round(self.answered_per_agent_hour, 3),
            "attempts_per_agent_hour": round(self.attempts_per_agent_hour, 3),
            "worst_window_abandon_rate": round(self.worst_window_rate(), 5),
            "wait_mean": round(self.wait_mean, 4),
            "wait_p95": round(self.wait_p95, 4),
            "decisions": self.decisions,
        }


def simulate(config: SimConfig) -> SimResult:
    """Run one campaign in a constant world for config.duration simulated seconds."""
    result = simulate_scenario(config.scenario())
    result.config = config
    return result


class _Campaign:
    """One campaign's pacing state in the simulation."""

    __slots__ = ("abandons", "answers", "base", "counter", "estimators", "guard", "guard_prev", "guard_start",
                 "guard_x", "held", "inflight", "key", "policy", "refreshed", "res", "reserves", "rng", "spec",
                 "wanted")

    def __init__(self, spec: CampaignSpec, scenario: Scenario) -> None:
        self.spec = spec
        self.policy = spec.policy
        self.guard = spec.guard
        self.key = spec.name
        self.reserves = reserves(spec.policy)
        self.held = False  # its last claim: held by a legal rule (published to the others, as the runtime does)
        self.estimators = CampaignEstimators(ring_timeout=scenario.ring_timeout)
        self.counter = AbandonCounter()
        self.rng = random.Random(f"{scenario.seed}:callee:{spec.name}")
        self.inflight: dict[int, float] = {}  # call id -> placed at (until an agent takes it or it ends)
        self.res = CampaignResult(spec.name, spec.policy.mode)
        self.wanted = 0  # the new calls it last asked for (its published claim)
        self.base = (0, 0)  # legal-window (answers, abandons) at the last refresh
        self.answers = self.abandons = 0  # since the refresh
        self.refreshed = -math.inf
        self.guard_start = -math.inf  # the guard's current window: start, answers, abandons; previous answers
        self.guard_x = [0, 0]
        self.guard_prev: int | None = None

    def refresh(self, now: float, window: int) -> None:
        """Legal-window counts: rebuilt from the hourly buckets each minute, plus what happened since (summing 720
        buckets every tick would dominate the run time)."""
        if now - self.refreshed >= 60.0:
            self.base = self.counter.totals(now, window)
            self.answers = self.abandons = 0
            self.refreshed = now

    def roll_guard(self, now: float) -> None:
        """Start the guard's next clock window when `now` is past the current one."""
        assert self.guard is not None
        start = math.floor(now / self.guard) * self.guard
        if start != self.guard_start:
            self.guard_prev = self.guard_x[0] if self.guard_start != -math.inf else None
            self.guard_start, self.guard_x = start, [0, 0]


def simulate_scenario(scenario: Scenario) -> SimResult:
    """Run a scenario: every campaign paced as the runtime paces it (`plan_on_pool` on the shared agents)."""
    end = scenario.duration
    timeout = scenario.ring_timeout
    amd = scenario.amd_seconds
    grace = CONNECT_GRACE_SECONDS
    legal_window = window_for(scenario.jurisdiction)
    camps = [_Campaign(spec, scenario) for spec in scenario.campaigns]
    n_camps = len(camps)
    rng_agent = random.Random(f"{scenario.seed}:agent")
    cps_calls, cps_ms = cps_window(scenario.calls_per_second or 0.0)
    for c in camps:
        if cps_calls:
            c.estimators.originates.window = cps_ms / 1000
    trunk_originates = RecentOriginates(cps_ms / 1000 if cps_calls else 1.0)
    per_second = RecentOriginates()

    # Elementary segments: 15-minute windows cut at phase starts.
    edges = sorted({*(i * REPORT_WINDOW for i in range(math.ceil(end / REPORT_WINDOW))), *scenario.boundaries()[:-1]})
    segments = [Bucket(a, b, "", [0] * n_camps, [0] * n_camps, [0] * n_camps)
                for a, b in zip(edges, [*edges[1:], end], strict=True)]
    starts = [s.start for s in segments]

    def seg(t: float) -> Bucket:
        return segments[max(0, min(len(segments) - 1, bisect.bisect_right(starts, t) - 1))]

    def spread(a: float, b: float, per: float, attr: str) -> None:
        """Add `per` x the overlap of [a, b) with each segment to its `attr`."""
        if b <= a:
            return
        k = max(0, bisect.bisect_right(starts, a) - 1)
        while k < len(segments) and segments[k].start < b:
            s = segments[k]
            overlap = min(b, s.end) - max(a, s.start)
            if overlap > 0:
                setattr(s, attr, getattr(s, attr) + per * overlap)
            k += 1

    events: list[tuple[float, int, int, int]] = []
    seq = 0

    def push(at: float, kind: int, ref: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, ref))

    free = 0
    busy: dict[int, tuple[float, int]] = {}  # agent session -> (connect time, campaign index)
    busy_at: dict[int, float] = {}  # agent session -> connect time (the same sessions: read every tick)
    leaving: set[int] = set()  # sessions of busy agents who log off when their call ends (not counted by pacing)
    staffed = 0  # agents logged in (free + busy)
    staffed_since = 0.0
    owner: dict[int, int] = {}  # call id -> campaign index (ringing and waiting calls)
    waiting: deque[int] = deque()  # answered calls waiting for an agent, oldest first (one queue)
    answered_at: dict[int, float] = {}
    next_call = next_session = 0
    peak_channels = peak_cps = 0
    agentless = [c.policy.mode is PacingMode.AGENTLESS for c in camps]
    groups: dict[str, list[_Campaign]] = {}
    for c in camps:
        if c.spec.legal_campaign:
            groups.setdefault(c.spec.legal_campaign, []).append(c)
    dialing = {k: len(g) + scenario.legal_others for k, g in groups.items()}
    sums: dict[str, tuple[int, int]] = {}

    def set_staffed(now: float, count: int) -> None:
        nonlocal staffed, staffed_since
        spread(staffed_since, now, float(staffed), "staffed_seconds")
        staffed, staffed_since = count, now

    def connect(now: float, call_id: int, answered: float) -> None:
        nonlocal free, next_session
        i = owner.pop(call_id)
        c = camps[i]
        c.inflight.pop(call_id, None)
        free -= 1
        next_session += 1
        busy[next_session] = (now, i)
        busy_at[next_session] = now
        push(now + world.talk.sample(rng_agent) + world.wrapup.sample(rng_agent), _AGENT_FREE, next_session)
        c.res.waits.append(now - answered)
        c.counter.record(answered, False)
        c.answers += 1
        c.res.connected += 1

    world = scenario.world_at(0.0)
    world_until = scenario.steady_until(0.0)  # the world stays `world` until then
    push(0.0, _TICK, 0)
    while events:
        now, _, kind, ref = heapq.heappop(events)
        if now > end:
            break
        if kind == _TICK:
            if now >= world_until:
                world, world_until = scenario.world_at(now), scenario.steady_until(now)
            # Agents log in and out: idle agents leave at once, busy ones when their call ends.
            target = world.agents
            present = free + len(busy) - len(leaving)
            if target > present:
                back = min(len(leaving), target - present)
                for _ in range(back):
                    leaving.pop()
                free += target - present - back
            elif target < present:
                gone = min(free, present - target)
                free -= gone
                more = present - target - gone
                for session in busy:
                    if more <= 0:
                        break
                    if session not in leaving:
                        leaving.add(session)
                        more -= 1
            if free + len(busy) != staffed:
                set_staffed(now, free + len(busy))
            while waiting and free > 0:  # agents who just logged in take waiting callers
                call_id = waiting.popleft()
                connect(now, call_id, answered_at.pop(call_id))
            # Calls in flight towards the pool: placed, not yet with an agent (answered ones waiting included).
            in_use = sum(len(c.inflight) for c in camps) + len(busy)
            # (map over itertools.repeat: these ages are rebuilt every simulated second, a third of the run time as
            # generator expressions)
            pool_busy = tuple(map(sub, itertools.repeat(now), busy_at.values())) if not leaving else tuple(
                now - t for k, t in busy_at.items() if k not in leaving)
            if groups:  # members of a legal campaign pace on their part of its window (the runtime's figures.py)
                for c in camps:
                    c.refresh(now, legal_window)
                sums = {k: (scenario.history[0] + sum(c.base[0] + c.answers for c in g),
                            scenario.history[1] + sum(c.base[1] + c.abandons for c in g)) for k, g in groups.items()}
            for i, c in enumerate(camps):
                c.refresh(now, legal_window)
                if c.spec.legal_campaign:
                    legal = member_share(sums[c.spec.legal_campaign], dialing[c.spec.legal_campaign])
                else:
                    legal = (scenario.history[0] + c.base[0] + c.answers,
                             scenario.history[1] + c.base[1] + c.abandons)
                mine = tuple(map(sub, itertools.repeat(now), c.inflight.values()))
                ringing = mine if n_camps == 1 else tuple(map(sub, itertools.repeat(now), itertools.chain.from_iterable(
                    other.inflight.values() for other in camps)))
                common = {
                    "free_agents": free,
                    "busy_elapsed": pool_busy,
                    "ringing": ringing,
                    "abandons": legal[1],
                    "live_answers": legal[0],
                    "trunk_channel_limit": scenario.trunk_channels,
                    "trunk_channels_in_use": in_use,
                    "calls_per_second": float(cps_calls) if cps_calls else None,
                }
                # (power reads the estimates while its room under the cap is small: decide._power_within_room)
                if c.policy.mode is PacingMode.PREDICTIVE or (n_camps > 1 and not agentless[i]) or (
                        c.policy.mode is PacingMode.POWER and c.policy.enforce_cap):
                    state = c.estimators.state(now, **common)
                else:  # the other modes read no estimate: skip building the survival tables
                    state = PacingState(now=now, **common, originates_last_second=c.estimators.originates.count(now),
                                        ai_sessions_available=free if agentless[i] else 0)
                if cps_calls and n_camps > 1:  # the ceiling is the trunk's, all campaigns together
                    state = _with_originates(state, trunk_originates.count(now))
                guard = window = None
                if c.guard is not None:
                    c.roll_guard(now)
                    guard = AbandonGuard(round(c.guard / 60))
                    window = GuardWindow(c.guard_start, c.guard_x[0], c.guard_x[1], c.guard_prev or 0)
                others = [ShareClaim(o.key, len(o.inflight) + o.wanted, o.spec.weight, o.spec.priority,
                                     len(o.inflight), o.reserves, o.held) for o in camps if o is not c]
                plan = plan_on_pool(c.policy, state, key=c.key, mine=mine, others=others,
                                    legal=legal if scenario.legal_hold else None,
                                    weight=c.spec.weight, priority=c.spec.priority, guard=guard, window=window)
                decision = plan.decision
                c.wanted, c.reserves, c.held = plan.claim.demand, plan.claim.reserves, plan.claim.held
                res = c.res
                res.decisions += 1
                res.reasons[decision.reason] += 1
                if c.guard is not None and (plan.verdict.reason == GUARD_WINDOW or plan.verdict.scale < 1.0):
                    res.guarded += 1
                if decision.limited_by:
                    res.limited[decision.limited_by] += 1
                calls = plan.calls
                if not calls:
                    continue
                in_use += calls
                c.estimators.on_originate(now, calls)
                trunk_originates.record(now, calls)
                per_second.record(now, calls)
                peak_cps = max(peak_cps, per_second.count(now))
                bucket = seg(now)
                bucket.attempts[i] += calls
                res.calls_placed += calls
                rng = c.rng
                live_share = world.answer_rate
                machine_to = live_share + world.machine_rate
                busy_to = machine_to + world.busy
                failed_to = busy_to + world.failed
                for _ in range(calls):
                    next_call += 1
                    c.inflight[next_call] = now
                    owner[next_call] = i
                    r = rng.random()
                    if r < live_share:
                        ring = world.ring_live.sample(rng)
                        if ring < timeout:
                            push(now + ring, _ANSWER, next_call)
                            continue
                    elif r < machine_to:
                        ring = world.ring_machine.sample(rng)
                        if ring < timeout:
                            push(now + ring + amd, _NOT_LIVE, next_call)
                            continue
                    elif r < failed_to:
                        push(now + world.busy_ring.sample(rng), _NOT_LIVE, next_call)
                        continue
                    push(now + timeout, _NOT_LIVE, next_call)  # no answer, or an answer after the timeout
            peak_channels = max(peak_channels, sum(len(c.inflight) for c in camps) + len(busy))
            push(now + scenario.tick, _TICK, 0)
        elif kind == _NOT_LIVE:
            c = camps[owner.pop(ref)]
            c.estimators.on_no_live_answer(now, now - c.inflight.pop(ref))
        elif kind == _ANSWER:
            i = owner[ref]
            c = camps[i]
            c.estimators.on_live_answer(now, now - c.inflight[ref])
            c.res.live_answers += 1
            seg(now).answers[i] += 1
            if c.guard is not None:
                c.roll_guard(now)
                c.guard_x[0] += 1
            if free > 0:
                connect(now, ref, now)
            else:
                waiting.append(ref)
                answered_at[ref] = now
                push(now + grace, _GIVE_UP, ref)
        elif kind == _AGENT_FREE:
            started, i = busy.pop(ref)
            del busy_at[ref]
            camps[i].estimators.on_agent_free(now - started)
            camps[i].res.busy_seconds += now - started
            spread(started, now, 1.0, "busy_seconds")
            if ref in leaving:
                leaving.discard(ref)
                set_staffed(now, staffed - 1)
            else:
                free += 1
                while waiting and free > 0:
                    call_id = waiting.popleft()
                    connect(now, call_id, answered_at.pop(call_id))
        else:  # _GIVE_UP
            answered = answered_at.pop(ref, None)
            if answered is not None:  # still waiting: abandoned
                waiting.remove(ref)
                i = owner.pop(ref)
                c = camps[i]
                c.inflight.pop(ref, None)
                c.res.abandons += 1
                c.res.legal_peak = max(c.res.legal_peak, (scenario.history[1] + c.res.abandons)
                                       / (scenario.history[0] + c.res.live_answers))
                c.res.waits.append(now - answered)
                c.counter.record(answered, True)
                c.answers += 1
                c.abandons += 1
                seg(answered).abandons[i] += 1
                if c.guard is not None and math.floor(answered / c.guard) * c.guard == c.guard_start:
                    c.guard_x[1] += 1
    # Agents still on a call at the end were busy until the end; staffed time up to the end.
    for started, i in busy.values():
        camps[i].res.busy_seconds += end - started
        spread(started, end, 1.0, "busy_seconds")
    set_staffed(end, staffed)
    total_staffed = sum(s.staffed_seconds for s in segments)
    return SimResult(scenario, [c.res for c in camps], segments, total_staffed, peak_channels, peak_cps)


def _with_originates(state: PacingState, count: int) -> PacingState:
    return replace(state, originates_last_second=count)

