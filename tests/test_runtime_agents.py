"""Agent state from AMI queue events and polls (pure)."""

from __future__ import annotations

from dialer.ami.protocol import Message
from dialer.runtime.agents import DEFAULT_WRAPUP, AgentBoard, WrapupTable


def member(name: str, *, in_call: bool = False, status: str = "1", paused: bool = False,
           event: str = "QueueMemberStatus") -> Message:
    return Message([("Event", event), ("Queue", "sales"), ("MemberName" if event != "QueueMember" else "Name", name),
                    ("InCall", "1" if in_call else "0"), ("Status", status), ("Paused", "1" if paused else "0")])


def test_events_take_agents_at_once_and_report_handle_times():
    handled: list[tuple[str, float]] = []
    board = AgentBoard(on_handle_time=lambda q, s: handled.append((q, s)), wrapup=WrapupTable(0.0))  # no wrap-up
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


def agent_event(event: str, name: str, **extra: str) -> Message:
    return Message([("Event", event), ("Queue", "sales"), ("MemberName", name),
                    ("Interface", f"Local/{name}@agents/n"), *extra.items()])


def test_an_agent_in_wrap_up_is_not_free_whatever_asterisk_reports():
    """Asterisk 22 reports a member in wrap-up Available 1, Status 1, InCall 0: the board waits out the queue's
    wrap-up from the end of the call, then counts it free (and only then reports its handle time, wrap-up included)."""
    handled: list[float] = []
    board = AgentBoard(on_handle_time=lambda q, s: handled.append(s), wrapup=WrapupTable(5.0, {"fast": 0.0}))
    board.on_poll("pbx1", "sales", [member("a", event="QueueMember")], 1, now=0.0)
    board.on_event("pbx1", agent_event("AgentCalled", "a"), now=1.0)
    assert board.view("sales", 1.0).free == 0  # offered a call: taken at once
    board.on_event("pbx1", agent_event("AgentConnect", "a", HoldTime="0"), now=1.1)
    board.on_event("pbx1", agent_event("AgentComplete", "a", TalkTime="9", Reason="caller"), now=10.0)  # no channel
    board.on_poll("pbx1", "sales", [member("a", event="QueueMember")], 1, now=10.5)  # "Available: 1", InCall 0
    board.on_event("pbx1", member("a"), now=10.6)
    for t in (10.0, 12.0, 14.9):
        assert board.view("sales", t).free == 0, t
    assert board.view("sales", 15.0).free == 1 and handled == [14.0]
    board.on_poll("pbx1", "fast", [member("b", event="QueueMember")], 1, now=0.0)
    board.on_event("pbx1", Message([("Event", "AgentComplete"), ("Queue", "fast"), ("MemberName", "b")]), now=3.0)
    assert board.view("fast", 3.0).free == 1  # a queue without wrap-up


def test_the_poll_alone_sees_a_call_end_and_a_member_level_wrapup_wins():
    board = AgentBoard(wrapup=WrapupTable(5.0))
    board.on_poll("pbx1", "sales", [member("a", in_call=True, status="2", event="QueueMember")], 0, now=0.0)
    board.on_poll("pbx1", "sales", [member("a", event="QueueMember")], 1, now=20.0)  # events lost: the poll
    assert board.view("sales", 24.0).free == 0 and board.view("sales", 25.0).free == 1
    own = Message([("Event", "QueueMember"), ("Queue", "sales"), ("Name", "b"), ("InCall", "0"), ("Status", "1"),
                   ("Paused", "0"), ("Wrapuptime", "30")])
    board.on_event("pbx1", agent_event("AgentComplete", "b"), now=100.0)
    board.on_poll("pbx1", "sales", [member("a", event="QueueMember"), own], 2, now=100.5)
    assert board.view("sales", 120.0).free == 1 and board.view("sales", 130.0).free == 2


def test_a_fresh_board_places_asterisks_last_call_on_its_own_clock():
    """A dialer that starts while an agent wraps up: LastCall (epoch seconds at the end of its last call) says so."""
    board = AgentBoard(wrapup=WrapupTable(5.0))
    item = Message([("Event", "QueueMember"), ("Queue", "sales"), ("Name", "a"), ("LastCall", "1000"),
                    ("InCall", "0"), ("Status", "1"), ("Paused", "0")])
    board.on_poll("pbx1", "sales", [item], 1, now=50.0, wall=1002.0)  # ended 2 s ago
    assert board.view("sales", 52.9).free == 0 and board.view("sales", 53.0).free == 1


def test_wrapup_settings_parse_and_match_the_queues_sample():
    import re
    from pathlib import Path

    import pytest

    table = WrapupTable.parse(5.0, "solo=5, solo0=0")
    assert (table.of("solo0"), table.of("solo"), table.of("other")) == (0.0, 5.0, 5.0)
    for bad in ("solo", "solo=x", "=3", "solo=-1"):
        with pytest.raises(ValueError):
            WrapupTable.parse(5.0, bad)
    sample = (Path(__file__).parents[1] / "asterisk" / "queues.conf.sample").read_text()
    found = re.search(r"^wrapuptime\s*=\s*(\d+)", sample, re.M)
    assert found is not None and float(found.group(1)) == DEFAULT_WRAPUP  # our default is the queue we ship


def test_queue_member_status_as_the_lab_sends_it_starts_the_wrap_up():
    """Real Asterisk 22 (the lab): QueueMemberStatus says Status 2 then 1 with InCall 0 both times; the device going
    back to NOT_INUSE ends the call even if its AgentComplete was lost."""
    board = AgentBoard(wrapup=WrapupTable(5.0))
    board.on_poll("pbx1", "sales", [member("a", event="QueueMember")], 1, now=0.0)
    board.on_event("pbx1", member("a", status="2"), now=1.0)
    assert board.view("sales", 2.0).free == 0
    board.on_event("pbx1", member("a"), now=10.0)
    assert board.view("sales", 14.9).free == 0 and board.view("sales", 15.0).free == 1
