"""QueueStatus and QueueSummary for a queue that exists, one that does not, and a name in another letter case: the
sandbox PBX answers byte for byte as Asterisk 22.10.1 does (issue 16 point 11).

tests/data/ami-transcript-queuestatus.txt is what the lab PBX (../shared/asterisk-lab, its queues.conf, user `dialer`)
answered on 2026-12-06. What it shows: a queue that does not exist is no error (`Response: Success`, the list
started, then `QueueStatusComplete` with `ListItems: 0`): a dialer must look for the `QueueParams` event to know the
queue exists. Names are matched in any letter case and every event carries the queue's own name (`SOLO` lists
`solo`). ListItems counts QueueParams, QueueMember and QueueEntry events. The same exchange is replayed against the
real PBX in the realpbx tier (test_the_real_asterisk_answers_queuestatus_so), so the file stays the truth.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from dialer.sandbox.server import SandboxServer
from dialer.sandbox.settings import SandboxSettings
from tests import test_realpbx

TRANSCRIPT = Path(__file__).parent / "data" / "ami-transcript-queuestatus.txt"
# the lab's queues (queues.conf): dialer 7001-7005, solo 7006, solo0 7007, empty (no member); sim-agents reuses
# 7001-7003 and is not asked about
LAB_QUEUES = {"dialer": 5, "solo": 1, "solo0": 1, "empty": 0}
ACTIONS = [("QueueStatus", "nosuchqueue"), ("QueueStatus", "solo"), ("QueueStatus", "SOLO"), ("QueueStatus", "empty"),
           ("QueueSummary", "nosuchqueue"), ("QueueSummary", "Solo")]
asterisk_lab = test_realpbx.asterisk_lab  # the realpbx tier's fixture


def normalise(text: str) -> str:
    """Instants differ from run to run: LoginTime (the member's login epoch) is replaced by a placeholder."""
    return re.sub(r"^LoginTime: \d+$", "LoginTime: <epoch>", text, flags=re.M)


async def exchange(port: int) -> str:
    """Log in as `dialer` (events off), send ACTIONS, and return every answer as sent, one `=== action` header each
    (CRLF line ends shown as LF)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()  # banner
        writer.write(b"Action: Login\r\nUsername: dialer\r\nSecret: dialer-secret\r\nEvents: off\r\n"
                     b"ActionID: L\r\n\r\n")
        login = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"Authentication accepted" in login
        out = []
        for i, (action, queue) in enumerate(ACTIONS):
            writer.write(f"Action: {action}\r\nQueue: {queue}\r\nActionID: A{i}\r\n\r\n".encode())
            out.append(f"=== {action} {queue}\n")
            while True:
                message = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
                if f"ActionID: A{i}\r\n" not in message:
                    continue  # an event that is not part of the answer (none with Events: off)
                out.append(message.replace("\r\n", "\n"))
                if "EventList: Complete" in message:
                    break
        return normalise("".join(out))
    finally:
        writer.close()


async def test_the_sandbox_answers_queuestatus_like_asterisk_22():
    async with SandboxServer(SandboxSettings(port=0, queues=LAB_QUEUES, seed=1)) as server:
        got = await exchange(server.port)
    assert got == TRANSCRIPT.read_text()


async def test_a_queue_added_by_a_reload_is_listed_and_a_removed_one_is_not():
    async with SandboxServer(SandboxSettings(port=0, queues={"dialer": 2, "empty": 0}, seed=1)) as server:
        server.reload_queues({"dialer": 3, "Fresh": 1})  # queues.conf edited, then `queue reload all`
        assert [m.number for m in server.pbx.queues["dialer"].members] == [7001, 7002, 7003]
        assert [(m.number, m.name) for m in server.pbx.queues["Fresh"].members] == [(7004, "Agent 4")]
        assert server.pbx.find_queue("fresh") is server.pbx.queues["Fresh"]
        assert server.pbx.find_queue("empty") is None


@pytest.mark.realpbx
async def test_the_real_asterisk_answers_queuestatus_so(asterisk_lab):
    from tests.realpbx_lab import Instance

    instance = Instance.start(*asterisk_lab)
    try:
        assert await exchange(instance.port) == TRANSCRIPT.read_text()
    finally:
        instance.stop()
