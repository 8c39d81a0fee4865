"""Two `dialer run` processes on one campaign; the one pacing it is SIGKILLed mid-campaign. The other takes the
campaign and the dead process's claims over (AMI reconciliation): no contact lost, none dialed twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from dialer.campaigns import CampaignStore
from dialer.facts import FactStore
from dialer.runtime.engine import campaign_lease_key
from dialer.runtime.leases import estimates_key
from dialer.runtime.queues import ContactQueue
from tests.runtime_support import AT, SECRET_KEY, OriginateObserver, eventually, numbers, seen_group, setup_campaign
from tests.test_runtime_engine import queue_phone, start_pbx

ROOT = Path(__file__).resolve().parent.parent


async def start_dialer(redis_url: str, port: int, name: str, log_dir: Path,
                       drain: float = 10) -> asyncio.subprocess.Process:
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY,
           "DIALER_RUNTIME_LEASE_SECONDS": "3", "DIALER_LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT),
           "DIALER_RUNTIME_WRAPUP_SECONDS": "1"}  # the sandbox agents' 2 s wrap-up at time scale 0.5
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialer", "run", "--sandbox", f"127.0.0.1:{port}", "--process-id", name,
        "--clock-start", AT.isoformat(), "--clock-speed", "1", "--drain", str(drain),
        cwd=str(ROOT), env=env, stdout=(log_dir / f"{name}.out").open("w"), stderr=(log_dir / f"{name}.err").open("w"))


async def test_killing_the_pacing_process_loses_nothing_and_dials_nothing_twice(redis_url, redis_client, tmp_path):
    # callees that answer (1, 6, 9, 0: 10-20 simulated seconds) or are busy (2); time scale 0.5: answered calls
    # last 5-11 s, so the calls up at the kill are still up when the survivor takes over ~4 s later (kept and
    # tracked to their end), while calls that ended meanwhile are gone (unknown, counted).
    phones = [p for p in numbers(30, base="+331456730") if p[-1] not in "34578"][:18]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False)
    store = CampaignStore(redis_client)
    pbx = await start_pbx(time_scale=0.5, queues={"dialer": 6})
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        async with OriginateObserver(pbx.port) as observer:
            for name in ("dialer-a", "dialer-b"):
                procs[name] = await start_dialer(redis_url, pbx.port, name, tmp_path)
            await eventually(lambda: sum(observer.by_number.values()) >= 6, timeout=60)
            # the pacer saves its estimates after placing its first tick's calls: on a loaded machine the kill could
            # land between the two, and then there is nothing to adopt (what this test checks is the adoption)
            await eventually(lambda: redis_client.exists(estimates_key("acme", campaign)), timeout=30)
            same_pbx = seen_group(redis_client, pbx.port)
            lease = campaign_lease_key("acme", campaign, same_pbx)
            holder = redis_client.get(lease).decode()
            procs[holder].send_signal(signal.SIGKILL)
            await procs[holder].wait()
            killed_after = sum(observer.by_number.values())
            survivor = next(n for n in procs if n != holder)
            await eventually(lambda: store.get("acme", campaign).status == "completed", timeout=120)
            assert redis_client.get(lease).decode() == survivor
            procs[survivor].send_signal(signal.SIGINT)
            assert await asyncio.wait_for(procs[survivor].wait(), 30) == 0
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await pbx.stop()
    err = (tmp_path / f"{survivor}.err").read_text()
    assert "Traceback" not in err
    assert "taking over call" in err  # the survivor resolved the dead process's claims
    assert "saved estimates adopted" in err  # and paces on from the dead pacer's estimates, not the priors
    assert ", 0 still up" not in err  # calls still up at the takeover were kept and tracked to their end
    for phone in phones:
        assert phone not in err  # logs are masked
    queue = ContactQueue(redis_client, "acme", campaign)
    counts = queue.counts()
    assert (counts["ready"], counts["waiting"], counts["inflight"]) == (0, 0, 0)
    finals = queue.final_states()
    assert len(finals) == len(phones)  # no contact lost
    facts = FactStore(redis_client)
    by_phone = {queue_phone(queue, c): f for c, f in finals.items()}
    for phone in phones:
        assert observer.by_number[phone] <= 1, phone  # nobody dialed twice (max_attempts 1)
        attempts = facts.attempts("acme", phone)
        assert all(a.outcome != "reserved" for a in attempts), phone  # every reservation was resolved
        assert len(attempts) == by_phone[phone]["attempts"], phone
        assert observer.by_number[phone] <= len(attempts)  # nothing dialed without a gate reservation
    assert sum(observer.by_number.values()) > killed_after  # the survivor went on dialing
    assert all(n == 1 for n in observer.call_ids.values())
