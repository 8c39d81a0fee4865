"""`dialer run` shutdown as an operator sees it: Ctrl-C drains, a second Ctrl-C exits at once (130) without losing
the calls in flight (their claims stay in Redis for the next process to resolve)."""

from __future__ import annotations

import asyncio
import signal

from dialer.campaigns import CampaignStore
from dialer.config import AsteriskServer
from dialer.runtime.engine import campaign_lease_key, pbx_group, process_key
from dialer.runtime.queues import ContactQueue
from tests.runtime_support import OriginateObserver, eventually, numbers, setup_campaign
from tests.test_runtime_crash import start_dialer
from tests.test_runtime_engine import start_pbx


async def test_second_ctrl_c_exits_at_once_and_keeps_calls_in_flight(redis_url, redis_client, tmp_path):
    # answering callees (1, 6, 9, 0) at real speed: every call lasts well over 10 s, so a drain would wait
    phones = [p for p in numbers(20, base="+331456910") if p[-1] in "1690"][:6]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1)
    pbx = await start_pbx(time_scale=1.0, queues={"dialer": 3})
    proc = None
    try:
        async with OriginateObserver(pbx.port) as observer:
            proc = await start_dialer(redis_url, pbx.port, "dialer-q", tmp_path)
            await eventually(lambda: sum(observer.by_number.values()) >= 3, timeout=30)
            proc.send_signal(signal.SIGINT)
            await asyncio.sleep(1.0)
            assert proc.returncode is None  # first Ctrl-C: draining, the calls are still up
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 5) == 130
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
    same_pbx = pbx_group([AsteriskServer("sandbox", "127.0.0.1", pbx.port, "dialer", "-")])
    assert redis_client.get(campaign_lease_key("acme", campaign, same_pbx)) is None  # campaign given back
    assert redis_client.get(process_key("dialer-q")) is None
    assert CampaignStore(redis_client).get("acme", campaign).status == "running"
