"""The simulator decides as the runtime does: every decision a simulated day takes, replayed through the runtime's
SharedPacer.plan on the same observation, gives the same calls, decision and verdict (issue 15)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import redis

import dialer.simulate as simulate_module
from dialer.pacing.guard import AbandonGuard
from dialer.pacing.pool import PoolPlan, plan_on_pool
from dialer.pacing.sharing import ShareClaim
from dialer.runtime.agentpool import PoolCall, PoolSnapshot
from dialer.runtime.agents import AgentBoard
from dialer.runtime.shared import PoolView, SharedPacer
from dialer.scenario import scenario_from_mapping

# A predictive and a progressive campaign on one small queue (mixed modes), weights 2:1, a 15-minute guard on the
# predictive one: the legal hold (cap-room, cap-reached), the guard, the slices and the split all occur.
DAY = {
    "duration": "2h",
    "world": {"agents": 10, "answer_rate": 0.3, "talk": {"kind": "lognormal", "mean": 60, "sigma": 0.6}},
    "phases": [{"at": "1h", "agents": 5}],
    "campaigns": [
        {"name": "t/sales", "mode": "predictive", "weight": 2, "guard": "1h"},
        {"name": "t/survey", "mode": "progressive"},
    ],
}


def _record(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, Any], PoolPlan]]:
    seen: list[tuple[dict[str, Any], PoolPlan]] = []

    def spy(policy: Any, state: Any, **kwargs: Any) -> PoolPlan:
        plan = plan_on_pool(policy, state, **kwargs)
        seen.append(({"policy": policy, "state": state, **kwargs}, plan))
        return plan

    monkeypatch.setattr(simulate_module, "plan_on_pool", spy)
    return seen


def _runtime_plan(call: dict[str, Any]) -> Any:
    """The runtime's plan on the simulator's observation: the pool's free and busy agents (PoolView), every call in
    flight with its campaign and age and the other campaign's published demand (PoolSnapshot)."""
    state, key, mine = call["state"], call["key"], list(call["mine"])
    now_ms = 10_000_000
    rest = Counter(state.ringing)
    rest.subtract(Counter(mine))
    (other,) = call["others"]  # two campaigns: the other one's calls are the rest of the ringing ones
    ages = {key: mine, other.key: list(rest.elements())}
    assert len(ages[other.key]) == other.in_flight
    calls = tuple(PoolCall(k, now_ms - round(a * 1000)) for k, xs in ages.items() for a in xs)
    demands = {other.key: ShareClaim(other.key, other.demand - other.in_flight, other.weight, other.priority,
                                     reserves=other.reserves)}
    pacer = SharedPacer(redis.Redis(port=1), AgentBoard(), "pbx", lease_seconds=5.0)  # plan() never reaches Redis
    config = {"pacing_weight": call["weight"], "pacing_priority": call["priority"]}
    return pacer.plan(key, config, call["policy"], state, PoolView(("q",), state.free_agents, state.busy_elapsed),
                      PoolSnapshot(now_ms, calls, demands), legal=call["legal"],
                      window_label=call.get("window_label", "legal window"), guard=call["guard"] or AbandonGuard(),
                      window=call["window"])


# The same two campaigns declared one legal campaign (dialer/pacing/legal.py): each paces on its part of the room.
LEGAL_DAY = {**DAY, "campaigns": [{**c, "legal_campaign": "offer"} for c in DAY["campaigns"]]}


@pytest.mark.parametrize("day", [DAY, LEGAL_DAY], ids=["own-windows", "legal-campaign"])
def test_simulated_decisions_are_the_runtimes(monkeypatch: pytest.MonkeyPatch, day: dict[str, Any]) -> None:
    seen = _record(monkeypatch)
    result = simulate_module.simulate_scenario(scenario_from_mapping(day))
    assert len(seen) == 2 * (2 * 3600 + 1)
    reasons = Counter(plan.decision.reason for _, plan in seen)
    verdicts = Counter(plan.verdict.reason for _, plan in seen)
    assert reasons["predictive"] + reasons["backoff"] > 0 and reasons["progressive"] > 0
    assert verdicts["cap-room"] > 0 and verdicts["guard-window"] + verdicts[""] > 0
    _sales, survey = result.campaigns
    assert survey.calls_placed > 100 and survey.abandons == 0  # the progressive campaign is not starved
    compared = 0
    for call, plan in seen[::7]:  # every 7th decision of either campaign (the same code: no need for all 14,402)
        runtime = _runtime_plan(call)
        assert (runtime.calls, runtime.max_total, runtime.max_mine) == (plan.calls, plan.lines, plan.share)
        assert runtime.decision == plan.decision and runtime.verdict == plan.verdict
        assert runtime.claim == plan.claim
        compared += 1
    assert compared > 1000
