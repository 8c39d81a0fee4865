"""A half-open connection whose peer stopped reading: the client's writes fill the socket buffers and block.
The keepalive must still detect it within its deadline, and no action may wait beyond its own timeout (an
Originate that could not be written is withdrawn, never reported as maybe-sent)."""

from __future__ import annotations

import asyncio
import time

from dialer.ami.calls import CallTracker
from dialer.ami.client import ActionTimeout, ConnectionLost, NotConnected, SendBlocked
from dialer.ami.originate import originate
from tests.test_ami_client import client_for, eventually, request, start_pbx

BIG = "x" * 50_000  # one action of 50 KB: a few hundred of them fill any loopback socket buffer


async def test_writes_blocked_by_a_peer_that_stopped_reading_are_bounded_and_the_ping_notices():
    pbx = await start_pbx()
    client = client_for(pbx, ping_interval=0.2, ping_timeout=0.5, reconnect=False)
    try:
        await client.connect()
        pbx.freeze()  # the peer reads nothing more and answers nothing; no FIN, no RST
        started = time.monotonic()
        pings = asyncio.gather(*(client.action("Ping", {"Padding": BIG}, timeout=1.0) for _ in range(600)),
                               return_exceptions=True)
        results = await asyncio.wait_for(pings, 10.0)  # bounded here so that a regression fails, not hangs
        waited = time.monotonic() - started
        # every action ended on its own deadline (or on the connection being dropped), none hung
        assert all(isinstance(r, ActionTimeout | SendBlocked | ConnectionLost | NotConnected) for r in results)
        assert waited < 5.0
        await eventually(lambda: not client.connected, timeout=3.0)  # the keepalive dropped the dead connection
    finally:
        await asyncio.wait_for(client.close(), 5.0)  # close() never hangs, even behind blocked writes
        pbx.unfreeze()
        await pbx.stop()


async def test_an_originate_stuck_behind_blocked_writes_is_withdrawn_not_left_in_doubt():
    pbx = await start_pbx()
    client = client_for(pbx, ping_interval=0, reconnect=False)
    tracker = CallTracker()
    try:
        await client.connect()
        pbx.freeze()
        filler = [asyncio.create_task(client.action("Ping", {"Padding": BIG}, timeout=30.0)) for _ in range(600)]
        await asyncio.sleep(0.3)  # the send buffers are full; the writes queue on the send lock
        req = request("5")
        started = time.monotonic()
        try:
            await asyncio.wait_for(originate(client, tracker, req, timeout=0.5), 5.0)
        except SendBlocked:  # nothing written (the first filler holds the socket): safe to place elsewhere or later
            pass
        else:
            raise AssertionError("an Originate that cannot be written must fail as not sent")
        assert time.monotonic() - started < 2.0
        assert tracker.get(req.call_id) is None  # withdrawn: no attempt left in doubt
        for task in filler:
            task.cancel()
        await asyncio.gather(*filler, return_exceptions=True)
    finally:
        await asyncio.wait_for(client.close(), 5.0)  # close() never hangs, even behind blocked writes
        pbx.unfreeze()
        await pbx.stop()
