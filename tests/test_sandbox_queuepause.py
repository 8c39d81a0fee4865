"""The sandbox's QueuePause against what the real Asterisk 22 lab does (captured from /work/shared/asterisk-lab:
`queue pause member Local/7001@sim-agent/n queue dialer reason break` with an AMI session reading `agent` events):
one QueueMemberPause event per queue the member was paused in, with every member field and no QueueMemberStatus;
QueueSummary's Available drops; the paused member takes no call until unpaused."""

from __future__ import annotations

import asyncio

import pytest

from dialer.ami.client import ActionFailed, AMIClient
from dialer.sandbox.server import SandboxServer
from dialer.sandbox.settings import SandboxSettings

# The lab's event, field by field (Asterisk 22.10.1).
LAB_FIELDS = ["Event", "Privilege", "Queue", "MemberName", "Interface", "StateInterface", "Membership", "Penalty",
              "CallsTaken", "LastCall", "LastPause", "LoginTime", "InCall", "Status", "Paused", "PausedReason",
              "Ringinuse", "Wrapuptime"]


async def start(**changes) -> SandboxServer:
    server = SandboxServer(SandboxSettings(port=0, seed=1, time_scale=0.05, queues={"dialer": 2, "sales": 1})
                           .with_overrides(**changes))
    await server.start()
    return server


async def test_queuepause_emits_queuememberpause_like_asterisk():
    server = await start()
    client = AMIClient("127.0.0.1", server.port, "dialer", "dialer-secret", name="t", events="agent")
    seen = []
    try:
        await client.connect()
        client.on_event(seen.append)
        response = await client.action("QueuePause", [("Interface", "Local/7001@sim-agent/n"), ("Paused", "true"),
                                                      ("Queue", "dialer"), ("Reason", "break")])
        assert response.get("Message") == "Interface paused successfully"
        await asyncio.sleep(0.2)
        assert [m.name for m in seen] == ["QueueMemberPause"]
        event = seen[0]
        assert [k for k, _ in event.fields] == LAB_FIELDS
        assert (event.get("Queue"), event.get("MemberName"), event.get("Paused"), event.get("PausedReason"),
                event.get("InCall"), event.get("Status")) == ("dialer", "Agent 1", "1", "break", "0", "1")
        assert int(event.get("LastPause")) > 0
        summary = await client.event_list("QueueSummary", [("Queue", "dialer")])
        assert [(m.get("LoggedIn"), m.get("Available")) for m in summary.events] == [("2", "1")]
        status = await client.event_list("QueueStatus", [("Queue", "dialer")])
        assert [m.get("Paused") for m in status.events if m.name == "QueueMember"] == ["1", "0"]
        seen.clear()
        # Paused is read with ast_true: anything but yes/true/y/t/1/on unpauses
        response = await client.action("QueuePause", [("Interface", "Local/7001@sim-agent/n"), ("Paused", "no")])
        assert response.get("Message") == "Interface unpaused successfully"
        await asyncio.sleep(0.2)
        assert [(m.name, m.get("Paused"), m.get("PausedReason")) for m in seen] == [("QueueMemberPause", "0", "")]
        unknown = [("Interface", "Local/7999@sim-agent/n"), ("Paused", "true")]
        no_paused = [("Interface", "Local/7001@sim-agent/n")]
        for fields, message in ((unknown, "Interface not found"),
                                (no_paused, "Need 'Interface' and 'Paused' parameters.")):
            with pytest.raises(ActionFailed) as failed:
                await client.action("QueuePause", fields)
            assert failed.value.response.get("Message") == message
    finally:
        await client.close()
        await server.stop()


async def test_queuepause_needs_the_agent_write_class():
    """The lab's dialer user (write = originate,call,reporting,system) is refused, as by Asterisk."""
    server = await start(write=("originate", "call", "reporting", "system"))
    client = AMIClient("127.0.0.1", server.port, "dialer", "dialer-secret", name="t")
    try:
        await client.connect()
        with pytest.raises(ActionFailed) as failed:
            await client.action("QueuePause", [("Interface", "Local/7001@sim-agent/n"), ("Paused", "true")])
        assert failed.value.response.get("Message") == "Permission denied"
    finally:
        await client.close()
        await server.stop()
