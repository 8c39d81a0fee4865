"""Discrete-event simulation of one campaign driving the real pacing code.

A heap of timed events on a simulated clock: pacing ticks, call outcomes, answers, agents
freeing up, callers giving up after the 2 s connect grace. Callees and agents behave as in
the sandbox PBX (`dialer.sandbox.behaviour`); pacing is `dialer.pacing.decide`, fed by the
same `CampaignEstimators` the runtime uses, so what the simulation shows is what the engine
does. Seeded: the same config gives the same result, and callee fates are drawn from their
own random stream so two modes face the same sequence of callees.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field

from dialer.pacing import (
    CONNECT_GRACE_SECONDS,
    AbandonCounter,
    CampaignEstimators,
    PacingMode,
    PacingPolicy,
    RecentOriginates,
    cps_window,
    decide,
    window_for,
)
from dialer.sandbox.behaviour import AgentProfile, CalleeProfile, Duration, Fate

__all__ = ["SimConfig", "SimResult", "simulate"]

# Event kinds (ints: compared in heap ties after time and sequence never happen, seq is unique).
_TICK, _ANSWER, _NOT_LIVE, _AGENT_FREE, _GIVE_UP = range(5)
_AMD_SECONDS = 3.0  # an answering machine is recognised and hung up after this long


@dataclass(frozen=True)
class SimConfig:
    mode: PacingMode = PacingMode.PREDICTIVE
    agents: int = 50
    answer_rate: float = 0.15  # live (human) answers per attempt
    talk_mean: float = 90.0
    talk_sigma: float = 0.8  # lognormal shape of talk time
    wrapup_mean: float = 5.0
    duration: float = 8 * 3600.0
    seed: int = 1
    cap: float = 0.03
    ratio: float = 2.0
    jurisdiction: str = "US"
    machine_share: float = 0.1  # share of answers that are answering machines
    busy_share: float = 0.1
    ring_median: float = 6.0
    ring_timeout: float = 25.0
    trunk_channels: int | None = None
    calls_per_second: float | None = None
    tick: float = 1.0
    policy: PacingPolicy | None = None  # overrides mode/cap/ratio when given

    def pacing_policy(self) -> PacingPolicy:
        if self.policy is not None:
            return self.policy
        return PacingPolicy(mode=self.mode, abandon_cap=self.cap, power_ratio=self.ratio)

    def callee_profile(self) -> CalleeProfile:
        answer = self.answer_rate / (1.0 - self.machine_share)
        return CalleeProfile(
            answer=answer,
            busy=min(self.busy_share, 1.0 - answer),
            congestion=min(0.02, max(0.0, 1.0 - answer - self.busy_share)),
            failed=0.0,
            machine=self.machine_share,
            optout=0.0,
            ring=Duration.lognormal(self.ring_median, 0.5, low=1.0, high=60.0),
        )

    def agent_profile(self) -> AgentProfile:
        talk_median = self.talk_mean / math.exp(self.talk_sigma**2 / 2)
        return AgentProfile(
            ring=Duration.fixed(0.0),
            talk=Duration.lognormal(talk_median, self.talk_sigma, low=1.0, high=4 * 3600.0),
            wrapup=Duration.lognormal(self.wrapup_mean / math.exp(0.125), 0.5, high=600.0),
        )


@dataclass
class SimResult:
    config: SimConfig
    calls_placed: int = 0
    live_answers: int = 0
    connected: int = 0
    abandons: int = 0
    busy_seconds: float = 0.0
    waits: list[float] = field(default_factory=list, repr=False)
    decisions: int = 0
    peak_channels: int = 0  # most trunk channels in use at once (ringing + waiting + connected)
    peak_originates_per_second: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    limited: Counter[str] = field(default_factory=Counter)

    @property
    def agent_hours(self) -> float:
        return self.config.agents * self.config.duration / 3600.0

    @property
    def occupancy(self) -> float:
        """Share of staffed time agents spent handling calls (talk + wrap-up)."""
        staffed = self.config.agents * self.config.duration
        return self.busy_seconds / staffed if staffed else 0.0

    @property
    def abandon_rate(self) -> float:
        return self.abandons / self.live_answers if self.live_answers else 0.0

    @property
    def answered_per_agent_hour(self) -> float:
        return self.connected / self.agent_hours if self.agent_hours else 0.0

    @property
    def wait_mean(self) -> float:
        return sum(self.waits) / len(self.waits) if self.waits else 0.0

    @property
    def wait_p95(self) -> float:
        if not self.waits:
            return 0.0
        ordered = sorted(self.waits)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def summary(self) -> dict[str, float | int]:
        return {
            "calls_placed": self.calls_placed,
            "live_answers": self.live_answers,
            "connected": self.connected,
            "abandons": self.abandons,
            "abandon_rate": round(self.abandon_rate, 5),
            "occupancy": round(self.occupancy, 5),
            "answered_per_agent_hour": round(self.answered_per_agent_hour, 3),
            "wait_mean": round(self.wait_mean, 4),
            "wait_p95": round(self.wait_p95, 4),
            "decisions": self.decisions,
        }


def simulate(config: SimConfig) -> SimResult:
    """Run one campaign for config.duration simulated seconds."""
    if config.agents < 0:
        raise ValueError("agents must be >= 0")
    if not 0.0 < config.answer_rate <= 1.0 - config.machine_share:
        raise ValueError(f"answer rate must be in (0, {1.0 - config.machine_share:.2f}] with this machine share")
    policy = config.pacing_policy()
    callee = config.callee_profile()
    agent = config.agent_profile()
    rng_callee = random.Random(f"{config.seed}:callee")
    rng_agent = random.Random(f"{config.seed}:agent")
    estimators = CampaignEstimators(ring_timeout=config.ring_timeout)
    # The calls-per-second ceiling as the runtime applies it: so many calls per window (0.5/s: 1 per 2 s).
    cps_calls, cps_ms = cps_window(config.calls_per_second or 0.0)
    if cps_calls:
        estimators.originates.window = cps_ms / 1000
    per_second = RecentOriginates()  # for the peak figure
    counter = AbandonCounter()
    window = window_for(config.jurisdiction)
    agentless = policy.mode is PacingMode.AGENTLESS
    end = config.duration
    timeout = config.ring_timeout
    grace = CONNECT_GRACE_SECONDS
    result = SimResult(config)
    waits = result.waits

    events: list[tuple[float, int, int, int]] = []
    seq = 0

    def push(at: float, kind: int, ref: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, ref))

    free = config.agents
    busy: dict[int, float] = {}  # agent session id -> connect time
    inflight: dict[int, float] = {}  # call id -> placed at
    waiting: deque[int] = deque()  # call ids answered, waiting for an agent (oldest first)
    answered_at: dict[int, float] = {}  # waiting call id -> answer time
    next_call = next_session = 0
    # Abandon counts over the regulatory window: rebuilt from the hourly buckets each minute,
    # plus what happened since (summing 720 buckets every tick would dominate the run time).
    base_answers = base_abandons = delta_answers = delta_abandons = 0
    refreshed = -math.inf

    def connect(now: float, call_id: int, answered: float) -> None:
        nonlocal free, next_session, delta_answers
        free -= 1
        next_session += 1
        plan = agent.sample(rng_agent)
        busy[next_session] = now
        push(now + plan.ring_seconds + plan.talk_seconds + plan.wrapup_seconds, _AGENT_FREE, next_session)
        waits.append(now - answered)
        counter.record(answered, False)
        delta_answers += 1
        result.connected += 1

    push(0.0, _TICK, 0)
    while events:
        now, _, kind, ref = heapq.heappop(events)
        if now > end:
            break
        if kind == _TICK:
            if now - refreshed >= 60.0:
                base_answers, base_abandons = counter.totals(now, window)
                delta_answers = delta_abandons = 0
                refreshed = now
            state = estimators.state(
                now,
                free_agents=free,
                busy_elapsed=[now - s for s in busy.values()],
                ringing=[now - s for s in inflight.values()],
                abandons=base_abandons + delta_abandons,
                live_answers=base_answers + delta_answers,
                trunk_channel_limit=config.trunk_channels,
                trunk_channels_in_use=len(inflight) + len(busy) + len(waiting),
                calls_per_second=float(cps_calls) if cps_calls else None,
                ai_sessions_available=free if agentless else 0,
            )
            decision = decide(policy, state)
            result.decisions += 1
            result.reasons[decision.reason] += 1
            if decision.limited_by:
                result.limited[decision.limited_by] += 1
            if decision.calls:
                estimators.on_originate(now, decision.calls)
                per_second.record(now, decision.calls)
                result.peak_originates_per_second = max(result.peak_originates_per_second, per_second.count(now))
            for _ in range(decision.calls):
                next_call += 1
                inflight[next_call] = now
                result.calls_placed += 1
                plan = callee.sample(rng_callee)
                fate = plan.fate
                if fate is Fate.ANSWER and plan.ring_seconds < timeout:
                    if plan.machine:
                        push(now + plan.ring_seconds + _AMD_SECONDS, _NOT_LIVE, next_call)
                    else:
                        push(now + plan.ring_seconds, _ANSWER, next_call)
                elif fate in (Fate.BUSY, Fate.CONGESTION, Fate.FAILED):
                    push(now + plan.ring_seconds, _NOT_LIVE, next_call)
                else:  # no answer, or an answer that would come after the originate timeout
                    push(now + timeout, _NOT_LIVE, next_call)
            result.peak_channels = max(result.peak_channels, len(inflight) + len(busy) + len(waiting))
            push(now + config.tick, _TICK, 0)
        elif kind == _NOT_LIVE:
            estimators.on_no_live_answer(now, now - inflight.pop(ref))
        elif kind == _ANSWER:
            estimators.on_live_answer(now, now - inflight.pop(ref))
            result.live_answers += 1
            if free > 0:
                connect(now, ref, now)
            else:
                waiting.append(ref)
                answered_at[ref] = now
                push(now + grace, _GIVE_UP, ref)
        elif kind == _AGENT_FREE:
            started = busy.pop(ref)
            estimators.on_agent_free(now - started)
            result.busy_seconds += now - started
            free += 1
            while waiting and free > 0:
                call_id = waiting.popleft()
                answered = answered_at.pop(call_id, None)
                if answered is not None:
                    connect(now, call_id, answered)
        else:  # _GIVE_UP
            answered = answered_at.pop(ref, None)
            if answered is not None:  # still waiting: abandoned
                waiting.remove(ref)
                result.abandons += 1
                waits.append(now - answered)
                counter.record(answered, True)
                delta_answers += 1
                delta_abandons += 1
    # Agents still on a call at the end were busy until the end.
    result.busy_seconds += sum(end - started for started in busy.values())
    return result

