"""Campaigns on shared agents, the pure parts of dialer/runtime/shared.py: the pool's agents seen from the AMI
board (paused and logged-off agents at once, an agent in several queues once), the queue figures of the dashboard,
and the plan (whole-pool pacing, the split, the cap)."""

from __future__ import annotations

import dataclasses

import redis

from dialer.ami.protocol import Message
from dialer.pacing import PacingPolicy, PacingState, Survival
from dialer.pacing.guard import AbandonGuard
from dialer.pacing.sharing import ShareClaim
from dialer.runtime.agentpool import PoolCall, PoolSnapshot
from dialer.runtime.agents import AgentBoard
from dialer.runtime.shared import PoolView, SharedPacer, queue_figures


def item(queue: str, name: str, number: int, *, event: str = "QueueMember", in_call: bool = False,
         paused: bool = False, status: str = "1") -> Message:
    return Message([("Event", event), ("Queue", queue), ("Name" if event == "QueueMember" else "MemberName", name),
                    ("Interface", f"Local/{number}@agents/n"), ("StateInterface", f"Custom:{number}"),
                    ("InCall", "1" if in_call else "0"), ("Status", status), ("Paused", "1" if paused else "0")])


def board_of(queues: dict[str, list[int]], available: dict[str, int] | None = None) -> AgentBoard:
    board = AgentBoard()
    for queue, numbers in queues.items():
        board.on_poll("pbx", queue, [item(queue, f"Agent {n}", n) for n in numbers],
                      None if available is None else available.get(queue), now=0.0)
    return board


def _bare(board: AgentBoard) -> SharedPacer:
    """A pacer whose Redis client is never used (observe, plan and queue_figures are pure)."""
    return SharedPacer(redis.Redis(port=1), board, "pbx", lease_seconds=5.0)


def test_an_agent_in_several_queues_is_counted_once():
    board = board_of({"sales": [1, 2, 3], "support": [2, 3, 4], "vip": [9]})
    view = _bare(board).observe("sales", 0.0, None)
    assert view.queues == ("sales", "support") and view.free == 4  # agents 1-4, not 6
    assert _bare(board).observe("vip", 0.0, None).free == 1
    board.on_event("pbx", item("support", "Agent 2", 2, event="QueueMemberStatus", in_call=True, status="2"), 5.0)
    board.on_event("pbx", item("sales", "Agent 2", 2, event="QueueMemberStatus", in_call=True, status="2"), 5.0)
    view = _bare(board).observe("support", 10.0, None)
    assert view.free == 3 and view.busy_elapsed == (5.0,)  # the busy agent once


def test_pauses_and_log_offs_count_at_once_and_the_figures_add_up():
    board = board_of({"sales": [1, 2, 3, 4]}, {"sales": 4})
    board.on_event("pbx", item("sales", "Agent 1", 1, event="QueueMemberStatus", in_call=True, status="2"), 1.0)
    board.on_event("pbx", item("sales", "Agent 2", 2, event="QueueMemberPause", paused=True), 1.0)
    figures = queue_figures(board, "sales", 2.0)
    assert (figures.staffed, figures.free, figures.on_call, figures.wrapup, figures.paused) == (4, 2, 1, 0, 1)
    board.on_event("pbx", item("sales", "Agent 3", 3, event="QueueMemberRemoved"), 2.0)  # logged off
    assert _bare(board).observe("sales", 2.0, None).free == 1
    figures = queue_figures(board, "sales", 2.0)
    assert (figures.staffed, figures.free, figures.on_call, figures.paused) == (3, 1, 1, 1)
    # the poll says 0 available (agent 4 in wrap-up): held back from free, shown as wrap-up
    board.on_poll("pbx", "sales", [item("sales", "Agent 1", 1, in_call=True, status="2"),
                                   item("sales", "Agent 2", 2, paused=True), item("sales", "Agent 4", 4)], 0, 3.0)
    figures = queue_figures(board, "sales", 3.0)
    assert (figures.staffed, figures.free, figures.on_call, figures.wrapup, figures.paused) == (3, 0, 1, 1, 1)


def flat() -> Survival:
    return Survival(tuple(max(0.0, 1 - i / 30) for i in range(31)), 1.0, 15.0)


def state() -> PacingState:
    return PacingState(now=0.0, free_agents=99, ringing=(), answer_rate=0.5, ring_answered=flat(),
                       ring_other=flat(), handle=flat())


def test_the_plan_paces_the_whole_pool_and_takes_its_share():
    p = _bare(AgentBoard())
    view = PoolView(("q",), 6, ())
    policy = PacingPolicy(mode="progressive")
    other = PoolSnapshot(0, (), {"t/b": ShareClaim("t/b", 6)})  # b wants the 6 agents too
    plan = p.plan("t/a", {}, policy, state(), view, other, legal=(0, 0), window_label="24 h", guard=AbandonGuard())
    assert (plan.calls, plan.max_total, plan.max_mine) == (3, 3, 3)
    assert plan.claim.reserves  # progressive: the others leave its slice to it
    # b (progressive too) already has 4 calls in flight: a may place 2 (6 free agents, 4 awaited by b's calls)
    busy = PoolSnapshot(1000, tuple(PoolCall("t/b", 0) for _ in range(4)),
                        {"t/b": ShareClaim("t/b", 2, reserves=True)})
    plan = p.plan("t/a", {}, policy, state(), view, busy, legal=(0, 0), window_label="24 h", guard=AbandonGuard())
    assert plan.calls == 2 and plan.pool_in_flight == 4 and plan.max_total == 6


def test_a_progressive_campaign_next_to_a_predictive_one_gets_its_share():
    """Issue 15 s.3: paced on the whole pool, a progressive campaign next to a predictive one with more calls in
    flight than free agents placed nothing; it now gets its slice of the free agents, and the predictive campaign
    paces on the agents left."""
    p = _bare(AgentBoard())
    view = PoolView(("q",), 6, ())
    # d: 20 calls in flight at 5% live answers (about 1 answer expected, more than 6 with P < 1e-4: 6 left to them)
    flooded = PoolSnapshot(1000, tuple(PoolCall("t/d", 0) for _ in range(20)), {"t/d": ShareClaim("t/d", 20)})
    low = dataclasses.replace(state(), answer_rate=0.05)
    roomy = PoolView(("q",), 18, ())
    plan = p.plan("t/a", {}, PacingPolicy(mode="progressive"), low, roomy, flooded, legal=(0, 0),
                  window_label="24 h", guard=AbandonGuard())
    assert plan.calls == 9 and plan.max_mine == 9  # half the 18 free agents (equal weights)
    # the agents d's calls will want are left to them: at 50% live answers (10 expected of 20) none is left for a
    assert p.plan("t/a", {}, PacingPolicy(mode="progressive"), state(), view, flooded, legal=(0, 0),
                  window_label="24 h", guard=AbandonGuard()).calls == 0
    # d's pacing leaves a's slice to it until a's calls fill it: 3 of the 6 free agents while a has none in flight
    predictive = PacingPolicy(mode="predictive")
    alone = p.plan("t/d", {}, predictive, state(), view, PoolSnapshot(1000, (), {}), legal=(1000, 0),
                   window_label="24 h", guard=AbandonGuard())
    waiting = PoolSnapshot(1000, (), {"t/a": ShareClaim("t/a", 3, reserves=True)})
    beside = p.plan("t/d", {}, predictive, state(), view, waiting, legal=(1000, 0), window_label="24 h",
                    guard=AbandonGuard())
    assert 0 < beside.decision.wanted < alone.decision.wanted
    heavier = p.plan("t/a", {"pacing_weight": 2.0}, PacingPolicy(mode="progressive"), low, roomy, flooded,
                     legal=(0, 0), window_label="24 h", guard=AbandonGuard())
    assert heavier.calls == 12  # weights 2:1 of 18 free agents (and 18 less the 6 left to d's calls)


def test_over_the_cap_power_dials_only_for_reserved_agents_and_priority_wins():
    p = _bare(AgentBoard())
    view = PoolView(("q",), 4, ())
    snap = PoolSnapshot(0, (), {})
    plan = p.plan("t/a", {}, PacingPolicy(mode="power", power_ratio=3), state(), view, snap, legal=(93, 47),
                  window_label="24 h window", guard=AbandonGuard())
    assert plan.calls == 4 and plan.decision.reason == "cap-reached" and "47 of 93" in plan.verdict.text
    low = PoolSnapshot(0, (), {"t/low": ShareClaim("t/low", 10, 1.0, 0)})
    plan = p.plan("t/high", {"pacing_priority": 1}, PacingPolicy(mode="progressive"), state(), view, low,
                  legal=(0, 0), window_label="24 h", guard=AbandonGuard())
    assert plan.calls == 4  # the higher priority campaign is served first


def test_power_cut_by_a_small_room_says_why():
    """Issue 15: with room for one abandon under the cap, power places fewer lines than its ratio (decide's exact
    tail bound on its calls in flight), and the dashboard says why (reason `room`)."""
    p = _bare(AgentBoard())
    view = PoolView(("q",), 4, ())
    window = dataclasses.replace(state(), live_answers=40, abandons=0)
    plan = p.plan("t/a", {}, PacingPolicy(mode="power", power_ratio=2), window, view, PoolSnapshot(0, (), {}),
                  legal=(40, 0), window_label="24 h", guard=AbandonGuard())
    assert 4 <= plan.calls < 8
    reason, why = p.reason("t/a")
    assert reason == "room" and "room for 1 more abandon under the cap" in why
