"""The call tracker on the real Asterisk 22 transcript, in its order and in shuffled orders."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.ami.calls import CallTracker, OptOut, Outcome, plan_reconciliation
from dialer.ami.protocol import Message, Parser
from tests.ami_transcript import load_transcript

CALLS = ["busy", "congestion", "noanswer", "answer20", "answer4", "answer10"]
EXPECTED = {
    "busy": ("busy", 17, False),
    "congestion": ("congestion", 34, False),
    "noanswer": ("no_answer", 19, False),
    "answer20": ("answered", 16, True),
    "answer4": ("answered", 16, True),
    "answer10": ("answered", 16, True),
}


def transcript_messages() -> list[tuple[float, Message]]:
    _, raw = load_transcript()
    parser = Parser(expect_banner=False)
    out = []
    for t, lines in raw:
        (message,) = parser.feed(("\r\n".join(lines) + "\r\n\r\n").encode())
        out.append((t, message))
    return out


def new_tracker(calls=CALLS) -> CallTracker:
    tracker = CallTracker()
    for call in calls:
        # In the transcript, ActionID is orig-<id> while DIALER_CALL_ID and UserEvent CallID are <id>.
        tracker.register(call, "camp1", "acme", "+33100000000", 1000.0, action_id=f"orig-{call}")
    return tracker


def replay(tracker: CallTracker, messages, start: float = 1000.0) -> list:
    records = []
    for t, message in messages:
        records += tracker.feed(message, start + t)
    return records


def by_call(records) -> dict[str, Outcome]:
    outcomes = [r for r in records if isinstance(r, Outcome)]
    assert len(outcomes) == len({o.call_id for o in outcomes}), "an attempt produced two outcomes"
    return {o.call_id: o for o in outcomes}


def test_real_transcript_outcomes():
    tracker = new_tracker()
    outcomes = by_call(replay(tracker, transcript_messages()))
    assert len(tracker) == 0
    assert set(outcomes) == set(CALLS)
    for call, (disposition, cause, connected) in EXPECTED.items():
        outcome = outcomes[call]
        assert outcome.disposition == disposition, call
        assert outcome.cause == cause, call
        assert (outcome.connected_at is not None) is connected, call
        assert (outcome.answered_at is not None) is connected, call
        assert outcome.campaign_id == "camp1" and outcome.contact == "+33100000000"
    # Times come from the transcript: answer4 answered at t=1.0, agent at 1.0, ended at 5.51.
    a4 = outcomes["answer4"]
    assert (a4.answered_at, a4.connected_at, a4.ended_at) == (1001.0, 1001.0, 1005.51)
    assert a4.uniqueid == "1795416778.69"
    assert outcomes["noanswer"].ended_at == 1030.03
    assert outcomes["busy"].originate_reason == 5


def test_events_of_other_calls_are_ignored():
    tracker = new_tracker(["answer4"])
    outcomes = by_call(replay(tracker, transcript_messages()))
    assert set(outcomes) == {"answer4"}
    assert outcomes["answer4"].disposition == "answered"


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_originate_response_position_gives_the_same_outcomes(rng: random.Random):
    """OriginateResponse may come before or after Newstate/UserEvent/Hangup: move each anywhere."""
    messages = transcript_messages()
    responses = [m for m in messages if m[1].name == "OriginateResponse"]
    rest = [m for m in messages if m[1].name != "OriginateResponse"]
    for t, response in responses:
        rest.insert(rng.randrange(len(rest) + 1), (t, response))
    tracker = new_tracker()
    outcomes = by_call(replay(tracker, rest))
    outcomes_after_sweep = by_call(tracker.sweep(1000.0 + 3600))
    outcomes.update(outcomes_after_sweep)
    assert set(outcomes) == set(CALLS)
    for call, (disposition, _cause, connected) in EXPECTED.items():
        assert outcomes[call].disposition == disposition, call
        assert (outcomes[call].connected_at is not None) is connected


def call_messages(call: str) -> list[tuple[float, Message]]:
    """The messages of one call of the transcript, from its first channel to its end."""
    tracker_ids: set[str] = set()
    out = []
    for t, message in transcript_messages():
        ids = {message.get(k) for k in ("Uniqueid", "Linkedid", "DestLinkedid")} - {None}
        if message.get("Value") == call or message.get("CallID") == call or message.get("ActionID") == f"orig-{call}":
            tracker_ids |= {message.get("Linkedid")} - {None}
        if ids & tracker_ids or message.get("ActionID") == f"orig-{call}":
            out.append((t, message))
    return out


def renamed_user_event(template: Message, name: str, extra: list[tuple[str, str]] = ()) -> Message:
    fields = [(k, name if k == "UserEvent" else v) for k, v in template.fields]
    return Message(fields + list(extra))


def abandoned_call(event: str = "DialerAbandon", extra=()) -> list[tuple[float, Message]]:
    """answer20 as it would go if no agent answered within 2 s: the real messages up to the queue
    join, then our dialplan's UserEvent (same shape as its real DialerConnected) and the hangup."""
    messages = call_messages("answer20")
    join = next(i for i, (_, m) in enumerate(messages) if m.name == "QueueCallerJoin")
    connected = next(m for _, m in messages if m.name == "UserEvent")
    hangup = next(m for _, m in reversed(messages) if m.name == "Hangup" and m["Uniqueid"] == m["Linkedid"])
    head = messages[: join + 1]
    return [*head, (4.0, renamed_user_event(connected, event, list(extra))), (4.1, hangup)]


def test_abandoned_call():
    tracker = new_tracker(["answer20"])
    outcomes = by_call(replay(tracker, abandoned_call()))
    outcome = outcomes["answer20"]
    assert outcome.disposition == "abandoned" and outcome.abandoned
    assert outcome.answered_at == 1002.0 and outcome.connected_at is None
    assert outcome.ended_at == 1004.1


def test_opt_out_is_reported_at_once_and_wins_over_abandon():
    messages = abandoned_call("DialerOptOut", [("Digit", "9")])
    # the abandon message came first, then the keypress during the information message
    abandon = renamed_user_event(messages[-2][1], "DialerAbandon")
    messages.insert(len(messages) - 2, (3.9, abandon))
    tracker = new_tracker(["answer20"])
    records = []
    for t, message in messages[:-1]:
        records += tracker.feed(message, 1000 + t)
    (optout,) = records  # before the hangup: the opt-out must not wait for the line to clear
    assert isinstance(optout, OptOut)
    assert (optout.call_id, optout.contact, optout.tenant, optout.digit) == ("answer20", "+33100000000", "acme", "9")
    (outcome,) = tracker.feed(messages[-1][1], 1004.1)
    assert outcome.disposition == "opted_out" and outcome.abandoned


def test_machine():
    tracker = new_tracker(["answer20"])
    messages = abandoned_call("DialerMachine", [("AMDStatus", "MACHINE"), ("AMDCause", "LONGGREETING-1500-1500")])
    assert by_call(replay(tracker, messages))["answer20"].disposition == "machine"


def test_agent_complete_naming_the_caller_only_in_dest_fields():
    # (app_queue's DialEnd to the agent, which also says connected, is left out: only AgentComplete says it here)
    left_out = ("AgentConnect", "AgentComplete", "DialEnd")
    messages = [(t, m) for t, m in call_messages("answer4") if m.name not in left_out]
    complete = next(m for _, m in call_messages("answer4") if m.name == "AgentComplete")
    swapped = []
    for k, v in complete.fields:  # the agent side in Channel/Uniqueid/Linkedid, the caller in Dest*
        if k in ("Channel", "Uniqueid", "Linkedid"):
            swapped.append((k, complete["Dest" + k]))
        elif k.startswith("Dest") and k[4:] in ("Channel", "Uniqueid", "Linkedid"):
            swapped.append((k, complete[k[4:]]))
        else:
            swapped.append((k, v))
    agent_uid = complete["DestUniqueid"]
    swapped = [(k, "9999.1" if k == "Linkedid" else v) for k, v in swapped]  # no shared Linkedid to lean on
    hangup_at = next(i for i, (_, m) in enumerate(messages) if m.name == "Hangup" and m["Uniqueid"] == m["Linkedid"])
    messages.insert(hangup_at, (5.5, Message(swapped)))
    tracker = new_tracker(["answer4"])
    outcome = by_call(replay(tracker, messages))["answer4"]
    assert Message(swapped)["Uniqueid"] == agent_uid
    assert outcome.disposition == "answered" and outcome.connected_at == 1005.5


def test_register_twice_is_refused():
    tracker = new_tracker(["busy"])
    with pytest.raises(ValueError):
        tracker.register("busy", "c", "t", "+1", 0.0)


def core_show_channel(call_id: str, uniqueid: str, state: str = "6") -> Message:
    """A CoreShowChannel event as Asterisk 22 sends it with channelvars = DIALER_CALL_ID,DIALER_CAMPAIGN_ID."""
    return Message(
        [
            ("Event", "CoreShowChannel"),
            ("ActionID", "x-1"),
            ("Channel", f"PJSIP/trunk-{uniqueid}"),
            ("ChannelState", state),
            ("Uniqueid", uniqueid),
            ("Linkedid", uniqueid),
            ("ChanVariable", f"DIALER_CALL_ID={call_id}"),
            ("ChanVariable", "DIALER_CAMPAIGN_ID=camp1"),
            ("Application", "Queue"),
            ("Duration", "00:00:07"),
        ]
    )


def test_plan_reconciliation_is_pure():
    tracker = CallTracker()
    for call in ("a", "b", "c"):
        tracker.register(call, "camp1", "acme", "+33100000000", 0.0)
    tracker.get("c").linkedid = "77.1"  # known from an earlier event
    other = core_show_channel("not-ours", "55.1")
    by_linkedid = Message([("Event", "CoreShowChannel"), ("Uniqueid", "77.2"), ("Linkedid", "77.1")])
    plan = plan_reconciliation(tracker.in_flight(), [core_show_channel("a", "10.1"), other, by_linkedid])
    assert set(plan.alive) == {"a", "c"}
    assert plan.missing == ["b"]


def test_reconcile_keeps_live_calls_and_settles_the_rest_as_unknown():
    tracker = CallTracker()
    for call in ("up", "gone", "fresh"):
        tracker.register(call, "camp1", "acme", "+33100000000", 100.0 if call != "fresh" else 109.5)
    tracker.mark_unconfirmed("gone")
    outcomes = tracker.reconcile([core_show_channel("up", "10.1")], 110.0, min_age=2.0)
    assert [(o.call_id, o.disposition, o.resolved_by) for o in outcomes] == [("gone", "unknown", "reconcile")]
    assert {a.call_id for a in tracker.in_flight()} == {"up", "fresh"}
    assert tracker.get("up").answered_at == 110.0  # it was up when we looked
    hangup = Message([("Event", "Hangup"), ("Uniqueid", "10.1"), ("Linkedid", "10.1"), ("Cause", "16")])
    (outcome,) = tracker.feed(hangup, 130.0)
    assert (outcome.call_id, outcome.disposition, outcome.cause) == ("up", "answered", 16)


def test_reconcile_uses_a_hangup_seen_before_the_loss():
    tracker = new_tracker(["busy"])
    messages = [m for m in call_messages("busy") if m[1].name != "OriginateResponse"]
    assert replay(tracker, messages) == []  # hung up, waiting for the OriginateResponse
    (outcome,) = tracker.reconcile([], 1100.0)
    assert (outcome.disposition, outcome.cause) == ("busy", 17)


def test_sweep_settles_silent_and_late_attempts():
    tracker = CallTracker(response_grace=5.0, no_event_grace=15.0)
    tracker.register("silent", "c", "t", "+1", 0.0, ring_timeout=30.0)
    assert tracker.sweep(44.0) == []
    (outcome,) = tracker.sweep(45.0)
    assert (outcome.call_id, outcome.disposition, outcome.resolved_by) == ("silent", "unknown", "sweep")
    # a failed originate whose channel never reports its hangup
    tracker.register("failed", "c", "t", "+1", 0.0, action_id="orig-failed")
    tracker.feed(
        Message(
            [
                ("Event", "VarSet"),
                ("Uniqueid", "1.1"),
                ("Linkedid", "1.1"),
                ("Variable", "DIALER_CALL_ID"),
                ("Value", "failed"),
            ]
        ),
        1.0,
    )
    response = Message(
        [
            ("Event", "OriginateResponse"),
            ("Response", "Failure"),
            ("ActionID", "orig-failed"),
            ("Reason", "5"),
            ("Uniqueid", "<unknown>"),
        ]
    )
    assert tracker.feed(response, 2.0) == []
    (outcome,) = tracker.sweep(7.0)
    assert outcome.disposition == "busy"


def test_refused_and_withdrawn():
    tracker = CallTracker()
    tracker.register("r", "c", "t", "+1", 0.0)
    tracker.register("w", "c", "t", "+1", 0.0)
    assert tracker.refused("r", 1.0).disposition == "failed"
    tracker.withdraw("w")
    assert len(tracker) == 0
