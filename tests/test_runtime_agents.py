"""Agent state from AMI queue events and polls (pure)."""

from __future__ import annotations

from dialer.ami.protocol import Message
from dialer.runtime.agents import AgentBoard


def member(name: str, *, in_call: bool = False, status: str = "1", paused: bool = False,
           event: str = "QueueMemberStatus") -> Message:
    return Message([("Event", event), ("Queue", "sales"), ("MemberName" if event != "QueueMember" else "Name", name),
                    ("InCall", "1" if in_call else "0"), ("Status", status), ("Paused", "1" if paused else "0")])


def test_events_take_agents_at_once_and_report_handle_times():
    handled: list[tuple[str, float]] = []
    board = AgentBoard(on_handle_time=lambda q, s: handled.append((q, s)))
    board.on_poll("pbx1", "sales", [member(n, event="QueueMember") for n in ("a", "b", "c")], 3, now=0.0)
    assert board.view("sales", 0.0).free == 3
    board.on_event("pbx1", member("a", in_call=True, status="2"), now=1.0)
    view = board.view("sales", 5.0)
    assert (view.free, view.busy_elapsed, view.staffed) == (2, (4.0,), 3)
    board.on_event("pbx1", member("a"), now=61.0)  # the call ended: a handle time of 60 s
    assert handled == [("sales", 60.0)]
    # the poll during wrap-up says only 2 are available: the smaller view wins until the next poll says 3
    board.on_poll("pbx1", "sales", [member(n, event="QueueMember") for n in ("a", "b", "c")], 2, now=62.0)
    assert board.view("sales", 62.0).free == 2
    board.on_poll("pbx1", "sales", [member(n, event="QueueMember") for n in ("a", "b", "c")], 3, now=70.0)
    assert board.view("sales", 70.0).free == 3


def test_paused_unavailable_and_logged_off_agents_do_not_count():
    board = AgentBoard()
    board.on_poll("pbx1", "sales", [member("a", event="QueueMember"), member("b", paused=True, event="QueueMember"),
                                     member("c", status="5", event="QueueMember")], None, now=0.0)
    assert (board.view("sales", 0.0).free, board.view("sales", 0.0).staffed) == (1, 1)
    board.on_poll("pbx1", "sales", [], None, now=1.0)  # everyone logged off
    assert board.view("sales", 1.0).staffed == 0
    board.on_poll("pbx2", "sales", [member("x", event="QueueMember")], 1, now=1.0)
    assert board.view("sales", 1.0).free == 1 and board.view("sales", 1.0, servers={"pbx1"}).free == 0
    board.forget_server("pbx2")
    assert board.view("sales", 1.0).free == 0
