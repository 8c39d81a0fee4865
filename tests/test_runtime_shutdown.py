"""`dialer run` shutdown as an operator sees it: Ctrl-C drains, a second Ctrl-C exits at once (130) without losing
the calls in flight (their claims stay in Redis for the next process to resolve)."""

from __future__ import annotations

import asyncio
import signal

from dialer.campaigns import CampaignStore
from dialer.runtime.engine import campaign_lease_key, process_key
from dialer.runtime.queues import ContactQueue
from tests.runtime_support import OriginateObserver, eventually, numbers, seen_group, setup_campaign
from tests.test_runtime_crash import start_dialer
from tests.test_runtime_engine import start_pbx


async def test_second_ctrl_c_exits_at_once_and_keeps_calls_in_flight(redis_url, redis_client, tmp_path):
    # callees who answer and stay 20 s (ending in 1), at real speed, and a 60 s drain: the first Ctrl-C would wait
    # for them; the second must not. (Deadlines are generous for a loaded machine: calls still up at the exit and
    # the log's words prove it did not wait, since every call would have ended first.)
    phones = [p for p in numbers(60, base="+331456910") if p[-1] == "1"][:6]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1)
    pbx = await start_pbx(time_scale=1.0, queues={"dialer": 3})
    proc = None
    try:
        async with OriginateObserver(pbx.port) as observer:
            proc = await start_dialer(redis_url, pbx.port, "dialer-q", tmp_path, drain=60)
            await eventually(lambda: sum(observer.by_number.values()) >= 3, timeout=30)
            proc.send_signal(signal.SIGINT)
            await asyncio.sleep(1.0)
            assert proc.returncode is None  # first Ctrl-C: draining, the calls are still up
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 15) == 130
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await pbx.stop()
    err = (tmp_path / "dialer-q.err").read_text()
    assert "Traceback" not in err
    assert "SIGINT: shutting down" in err and "SIGINT again: exiting without waiting" in err
    assert "calls still in flight at shutdown" in err
    for phone in phones:
        assert phone not in err  # logs are masked
    queue = ContactQueue(redis_client, "acme", campaign)
    assert queue.counts()["inflight"] >= 3  # the calls up at exit are not lost: their claims wait to be resolved
    same_pbx = seen_group(redis_client, pbx.port)
    assert redis_client.get(campaign_lease_key("acme", campaign, same_pbx)) is None  # campaign given back
    assert redis_client.get(process_key("dialer-q")) is None
    assert CampaignStore(redis_client).get("acme", campaign).status == "running"
