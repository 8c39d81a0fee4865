"""The sandbox PBX over real TCP: our dialplan's flows, the AMI actions, and the test hooks."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dialer.ami.protocol import Message, md5_key
from dialer.sandbox.behaviour import AgentProfile, CalleeProfile, Duration
from dialer.sandbox.server import SandboxServer
from dialer.sandbox.settings import SandboxSettings
from tests.sandbox_client import RawAmi, originate_fields

SCALE = 0.05  # a 10 s call lasts 0.5 s; races that decide an outcome stay >= 75 ms apart


def settings(**changes: object) -> SandboxSettings:
    base = SandboxSettings(port=0, seed=11, time_scale=SCALE, queues={"dialer": 2},
                           agents=AgentProfile(talk=Duration.fixed(5.0), wrapup=Duration.fixed(1.0)))  # fmt: skip
    return base.with_overrides(**changes)


def call_vars(call_id: str, **extra: str) -> dict[str, str]:
    values = {
        "DIALER_CALL_ID": call_id,
        "DIALER_CAMPAIGN_ID": "camp-1",
        "DIALER_TENANT_ID": "t1",
        "DIALER_AGENT_KIND": "queue",
        "DIALER_QUEUE": "dialer",
        "DIALER_AI_DISCLOSURE": "0",
        "DIALER_RECORDING_NOTICE": "0",
        "DIALER_OPTOUT_DIGIT": "9",
        "DIALER_INFO_MESSAGE": "campaign/info-1",
        "DIALER_AMD": "0",
        "DIALER_CONNECT_TIMEOUT": "2",
    }
    values.update(extra)
    return values


@pytest.fixture
async def pbx() -> AsyncIterator[SandboxServer]:
    server = SandboxServer(settings())
    await server.start()
    yield server
    await server.stop()


async def start(**changes: object) -> SandboxServer:
    server = SandboxServer(settings(**changes))
    await server.start()
    return server


async def logged_in(server: SandboxServer) -> RawAmi:
    ami = await RawAmi.connect(server.port)
    assert (await ami.login()).name == "Success"
    return ami


def events_of(messages: list[Message], call_id: str) -> list[Message]:
    """Events of one call: channel events carry ChanVariable DIALER_CALL_ID; OriginateResponse its ActionID."""
    out = []
    for m in messages:
        if not m.is_event:
            continue
        if m.action_id == call_id or m.variables().get("DIALER_CALL_ID") == call_id:
            out.append(m)
    return out


def names(events: list[Message], keep: tuple[str, ...]) -> list[str]:
    return [m.name if m.name != "UserEvent" else f"UserEvent:{m['UserEvent']}" for m in events if m.name in keep]


CALL_EVENTS = ("OriginateResponse", "UserEvent", "QueueCallerJoin", "QueueCallerAbandon", "QueueCallerLeave",
               "AgentConnect", "AgentComplete", "DTMFEnd")  # fmt: skip


async def run_calls(server: SandboxServer, calls: dict[str, tuple[str, dict[str, str]]],
                    tech: str = "Local/{number}@sim-callee", timeout_ms: int = 30000) -> list[Message]:  # fmt: skip
    """Originate {call_id: (number, variables)} and collect until every call's ;1 channel hung up."""
    ami = await logged_in(server)
    for call_id, (number, variables) in calls.items():
        await ami.send("Originate", call_id, originate_fields(number, variables=variables, tech=tech,
                                                              timeout_ms=timeout_ms))  # fmt: skip

    def done(messages: list[Message]) -> bool:
        ended = set()
        for m in messages:
            if m.name == "OriginateResponse" and m["Response"] == "Failure":
                ended.add(m.action_id)
            if m.name == "Hangup" and m.variables().get("DIALER_CALL_ID") and not m["Channel"].endswith(";2"):
                ended.add(m.variables()["DIALER_CALL_ID"])
        return ended >= set(calls)

    messages = await ami.collect_until(done, timeout=60)
    await ami.close()
    assert done(messages), "calls did not finish"
    return messages


# -- our dialplan (asterisk/extensions_dialer.conf) ---------------------------------------------------------


async def test_connected_call_runs_our_dialplan_to_an_agent(pbx: SandboxServer) -> None:
    messages = await run_calls(pbx, {"c1": ("5550006", call_vars("c1"))})
    events = events_of(messages, "c1")
    assert names(events, CALL_EVENTS) == [
        "OriginateResponse", "UserEvent:DialerConnected", "QueueCallerJoin", "QueueCallerLeave", "AgentConnect",
        "AgentComplete"]  # fmt: skip
    connected = next(m for m in events if m.name == "UserEvent")
    assert (connected["CallID"], connected["CampaignID"]) == ("c1", "camp-1")
    assert next(m for m in events if m.name == "AgentComplete")["Reason"] == "agent"  # 5 s agent < 10 s callee
    assert events[-1].name == "Hangup" and events[-1]["Cause"] == "16"


async def test_no_agent_within_2s_abandons_with_info_message() -> None:
    server = await start(queues={"dialer": 0})
    try:
        messages = await run_calls(server, {"c2": ("5550006", call_vars("c2"))})
    finally:
        await server.stop()
    events = events_of(messages, "c2")
    assert names(events, CALL_EVENTS) == [
        "OriginateResponse", "UserEvent:DialerConnected", "QueueCallerJoin", "QueueCallerAbandon", "QueueCallerLeave",
        "UserEvent:DialerAbandon"]  # fmt: skip
    abandon = next(m for m in events if m.name == "UserEvent" and m["UserEvent"] == "DialerAbandon")
    assert (abandon["CallID"], abandon["CampaignID"], abandon["Reason"]) == ("c2", "camp-1", "no-agent")
    queue_exit = next(m for m in events if m.name == "QueueCallerAbandon")
    assert [k for k, _ in queue_exit.fields][-4:] == ["Queue", "Position", "OriginalPosition", "HoldTime"]
    apps = [(m["Application"], m["AppData"]) for m in events if m.name == "Newexten" and m["Extension"] != "h"]
    assert ("Queue", "dialer,,,,2") in apps
    assert apps.index(("Background", "campaign/info-1")) > apps.index(("Queue", "dialer,,,,2"))
    assert apps[-1] == ("Hangup", "")  # then the h extension stores the outcome (tests/test_call_outcomes_astdb.py)


async def test_optout_keypress_while_waiting_for_an_agent() -> None:
    server = await start(queues={"dialer": 0})
    try:
        variables = call_vars("c3", DIALER_OPTOUT_DIGIT="5")
        messages = await run_calls(server, {"c3": ("5550007", variables)})
    finally:
        await server.stop()
    events = events_of(messages, "c3")
    got = names(events, CALL_EVENTS)
    assert got[:3] == ["OriginateResponse", "UserEvent:DialerConnected", "QueueCallerJoin"]
    assert got[3:] == ["DTMFEnd", "QueueCallerLeave", "UserEvent:DialerOptOut"]
    optout = next(m for m in events if m.name == "UserEvent" and m["UserEvent"] == "DialerOptOut")
    assert (optout["CallID"], optout["CampaignID"], optout["Digit"]) == ("c3", "camp-1", "5")
    assert next(m for m in events if m.name == "DTMFEnd")["Digit"] == "5"
    apps = [(m["Application"], m["AppData"]) for m in events if m.name == "Newexten"]
    assert ("Playback", "dialer/optout-confirmation") in apps


async def test_disclosure_then_notice_then_connect_and_optout_during_disclosure() -> None:
    server = await start()
    try:
        heard = call_vars("c4", DIALER_AI_DISCLOSURE="1", DIALER_RECORDING_NOTICE="1")
        interrupted = call_vars("c5", DIALER_AI_DISCLOSURE="1", DIALER_RECORDING_NOTICE="1")
        messages = await run_calls(server, {"c4": ("5550006", heard), "c5": ("5550007", interrupted)})
    finally:
        await server.stop()
    apps = [m["AppData"] for m in events_of(messages, "c4") if m.name == "Newexten" and
            m["Application"] in ("Background", "Queue")]  # fmt: skip
    assert apps == ["dialer/ai-disclosure", "dialer/recording-notice", "dialer,,,,2"]
    c5 = events_of(messages, "c5")
    assert "QueueCallerJoin" not in names(c5, CALL_EVENTS)  # opted out during the disclosure, never queued
    assert names(c5, CALL_EVENTS)[-1] == "UserEvent:DialerOptOut"


async def test_answering_machine_detection() -> None:
    server = await start()
    try:
        messages = await run_calls(server, {
            "m1": ("5550008", call_vars("m1", DIALER_AMD="1")),
            "h1": ("5550006", call_vars("h1", DIALER_AMD="1")),
            "m2": ("5550018", call_vars("m2", DIALER_AMD="0")),
        })  # fmt: skip
    finally:
        await server.stop()
    m1 = events_of(messages, "m1")
    assert names(m1, CALL_EVENTS) == ["OriginateResponse", "UserEvent:DialerConnected", "UserEvent:DialerMachine"]
    machine = next(m for m in m1 if m.name == "UserEvent" and m["UserEvent"] == "DialerMachine")
    assert (machine["CallID"], machine["CampaignID"], machine["AMDStatus"]) == ("m1", "camp-1", "MACHINE")
    assert machine["AMDCause"]
    assert "AgentConnect" in names(events_of(messages, "h1"), CALL_EVENTS)  # a human goes on to the queue
    assert "UserEvent:DialerMachine" not in names(events_of(messages, "m2"), CALL_EVENTS)  # AMD off: no detection


async def test_ai_agent_sessions_are_bounded() -> None:
    server = await start(ai_sessions=1, ai_agents=AgentProfile(ring=Duration.fixed(0.2), talk=Duration.fixed(4.0)))
    try:
        ai = {"DIALER_AGENT_KIND": "ai", "DIALER_AI_ENDPOINT": "PJSIP/ai-agent"}
        messages = await run_calls(server, {"a1": ("5550006", call_vars("a1", **ai)),
                                            "a2": ("5550016", call_vars("a2", **ai))})  # fmt: skip
    finally:
        await server.stop()
    statuses = {}
    for call_id in ("a1", "a2"):
        events = events_of(messages, call_id)
        ends = [m["DialStatus"] for m in events if m.name == "DialEnd" and "DestChannel" in m and m.get("Channel")]
        statuses[call_id] = (ends, "UserEvent:DialerAbandon" in names(events, CALL_EVENTS))
    assert sorted(statuses.values()) == [(["ANSWER"], False), (["BUSY"], True)]


async def test_trunk_channel_is_one_channel_with_dial_events() -> None:
    server = await start()
    try:
        tech = "PJSIP/{number}@trunk"
        messages = await run_calls(server, {"t1": ("+15550002", call_vars("t1")),
                                            "t2": ("+15550006", call_vars("t2"))}, tech=tech)  # fmt: skip
    finally:
        await server.stop()
    busy = [m for m in messages if m.is_event and (m.get("Channel") or m.get("DestChannel") or "").startswith(
        "PJSIP/trunk-") and m.variables("DestChanVariable" if "DestChannel" in m else "ChanVariable").get(
        "DIALER_CALL_ID") == "t1"]  # fmt: skip
    assert ("DialEnd", "BUSY") in [(m.name, m.get("DialStatus")) for m in busy]
    assert [m["Cause"] for m in busy if m.name == "Hangup"] == ["17"]
    response = next(m for m in messages if m.name == "OriginateResponse" and m.action_id == "t1")
    assert (response["Reason"], response["Channel"]) == ("5", "PJSIP/+15550002@trunk")
    answered = next(m for m in messages if m.name == "OriginateResponse" and m.action_id == "t2")
    assert answered["Reason"] == "4" and re.fullmatch(r"PJSIP/trunk-[0-9a-f]{8}", answered["Channel"])
    assert "AgentConnect" in names(events_of(messages, "t2"), CALL_EVENTS)


async def test_every_userevent_carries_callid_and_campaignid() -> None:
    server = await start(queues={"dialer": 1})
    try:
        calls = {f"u{i}": (number, call_vars(f"u{i}", DIALER_AMD="1" if number.endswith("8") else "0"))
                 for i, number in enumerate(["5550006", "5550016", "5550007", "5550008", "5550026"])}  # fmt: skip
        messages = await run_calls(server, calls)
    finally:
        await server.stop()
    user_events = [m for m in messages if m.name == "UserEvent"]
    assert {m["UserEvent"] for m in user_events} >= {"DialerConnected", "DialerAbandon", "DialerOptOut",
                                                     "DialerMachine"}  # fmt: skip
    for m in user_events:
        assert m["CallID"] in calls and m["CampaignID"] == "camp-1", m.fields


# -- AMI actions ----------------------------------------------------------------------------------------------


async def test_wrong_secret_is_refused_and_closed(pbx: SandboxServer) -> None:
    ami = await RawAmi.connect(pbx.port)
    assert ami.banner == "Asterisk Call Manager/11.0.0"
    response = await ami.login(secret="wrong")
    assert (response.name, response["Message"], response.action_id) == ("Error", "Authentication failed", "login")
    await ami.collect(0.3)
    assert ami.closed
    assert not any(m.name == "FullyBooted" for m in ami.messages)


async def test_md5_challenge_login(pbx: SandboxServer) -> None:
    ami = await RawAmi.connect(pbx.port)
    await ami.send("Challenge", "ch", [("AuthType", "MD5")])
    challenge = (await ami.response("ch"))["Challenge"]
    key = md5_key(challenge, "dialer-secret")
    await ami.send("Login", "l1", [("AuthType", "MD5"), ("Username", "dialer"), ("Key", key)])
    assert (await ami.response("l1"))["Message"] == "Authentication accepted"
    assert await ami.wait_for(lambda m: m.name == "FullyBooted")
    await ami.close()
    bad = await RawAmi.connect(pbx.port)
    await bad.send("Challenge", "ch", [("AuthType", "MD5")])
    await bad.response("ch")
    await bad.send("Login", "l2", [("AuthType", "MD5"), ("Username", "dialer"), ("Key", md5_key("0", "x"))])
    assert (await bad.response("l2"))["Message"] == "Authentication failed"
    await bad.close()


async def test_actions_need_login_and_unknown_actions_are_errors(pbx: SandboxServer) -> None:
    ami = await RawAmi.connect(pbx.port)
    await ami.send("Ping", "p0")
    assert (await ami.response("p0")).name == "Error"
    await ami.login()
    await ami.send("Ping", "p1")
    pong = await ami.response("p1")
    assert (pong.name, pong["Ping"]) == ("Success", "Pong") and [k for k, _ in pong.fields][:2] == [
        "Response", "ActionID"]  # fmt: skip
    await ami.send("FlyToTheMoon", "x1")
    unknown = await ami.response("x1")
    assert (unknown.name, unknown["Message"]) == ("Error", "Invalid/unknown command")
    await ami.send("Command", "cmd", [("Command", "core show version")])
    version = await ami.response("cmd")
    assert version.name == "Success" and version.output[0].startswith("Asterisk 22.")
    await ami.send("Originate", "o-bad", [("Context", "dialer-outbound"), ("Exten", "s"), ("Async", "true")])
    assert (await ami.response("o-bad"))["Message"] == "Channel not specified"
    await ami.send("Logoff", "bye")
    goodbye = await ami.response("bye")
    assert goodbye.name == "Goodbye"
    await ami.collect(0.3)
    assert ami.closed


async def test_events_broadcast_to_every_client_unless_off(pbx: SandboxServer) -> None:
    a, b, quiet = await logged_in(pbx), await logged_in(pbx), await logged_in(pbx)
    await quiet.send("Events", "ev", [("EventMask", "off")])
    assert (await quiet.response("ev"))["Events"] == "Off"
    await a.send("Originate", "bc1", originate_fields("5550002", variables=call_vars("bc1")))
    for client in (a, b):
        assert await client.wait_for(lambda m: m.name == "OriginateResponse" and m.action_id == "bc1", timeout=10)
    await quiet.collect(0.5)
    assert not any(m.name == "OriginateResponse" for m in quiet.messages)
    for client in (a, b, quiet):
        await client.close()


async def test_coreshowchannels_lists_live_channels_with_chanvariable(pbx: SandboxServer) -> None:
    ami = await logged_in(pbx)
    await ami.send("Originate", "ring1", originate_fields("5550003", timeout_ms=60000, variables=call_vars("ring1")))
    assert await ami.wait_for(lambda m: m.name == "DialState", timeout=10)
    await ami.send("CoreShowChannels", "csc")
    complete = await ami.wait_for(lambda m: m.name == "CoreShowChannelsComplete", timeout=5)
    assert complete is not None
    start = next(m for m in ami.messages if m.action_id == "csc" and m.is_response)
    assert (start["EventList"], start["Message"]) == ("start", "Channels will follow")
    listed = [m for m in ami.messages if m.name == "CoreShowChannel"]
    assert complete["ListItems"] == str(len(listed)) == "2" and complete["EventList"] == "Complete"
    assert {m.variables()["DIALER_CALL_ID"] for m in listed} == {"ring1"}
    keys = [k for k, _ in listed[0].fields]
    assert keys[:3] == ["Event", "ActionID", "Channel"] and keys[-4:] == [
        "BridgeId", "Application", "ApplicationData", "Duration"]  # fmt: skip
    # The Hangup action ends it.
    channel = next(m["Channel"] for m in listed if m["Channel"].endswith(";1"))
    await ami.send("Hangup", "hup", [("Channel", channel)])
    assert (await ami.response("hup"))["Message"] == "Channel Hungup"
    assert await ami.wait_for(lambda m: m.name == "Hangup" and m["Channel"] == channel, timeout=5)
    await ami.send("Hangup", "hup2", [("Channel", channel)])
    assert (await ami.response("hup2"))["Message"] == "No such channel"
    await ami.close()


async def test_queue_summary_and_status_show_free_agents() -> None:
    server = await start(queues={"dialer": 2, "sales": 1},
                         agents=AgentProfile(talk=Duration.fixed(100.0), wrapup=Duration.fixed(1.0)))  # fmt: skip
    try:
        ami = await logged_in(server)
        await ami.send("QueueSummary", "qs1", [("Queue", "dialer")])
        first = await ami.wait_for(lambda m: m.name == "QueueSummary" and m.action_id == "qs1")
        assert first is not None and (first["LoggedIn"], first["Available"], first["Callers"]) == ("2", "2", "0")
        await ami.send("Originate", "q1", originate_fields("5550006", variables=call_vars("q1")))
        assert await ami.wait_for(lambda m: m.name == "AgentConnect", timeout=10)
        await ami.send("QueueSummary", "qs2")
        done = await ami.wait_for(lambda m: m.name == "QueueSummaryComplete" and m.action_id == "qs2")
        summaries = {m["Queue"]: m for m in ami.messages if m.name == "QueueSummary" and m.action_id == "qs2"}
        assert done is not None and done["ListItems"] == "2"
        assert summaries["dialer"]["Available"] == "1" and summaries["sales"]["Available"] == "1"
        await ami.send("QueueStatus", "st", [("Queue", "dialer")])
        assert await ami.wait_for(lambda m: m.name == "QueueStatusComplete", timeout=5)
        members = [m for m in ami.messages if m.name == "QueueMember"]
        assert sorted(m["InCall"] for m in members) == ["0", "1"]
        assert [m.name for m in ami.messages if m.action_id == "st"][:2] == ["Success", "QueueParams"]
        await ami.close()
    finally:
        await server.stop()


# -- test hooks -----------------------------------------------------------------------------------------------


async def test_restart_loses_calls_and_drops_connections(pbx: SandboxServer) -> None:
    ami = await logged_in(pbx)
    await ami.send("Originate", "lost", originate_fields("5550003", timeout_ms=60000, variables=call_vars("lost")))
    assert await ami.wait_for(lambda m: m.name == "DialState", timeout=10)
    await pbx.restart()
    await ami.collect(0.3)
    assert ami.closed
    assert not any(m.name == "OriginateResponse" and m.action_id == "lost" for m in ami.messages)
    again = await logged_in(pbx)
    booted = await again.wait_for(lambda m: m.name == "FullyBooted")
    assert booted is not None and int(booted["Uptime"]) < 5
    await again.send("CoreShowChannels", "after")
    complete = await again.wait_for(lambda m: m.name == "CoreShowChannelsComplete", timeout=5)
    assert complete is not None and complete["ListItems"] == "0"
    await again.close()


async def test_restart_with_downtime_refuses_connections(pbx: SandboxServer) -> None:
    task = asyncio.create_task(pbx.restart(down_for=0.5))
    await asyncio.sleep(0.2)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", pbx.port)
    await task
    ami = await logged_in(pbx)
    await ami.close()


async def test_freeze_keeps_the_connection_open_but_silent(pbx: SandboxServer) -> None:
    ami = await logged_in(pbx)
    pbx.freeze()
    await ami.send("Ping", "frozen")
    assert await ami.wait_for(lambda m: m.action_id == "frozen", timeout=0.5) is None
    assert not ami.closed
    pbx.unfreeze()
    assert (await ami.response("frozen", timeout=5))["Ping"] == "Pong"
    pbx.drop_connections()
    await ami.collect(0.3)
    assert ami.closed


async def test_same_seed_same_outcomes() -> None:
    """Each call's fate depends on the seed and the Originate order only. (Which of several concurrent
    calls wins a free agent depends on wall-clock scheduling, so the queue here has no agents and the
    opt-out comes well inside the 2 s wait: every outcome is decided by the callee's plan.)"""
    profile = CalleeProfile(answer=0.6, busy=0.15, congestion=0.1, machine=0.0, optout=0.3,
                            ring=Duration.uniform(0.5, 2.0), stay=Duration.uniform(3.0, 5.0),
                            optout_after=Duration.fixed(0.5))  # fmt: skip

    async def outcomes(seed: int) -> list[tuple[str, ...]]:
        # time_scale 0.25: the races that decide an outcome (opt-out at 0.5 s vs the 2 s queue timeout, the
        # 2 s timeout vs a 3 s stay) stay >= 250 ms apart, enough on a loaded shared machine.
        server = await start(seed=seed, callee_mode="profile", callee=profile, queues={"dialer": 0}, time_scale=0.25)
        try:
            calls = {f"s{i}": (f"55501{i:02d}", call_vars(f"s{i}")) for i in range(24)}
            messages = await run_calls(server, calls, timeout_ms=6000)
        finally:
            await server.stop()
        out = []
        for call_id in calls:
            events = events_of(messages, call_id)
            response = next(m for m in events if m.name == "OriginateResponse")
            users = ",".join(m["UserEvent"] for m in events if m.name == "UserEvent")
            out.append((call_id, response["Reason"], users))
        return out

    first, second, other = await outcomes(5), await outcomes(5), await outcomes(6)
    assert first == second
    assert first != other
    assert {reason for _, reason, _ in first} >= {"4", "5"}
    assert {users for _, _, users in first} >= {"DialerConnected,DialerOptOut", "DialerConnected,DialerAbandon"}


# -- the command ----------------------------------------------------------------------------------------------


async def test_sandbox_pbx_command_runs_until_ctrl_c(tmp_path: object) -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialer", "sandbox-pbx", "--port", "0", "--agents", "2", "--seed", "3",
        "--time-scale", "0.05", "--username", "u1", "--secret", "s3cret",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        port = int(re.search(r"AMI on [\d.]+:(\d+)", line).group(1))  # type: ignore[union-attr]
        ami = await RawAmi.connect(port)
        assert (await ami.login("u1", "s3cret")).name == "Success"
        await ami.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert b"Traceback" not in err


async def test_sandbox_pbx_command_reports_bad_settings(tmp_path: object) -> None:
    bad = Path(str(tmp_path)) / "pbx.toml"
    bad.write_text("[sandbox]\ntime_scale = 0.1\n[sandbox.callee]\nanswer = 1.5\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialer", "sandbox-pbx", "--config", str(bad),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"sandbox.callee.answer" in err and b"Traceback" not in err


def manager_user(path: str, user: str) -> dict[str, str]:
    """key = value pairs of one [section] of an Asterisk .conf file (comments dropped)."""
    values: dict[str, str] = {}
    section = None
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section in (user, "general"):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), value.strip())
    return values


async def test_least_privilege_manager_sample_is_enough_for_the_dialer() -> None:
    """The [dialer] user of asterisk/manager.conf.sample can do what the dialer does, and no more."""
    conf = manager_user("asterisk/manager.conf.sample", "dialer")
    assert conf["bindaddr"] == "127.0.0.1" and conf["permit"] == "127.0.0.1/255.255.255.255"
    server = await start(read=tuple(conf["read"].split(",")), write=tuple(conf["write"].split(",")),
                         channelvars=tuple(conf["channelvars"].split(",")), queues={"dialer": 0})  # fmt: skip
    try:
        ami = await logged_in(server)
        await ami.send("Originate", "lp1", originate_fields("5550006", variables=call_vars("lp1")))
        abandon = await ami.wait_for(lambda m: m.name == "UserEvent" and m["UserEvent"] == "DialerAbandon", 10)
        assert abandon is not None and abandon.variables()["DIALER_CALL_ID"] == "lp1"
        assert await ami.wait_for(lambda m: m.name == "QueueCallerAbandon", 1)
        assert not any(m.name in ("Newexten", "VarSet") for m in ami.messages)  # dialplan class not granted
        for action, action_id in (("CoreShowChannels", "lp-csc"), ("QueueSummary", "lp-qs"), ("Ping", "lp-p")):
            await ami.send(action, action_id)
            assert (await ami.response(action_id)).name == "Success", action
        await ami.send("Hangup", "lp-h", [("Channel", "Local/none@x-1;1")])
        assert (await ami.response("lp-h"))["Message"] == "No such channel"  # allowed, nothing to hang up
        await ami.send("DBGetTree", "lp-dbt", [("Family", "dialer_optout")])  # AstDB opt-outs: read ...
        assert (await ami.response("lp-dbt")).name == "Success"
        await ami.send("DBDel", "lp-dbd", [("Family", "dialer_optout"), ("Key", "none")])  # ... and delete
        assert (await ami.response("lp-dbd"))["Message"] == "Database entry not found"  # allowed, nothing there
        await ami.send("DBGet", "lp-dbg", [("Family", "dialer_outcome"), ("Key", "none")])  # a call's stored outcome
        assert (await ami.response("lp-dbg"))["Message"] == "Database entry not found"  # allowed, nothing there
        await ami.send("Command", "lp-cmd", [("Command", "core restart now")])
        denied = await ami.response("lp-cmd")
        assert (denied.name, denied["Message"]) == ("Error", "Permission denied")
        await ami.close()
    finally:
        await server.stop()


def test_example_settings_file_loads() -> None:
    from dialer.sandbox.settings import load_settings

    loaded = load_settings("docs/sandbox-pbx.example.toml")
    assert loaded.callee_mode == "profile" and loaded.queues == {"dialer": 5}
    assert loaded.callee.machine == 0.15 and loaded.agents.wrapup == Duration.uniform(5.0, 20.0)
    assert loaded.time_scale == 0.05 and loaded.ai_sessions == 2


def test_fast_event_encoding_is_protocol_encode() -> None:
    from dialer.ami.protocol import ProtocolError, encode
    from dialer.sandbox.server import _encode_event

    fields = [
        ("Event", "Hangup"),
        ("Privilege", "call,all"),
        ("Channel", "Local/1@x-1;1"),
        ("AccountCode", ""),
        ("CallerIDName", "José"),
        ("ChanVariable", "DIALER_CALL_ID=a"),
        ("ChanVariable", "X="),
    ]
    assert _encode_event(fields) == encode(fields)
    with pytest.raises(ProtocolError):
        _encode_event([("Event", "UserEvent"), ("CallID", "x\r\nAction: Hangup")])


async def test_hangup_action_mid_conversation_frees_the_agent() -> None:
    server = await start(queues={"dialer": 1},
                         agents=AgentProfile(talk=Duration.fixed(100.0), wrapup=Duration.fixed(0.0)))  # fmt: skip
    try:
        ami = await logged_in(server)
        await ami.send("Originate", "hx", originate_fields("5550001", variables=call_vars("hx")))
        connect = await ami.wait_for(lambda m: m.name == "AgentConnect", timeout=10)
        assert connect is not None
        await ami.send("Hangup", "hx-h", [("Channel", connect["Channel"])])
        assert (await ami.response("hx-h"))["Message"] == "Channel Hungup"
        assert await ami.wait_for(lambda m: m.name == "AgentComplete", timeout=5)
        assert await ami.wait_for(lambda m: m.name == "BridgeDestroy", timeout=5)
        await ami.collect(0.2)
        assert server.pbx.channels == {}
        await ami.send("QueueSummary", "hx-qs")
        summary = await ami.wait_for(lambda m: m.name == "QueueSummary" and m.action_id == "hx-qs", timeout=5)
        assert summary is not None and summary["Available"] == "1"
        # The freed agent takes the next call.
        await ami.send("Originate", "hy", originate_fields("5550006", variables=call_vars("hy")))
        nxt = await ami.wait_for(lambda m: m.name == "AgentConnect" and m.variables()["DIALER_CALL_ID"] == "hy", 10)
        assert nxt is not None
        await ami.close()
    finally:
        await server.stop()


async def test_unreachable_channel_fails_with_reason_0_and_no_channel() -> None:
    server = await start(callee_mode="profile", callee=CalleeProfile(answer=0, busy=0, congestion=0, failed=1.0))
    try:
        ami = await logged_in(server)
        await ami.send("Originate", "f1", originate_fields("5550001", variables=call_vars("f1")))
        response = await ami.wait_for(lambda m: m.name == "OriginateResponse", timeout=5)
        assert response is not None
        assert (response["Response"], response["Reason"], response["Uniqueid"]) == ("Failure", "0", "<unknown>")
        await ami.collect(0.2)
        assert not any(m.name == "Newchannel" for m in ami.messages)
        await ami.close()
    finally:
        await server.stop()


async def test_variable_headers_split_on_commas_like_asterisk(pbx: SandboxServer) -> None:
    ami = await logged_in(pbx)
    fields = originate_fields("5550002", variables={"DIALER_CALL_ID": "v1"})
    fields.append(("Variable", "DIALER_CAMPAIGN_ID=camp,DIALER_TENANT_ID=t9"))
    await ami.send("Originate", "v1", fields)
    assert await ami.wait_for(lambda m: m.name == "OriginateResponse", timeout=5)
    varsets = {m["Variable"]: m["Value"] for m in ami.messages if m.name == "VarSet" and m["Channel"].endswith(";1")}
    assert varsets["DIALER_CAMPAIGN_ID"] == "camp" and varsets["DIALER_TENANT_ID"] == "t9"
    await ami.close()


async def test_garbage_from_a_client_does_not_hurt_the_server(pbx: SandboxServer) -> None:
    noisy = await RawAmi.connect(pbx.port)
    noisy.writer.write(b"\x00\xff\xfe no colon here\r\n:\r\n\xc3\r\n\r\n" + bytes(range(256)) + b"\r\n\r\n")
    await noisy.send("Ping", "still-there")  # garbage skipped, the next action is read (and needs a login)
    assert (await noisy.response("still-there"))["Message"] == "Authentication Required"
    await noisy.close()
    ami = await logged_in(pbx)
    await ami.send("Ping", "after-garbage")
    assert (await ami.response("after-garbage"))["Ping"] == "Pong"
    await ami.close()


# -- what real Asterisk 22 does that the sandbox once did not model (issue 14) -----------------------------------


async def queue_listing(ami: RawAmi, action: str, action_id: str) -> list[Message]:
    await ami.send(action, action_id, [("Queue", "solo")])
    done = "QueueSummaryComplete" if action == "QueueSummary" else "QueueStatusComplete"
    assert await ami.wait_for(lambda m: m.name == done and m.action_id == action_id, timeout=5)
    return [m for m in ami.messages if m.action_id == action_id and m.is_event]


async def test_a_member_in_wrap_up_is_reported_available_as_asterisk_does() -> None:
    """app_queue's QueueSummary counts a member Available when its device is free and it is not paused; QueueStatus
    says Status 1 (NOT_INUSE), InCall 0 and Wrapuptime 0 (no member-level value): wrap-up shows nowhere. app_queue
    still offers it no caller until the wrap-up is over."""
    server = await start(queues={"solo": 1},
                         agents=AgentProfile(talk=Duration.fixed(2.0), wrapup=Duration.fixed(5.0)))  # fmt: skip
    try:
        ami = await logged_in(server)
        await ami.send("Originate", "w1", originate_fields("5550006", variables=call_vars("w1", DIALER_QUEUE="solo")))
        assert await ami.wait_for(lambda m: m.name == "AgentConnect", timeout=10)
        during = await queue_listing(ami, "QueueStatus", "in-call")
        member = next(m for m in during if m.name == "QueueMember")
        assert (member["Status"], member["InCall"]) == ("2", "1")
        assert next(m for m in await queue_listing(ami, "QueueSummary", "s-in-call"))["Available"] == "0"
        assert await ami.wait_for(lambda m: m.name == "AgentComplete", timeout=10)
        summary = next(m for m in await queue_listing(ami, "QueueSummary", "s-wrap") if m.name == "QueueSummary")
        assert (summary["LoggedIn"], summary["Available"]) == ("1", "1")
        member = next(m for m in await queue_listing(ami, "QueueStatus", "wrap") if m.name == "QueueMember")
        assert (member["Status"], member["InCall"], member["Paused"], member["Wrapuptime"]) == ("1", "0", "0", "0")
        # A caller answered now (1 s ring + 2 s wait < 5 s wrap-up) finds nobody: the abandon path.
        await ami.send("Originate", "w2", originate_fields("5550006", variables=call_vars("w2", DIALER_QUEUE="solo")))
        abandon = await ami.wait_for(lambda m: m.name == "QueueCallerAbandon", timeout=10)
        assert abandon is not None and abandon.variables()["DIALER_CALL_ID"] == "w2"
        assert not [m for m in ami.messages if m.name == "AgentConnect" and m.variables().get("DIALER_CALL_ID") == "w2"]
        await ami.close()
    finally:
        await server.stop()


async def test_agent_complete_after_the_caller_hung_up_may_carry_no_channel_fields() -> None:
    server = await start(bare_agent_complete=1.0,
                         agents=AgentProfile(talk=Duration.fixed(100.0), wrapup=Duration.fixed(1.0)))  # fmt: skip
    try:
        messages = await run_calls(server, {"b1": ("5550005", call_vars("b1"))})  # the callee hangs up after 4 s
        complete = next(m for m in messages if m.name == "AgentComplete")
        assert [k for k, _ in complete.fields] == ["Event", "Privilege", "Queue", "Interface", "MemberName",
                                                   "HoldTime", "TalkTime", "Reason"]
        assert complete["Reason"] == "caller" and complete["Interface"].startswith("Local/700")
    finally:
        await server.stop()


async def test_core_restart_now_refuses_actions_hangs_up_announces_and_boots_again(pbx: SandboxServer) -> None:
    ami = await logged_in(pbx)
    await ami.send("Originate", "ringing", originate_fields("5550003", timeout_ms=60000,
                                                            variables=call_vars("ringing")))  # fmt: skip
    await ami.send("Originate", "talking", originate_fields("5550001", variables=call_vars("talking")))
    assert await ami.wait_for(lambda m: m.name == "AgentConnect", timeout=10)
    stopping = asyncio.create_task(pbx.shutdown(restart=True, down_for=0.3, final_pause=0.3))
    await asyncio.sleep(0.05)
    await ami.send("Originate", "refused", originate_fields("5550001", variables=call_vars("refused")))
    await ami.send("Ping", "ping")
    refused, ping = await ami.response("refused"), await ami.response("ping")
    assert (refused.name, refused["Message"]) == ("Error", "Asterisk is shutting down")
    assert (ping.name, ping["Message"]) == ("Error", "Asterisk is shutting down")
    shutdown = await ami.wait_for(lambda m: m.name == "Shutdown", timeout=5)
    assert shutdown is not None and (shutdown["Shutdown"], shutdown["Restart"]) == ("Cleanly", "True")
    hangups = {m.variables().get("DIALER_CALL_ID") for m in ami.messages if m.name == "Hangup"}
    assert {"ringing", "talking"} <= hangups  # every call ended with its events, before the Shutdown event
    assert not [m for m in ami.messages if m.is_event and m.variables().get("DIALER_CALL_ID") == "refused"]
    await ami.collect(0.3)
    assert ami.closed
    await stopping
    again = await logged_in(pbx)
    assert await again.wait_for(lambda m: m.name == "FullyBooted", timeout=5)
    await again.close()


async def test_core_restart_gracefully_lets_calls_end_and_refuses_new_ones() -> None:
    server = await start(agents=AgentProfile(talk=Duration.fixed(5.0), wrapup=Duration.fixed(1.0)))
    try:
        ami = await logged_in(server)
        await ami.send("Originate", "live", originate_fields("5550006", variables=call_vars("live")))
        assert await ami.wait_for(lambda m: m.name == "AgentConnect", timeout=10)
        stopping = asyncio.create_task(server.shutdown(graceful=True, down_for=0.2, boot_for=0.3))
        await asyncio.sleep(0.05)
        await ami.send("Originate", "new", originate_fields("5550001", variables=call_vars("new")))
        assert (await ami.response("new"))["Message"] == "Asterisk is shutting down"
        shutdown = await ami.wait_for(lambda m: m.name == "Shutdown", timeout=10)
        assert shutdown is not None and shutdown["Shutdown"] == "Cleanly"
        ended = [m for m in ami.messages if m.name == "AgentComplete"]
        assert ended and ended[0]["Reason"] == "agent"  # the call ran to its natural end
        assert ami.messages.index(ended[0]) < ami.messages.index(shutdown)
        await asyncio.sleep(0.3)
        booting = await logged_in(server)  # listening again, not fully booted yet: no FullyBooted at login
        await booting.send("Originate", "early", originate_fields("5550001", variables=call_vars("early")))
        assert (await booting.response("early"))["Message"] == "Extension does not exist."
        assert not [m for m in booting.messages if m.name == "FullyBooted"]
        booted = await booting.wait_for(lambda m: m.name == "FullyBooted", timeout=5)  # the event, once booted
        assert booted is not None and booted["Status"] == "Fully Booted"
        await stopping
        await booting.close()
    finally:
        await server.stop()


async def test_an_originate_to_an_extension_that_does_not_exist_is_refused(pbx: SandboxServer) -> None:
    ami = await logged_in(pbx)
    await ami.send("Originate", "nowhere", originate_fields("5550001", context="no-such-context"))
    response = await ami.response("nowhere")
    assert (response.name, response["Message"]) == ("Error", "Extension does not exist.")
    await ami.close()


async def test_during_a_graceful_shutdown_answered_calls_reach_no_ai_and_no_agent() -> None:
    """The lab PBX during `core restart gracefully`: a call answered just before it reaches Dial() to the AI endpoint
    (CHANUNAVAIL: "Refusing due to active shutdown") or waits in the queue for nobody: both take the abandon path."""
    server = await start()
    try:
        ami = await logged_in(server)
        ai = {"DIALER_AGENT_KIND": "ai", "DIALER_AI_ENDPOINT": "PJSIP/ai-agent", "DIALER_AI_DISCLOSURE": "1"}
        await ami.send("Originate", "g-ai", originate_fields("5550006", variables=call_vars("g-ai", **ai)))
        await ami.send("Originate", "g-q", originate_fields("5550016", variables=call_vars("g-q",
                                                                                      DIALER_RECORDING_NOTICE="1")))
        assert await ami.collect_until(lambda ms: sum(1 for m in ms if m.name == "UserEvent"
                                                      and m["UserEvent"] == "DialerConnected") == 2, timeout=10)
        stopping = asyncio.create_task(server.shutdown(graceful=True, down_for=0.1))
        assert await ami.wait_for(lambda m: m.name == "Shutdown", timeout=20)
        await stopping
        for call_id in ("g-ai", "g-q"):
            events = events_of(ami.messages, call_id)
            assert "UserEvent:DialerAbandon" in names(events, CALL_EVENTS), call_id
            assert "AgentConnect" not in names(events, CALL_EVENTS)
        assert any(m.name == "VarSet" and m["Variable"] == "DIALSTATUS" and m["Value"] == "CHANUNAVAIL"
                   for m in events_of(ami.messages, "g-ai"))
        await ami.close()
    finally:
        await server.stop()
