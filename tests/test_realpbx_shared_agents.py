"""Campaigns that share agents on the real Asterisk 22 lab (the `realpbx` tier; see tests/test_realpbx.py for the
lab, its fixtures and when the tier runs). Ground truth is Asterisk's own: the calls up on it and its log.

* two progressive campaigns on the lab's one-agent queue without wrap-up (`solo0`): never more than one call up,
  nobody abandoned (each campaign counting the agent as its own put two calls on it);
* a campaign on `dialer` (agents 7001-7005) next to one on `sim-agents` (7001-7003): the agents are counted once,
  never more than 5 calls up between them (8 if each queue's members were counted apart).
"""

from __future__ import annotations

import asyncio

import pytest

from dialer.campaigns import CampaignStore
from dialer.livestats import dispositions_key
from tests import test_realpbx as realpbx
from tests.realpbx_lab import LiveCalls
from tests.runtime_support import numbers, setup_campaign

# Issue 15 on the real PBX: slow as well, so the CI tier (issue 14) stays under 8 min; DIALER_SLOW_TESTS=1 runs it.
pytestmark = [pytest.mark.realpbx, pytest.mark.slow]
# the tier's fixtures (the lab, one instance per test, the dialer processes a test starts) and helpers
asterisk_lab, pbx, running = realpbx.asterisk_lab, realpbx.pbx, realpbx.running
start_dialer, stop_dialer, write_config = realpbx.start_dialer, realpbx.stop_dialer, realpbx.write_config


def campaigns_on(redis_client, tmp_path, queues: list[str], count: int) -> list[str]:
    made = []
    for i, queue in enumerate(queues):
        (tmp_path / f"c{i}").mkdir()
        # the lab's callees by last digit: 0 answers and stays 10 s, 5 answers and stays 4 s
        phones = [p for p in numbers(100, base=f"+33145737{i}") if p[-1] in "05"][:count]
        made.append(setup_campaign(redis_client, tmp_path / f"c{i}", phones, list_id=f"l{i}",
                                   pacing_mode="progressive", max_attempts=1, recording=False, queue=queue))
    return made


async def peak_while_running(redis_url, redis_client, pbx, made, config, tmp_path, running, timeout: float) -> int:
    store = CampaignStore(redis_client)
    deadline = asyncio.get_running_loop().time() + timeout
    async with LiveCalls(pbx.port) as live:
        running.append(await start_dialer(redis_url, config, "d1", tmp_path))
        while any(store.get("acme", c).status != "completed" for c in made):
            assert asyncio.get_running_loop().time() < deadline, "campaigns not completed in time"
            await asyncio.sleep(0.2)
    assert await stop_dialer(running[0]) == 0
    return live.peak


async def test_two_progressive_campaigns_on_one_agent(pbx, redis_url, redis_client, tmp_path, running):
    made = campaigns_on(redis_client, tmp_path, ["solo0", "solo0"], 5)
    peak = await peak_while_running(redis_url, redis_client, pbx, made, write_config(tmp_path, pbx), tmp_path,
                                    running, 300)
    assert peak == 1
    for campaign in made:
        raw = {k.decode(): int(v) for k, v in redis_client.hgetall(dispositions_key("acme", campaign)).items()}
        assert raw.get("answered") == 5 and not raw.get("abandoned"), raw
    assert pbx.log_text().count("DialerAbandon,CallID") == 0


async def test_an_agent_in_two_queues_is_counted_once(pbx, redis_url, redis_client, tmp_path, running):
    made = campaigns_on(redis_client, tmp_path, ["dialer", "sim-agents"], 10)
    peak = await peak_while_running(redis_url, redis_client, pbx, made, write_config(tmp_path, pbx), tmp_path,
                                    running, 400)
    assert 3 <= peak <= 5  # the 5 agents of the two queues, each once


async def test_two_progressive_campaigns_on_five_agents_with_wrap_up(pbx, redis_url, redis_client, tmp_path, running):
    """The issue's first finding, on the real PBX: two progressive campaigns on one queue of 5 agents (wrap-up
    5 s): never more calls up than agents, nobody abandoned."""
    made = campaigns_on(redis_client, tmp_path, ["dialer", "dialer"], 10)
    peak = await peak_while_running(redis_url, redis_client, pbx, made, write_config(tmp_path, pbx), tmp_path,
                                    running, 400)
    assert 2 <= peak <= 5
    assert pbx.log_text().count("DialerAbandon,CallID") == 0
    for campaign in made:
        raw = {k.decode(): int(v) for k, v in redis_client.hgetall(dispositions_key("acme", campaign)).items()}
        assert raw.get("answered") == 10 and not raw.get("abandoned"), raw
