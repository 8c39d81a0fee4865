"""The sandbox against the real Asterisk 22 transcript (tests/data): same events, same fields.

The sandbox runs the reference's own dialplan (tests/data/extensions.conf: [sim-callee],
[sim-agent], [dialer-connect]) with the reference's manager.conf (no channelvars) and queue
(3 agents), and the same six Originates. Per call (grouped by Linkedid, the number it dialed)
we compare, against the transcript:
- for each channel of the call (caller ;1/;2, agent ;1/;2), the ordered list of events and the
  set of field names of each: Asterisk orders events per channel, not across channels, and the
  reference README says the interleaving between channels varies from run to run;
- the whole call's multiset of (event, field names);
- OriginateResponse (Response, Reason, the set of fields) per ActionID.
Values that differ by nature (Uniqueid, times) are not compared.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from dialer.ami.protocol import Message, Parser
from dialer.sandbox.behaviour import AgentProfile, Duration
from dialer.sandbox.server import SandboxServer
from dialer.sandbox.settings import SandboxSettings
from tests.ami_transcript import transcript_wire_bytes
from tests.sandbox_client import (
    REFERENCE_NUMBERS,
    RawAmi,
    field_names,
    group_by_call,
    originate_fields,
    per_channel,
)

DATA = Path(__file__).parent / "data"
Scenario = tuple[str | None, list[Message]]
Reference = tuple[str, list[Message]]
SCALE = 0.08  # a 30 s call lasts 2.4 s; the closest race (agent 8 s vs callee 10 s) stays 160 ms apart


def reference_messages() -> tuple[str, list[Message]]:
    parser = Parser()
    items = parser.feed(transcript_wire_bytes())
    banner = items[0].text  # type: ignore[union-attr]
    return banner, [m for m in items if isinstance(m, Message)]


def reference_settings(**changes: object) -> SandboxSettings:
    base = SandboxSettings(
        port=0,
        seed=7,
        time_scale=SCALE,
        callee_mode="last-digit",
        queues={"sim-agents": 3},
        # The reference agents talked 8 and 9 s (RAND(5,15)); a fixed 8 s gives the same endings:
        # the 4 s callee hangs up first (Reason caller), the 10 s and 20 s ones outlast the agent.
        agents=AgentProfile(talk=Duration.fixed(8.0), wrapup=Duration.fixed(2.0)),
        channelvars=(),
        dialplans=(DATA / "extensions.conf",),
        bare_agent_complete=0.0,  # the reference run's AgentComplete always named the caller
    )
    return base.with_overrides(**changes)


async def run_reference_scenario(settings: SandboxSettings) -> tuple[str | None, list[Message]]:
    async with SandboxServer(settings) as server:
        ami = await RawAmi.connect(server.port)
        login = await ami.login()
        assert login.name == "Success"
        for call_id, number in REFERENCE_NUMBERS.items():
            await ami.send("Originate", f"orig-{call_id}", [
                *originate_fields(number, context="dialer-connect", timeout_ms=30000,
                                  variables={"DIALER_CALL_ID": call_id})])  # fmt: skip

        def finished(messages: list[Message]) -> bool:
            hangups = [m for m in messages if m.name == "Hangup"]
            return len(hangups) >= 18  # 6 calls x 2 channels + 3 agents x 2 channels

        messages = await ami.collect_until(finished, timeout=60 * SCALE * 10)
        await ami.close()
        return ami.banner, messages


@pytest.fixture(scope="module")
def reference() -> tuple[str, list[Message]]:
    return reference_messages()


@pytest.fixture(scope="module")
def scenario() -> tuple[str | None, list[Message]]:
    """The six reference calls through the sandbox, run once for the tests that compare them."""
    return asyncio.run(run_reference_scenario(reference_settings()))


def test_banner_login_fullybooted_like_asterisk(reference: Reference, scenario: Scenario) -> None:
    ref_banner, ref = reference
    banner, messages = scenario
    assert banner == ref_banner == "Asterisk Call Manager/11.0.0"
    assert [k for k, _ in messages[0].fields] == [k for k, _ in ref[0].fields]  # Response, ActionID, Message
    assert messages[0]["Message"] == ref[0]["Message"]
    assert messages[1].name == ref[1].name == "FullyBooted"
    assert [k for k, _ in messages[1].fields] == [k for k, _ in ref[1].fields]
    ref_ack = next(m for m in ref if m.action_id == "orig-busy")
    ack = next(m for m in messages if m.action_id == "orig-busy" and m.is_response)
    assert ack.fields[2:] == ref_ack.fields[2:] and [k for k, _ in ack.fields] == [k for k, _ in ref_ack.fields]


def test_each_outcome_has_the_reference_events_and_fields(reference: Reference, scenario: Scenario) -> None:
    _, ref = reference
    _, messages = scenario
    ref_calls, calls = group_by_call(ref), group_by_call(messages)
    assert set(calls) >= set(REFERENCE_NUMBERS.values())
    for call_id, number in REFERENCE_NUMBERS.items():
        expected, got = ref_calls[number], calls[number]
        # Per channel: same events in the same order, same field names.
        ref_channels, channels = per_channel(expected), per_channel(got)
        assert set(channels) == set(ref_channels), call_id
        for role in ref_channels:
            assert [n for n, _ in channels[role]] == [n for n, _ in ref_channels[role]], (call_id, role)
            assert channels[role] == ref_channels[role], (call_id, role)
        # The whole call: the same multiset of events, fields included (Dial*, LocalBridge, Bridge*).
        assert Counter((m.name, field_names(m)) for m in got) == Counter((m.name, field_names(m)) for m in expected), (
            call_id
        )


def test_originate_responses_match_the_reference(reference: Reference, scenario: Scenario) -> None:
    _, ref = reference
    _, messages = scenario
    for call_id in REFERENCE_NUMBERS:
        action_id = f"orig-{call_id}"
        want = next(m for m in ref if m.name == "OriginateResponse" and m.action_id == action_id)
        got = next(m for m in messages if m.name == "OriginateResponse" and m.action_id == action_id)
        assert [k for k, _ in got.fields] == [k for k, _ in want.fields]
        for key in ("Response", "Reason", "Context", "Exten", "CallerIDNum", "CallerIDName"):
            assert got[key] == want[key], (call_id, key)
        if want["Response"] == "Failure":
            assert got["Channel"] == want["Channel"] and got["Uniqueid"] == "<unknown>"
        else:
            assert got["Channel"].endswith(";1") and got["Uniqueid"] != "<unknown>"


def test_field_values_that_carry_meaning_match(reference: Reference, scenario: Scenario) -> None:
    """Causes, dial statuses, queue reasons and UserEvent fields: values, not only names."""
    _, ref = reference
    _, messages = scenario
    ref_calls, calls = group_by_call(ref), group_by_call(messages)

    def meaning(events: list[Message]) -> Counter[tuple[str, ...]]:
        out: Counter[tuple[str, ...]] = Counter()
        for m in events:
            if m.name == "Hangup":
                out[(m.name, m["Cause"], m["Cause-txt"], m["ChannelStateDesc"])] += 1
            elif m.name in ("DialEnd", "DialState"):
                out[(m.name, m["DialStatus"])] += 1
            elif m.name == "AgentComplete":
                out[(m.name, m["Reason"], m["Queue"])] += 1
            elif m.name == "UserEvent":
                out[(m.name, m["UserEvent"], m["CallID"])] += 1
            elif m.name in ("Newstate",):
                out[(m.name, m["ChannelState"], m["ChannelStateDesc"])] += 1
        return out

    for call_id, number in REFERENCE_NUMBERS.items():
        assert meaning(calls[number]) == meaning(ref_calls[number]), call_id


async def test_channelvars_add_chanvariable_to_channel_events() -> None:
    """With our manager.conf (channelvars = DIALER_CALL_ID,DIALER_CAMPAIGN_ID) every channel event carries
    ChanVariable fields after Linkedid, Dest-prefixed events DestChanVariable."""
    settings = reference_settings(channelvars=("DIALER_CALL_ID", "DIALER_CAMPAIGN_ID"))
    _, messages = await run_reference_scenario(settings)
    answered = group_by_call(messages)[REFERENCE_NUMBERS["answer4"]]
    hangup = next(m for m in answered if m.name == "Hangup" and m["Channel"].endswith(";1")
                  and "sim-callee" in m["Channel"])  # fmt: skip
    keys = [k for k, _ in hangup.fields]
    assert keys[keys.index("Linkedid") + 1 : keys.index("Linkedid") + 3] == ["ChanVariable", "ChanVariable"]
    assert hangup.variables() == {"DIALER_CALL_ID": "answer4", "DIALER_CAMPAIGN_ID": ""}
    complete = next(m for m in answered if m.name == "AgentComplete")
    assert complete.variables()["DIALER_CALL_ID"] == "answer4"
    assert complete.getall("DestChanVariable") == ["DIALER_CALL_ID=", "DIALER_CAMPAIGN_ID="]


async def test_our_dialplan_keeps_the_reference_call_behaviour(reference: tuple[str, list[Message]]) -> None:
    """The same six calls through OUR [dialer-outbound] instead of the reference's stand-in context.

    The dialplan steps differ by design (our Newexten/VarSet/UserEvent fields; our Originate sets more
    variables), everything else must not: the called party's channel (;2), the agent channels, and our
    channel's call events (Newstate, Dial*, Queue*, Agent*, Bridge*, Hangup*) in Asterisk's order and fields.
    """
    _, ref = reference
    settings = reference_settings(dialplans=(DATA.parent.parent / "asterisk" / "extensions_dialer.conf",))
    async with SandboxServer(settings) as server:
        ami = await RawAmi.connect(server.port)
        await ami.login()
        for call_id, number in REFERENCE_NUMBERS.items():
            variables = {"DIALER_CALL_ID": call_id, "DIALER_CAMPAIGN_ID": "camp", "DIALER_QUEUE": "sim-agents",
                         "DIALER_AGENT_KIND": "queue", "DIALER_AI_DISCLOSURE": "0", "DIALER_RECORDING_NOTICE": "0",
                         "DIALER_AMD": "0"}  # fmt: skip
            await ami.send("Originate", f"orig-{call_id}", originate_fields(number, timeout_ms=30000,
                                                                           variables=variables))  # fmt: skip
        messages = await ami.collect_until(lambda ms: sum(m.name == "Hangup" for m in ms) >= 18, timeout=20)
        await ami.close()
    dialplan_steps = {"Newexten", "VarSet", "UserEvent"}
    ref_calls, calls = group_by_call(ref), group_by_call(messages)
    for call_id, number in REFERENCE_NUMBERS.items():
        ref_channels, channels = per_channel(ref_calls[number]), per_channel(calls[number])
        assert set(channels) == set(ref_channels), call_id
        for role, expected in ref_channels.items():
            got = channels[role]
            if role.startswith("callee"):  # our Originate sets 7 variables (VarSet on ;1 and ;2), the reference 1
                expected = [e for e in expected if e[0] not in dialplan_steps]
                got = [e for e in got if e[0] not in dialplan_steps]
            assert got == expected, (call_id, role)
        users = [m for m in calls[number] if m.name == "UserEvent"]
        if any(m.name == "UserEvent" for m in ref_calls[number]):
            assert [m["UserEvent"] for m in users] == ["DialerConnected"]
            assert users[0]["CallID"] == call_id and users[0]["CampaignID"] == "camp"
