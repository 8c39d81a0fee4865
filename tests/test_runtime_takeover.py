"""kill -9 of the pacing `dialer run` with answered calls up (issue 14, section 3): the process that takes the
calls over settles each one with its real outcome, read back from the AstDB entry our dialplan's h extension
wrote (dialer/ami/outcomes.py), instead of `unknown`; nobody reached is called again; the entries are deleted."""

from __future__ import annotations

import asyncio
import signal

from dialer.ami import outcomes
from dialer.campaigns import CampaignStore
from dialer.facts import FactStore, attempt_from_json, person_key
from dialer.runtime.engine import campaign_lease_key
from dialer.runtime.queues import ContactQueue
from tests.runtime_support import OriginateObserver, eventually, numbers, seen_group, setup_campaign
from tests.test_runtime_crash import start_dialer
from tests.test_runtime_engine import start_pbx

LIVE = ("answered", "abandoned", "opted_out")


async def test_a_killed_dialers_answered_calls_are_settled_from_astdb(redis_url, redis_client, tmp_path):
    # every callee answers (sandbox reference plan: 5 stays 4 s, 6/9/0 10 s, 1 20 s); time scale 1 and a 3 s lease:
    # a short call up at the kill has ended when the survivor takes over (only AstDB knows how), the long ones are
    # still up (tracked to their end)
    phones = [p for p in numbers(40, base="+331456731") if p[-1] in "15690"][:16]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False)
    store = CampaignStore(redis_client)
    pbx = await start_pbx(time_scale=1.0, queues={"dialer": 6})
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        async with OriginateObserver(pbx.port) as observer:
            for name in ("dialer-a", "dialer-b"):
                procs[name] = await start_dialer(redis_url, pbx.port, name, tmp_path)
            # killed 3 s after a 4 s call was answered (OriginateResponse Success): it ends while nobody listens,
            # before the takeover 2.25-4 s after the kill (3 s lease, renewed every 0.75 s)
            await eventually(lambda: any(n.endswith("5") for n in observer.by_number), timeout=60)
            await asyncio.sleep(3.0)
            same_pbx = seen_group(redis_client, pbx.port)
            holder = redis_client.get(campaign_lease_key("acme", campaign, same_pbx)).decode()
            procs[holder].send_signal(signal.SIGKILL)
            await procs[holder].wait()
            survivor = next(n for n in procs if n != holder)
            await eventually(lambda: store.get("acme", campaign).status == "completed", timeout=150)
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
    assert "taking over call" in err
    assert "read back from AstDB" in err  # calls gone at the takeover were settled from their stored outcome
    facts = FactStore(redis_client)
    queue = ContactQueue(redis_client, "acme", campaign)
    finals = queue.final_states()
    assert len(finals) == len(phones)
    for phone in phones:
        assert observer.by_number[phone] <= 1, phone  # nobody called twice
        attempts = facts.attempts("acme", phone)
        if observer.by_number[phone]:  # the call reached the PBX, so it was answered: never "unknown"
            assert [a.outcome for a in attempts if a.outcome not in LIVE] == [], phone
    # every entry is deleted once its call's outcome is stored (at most the few the killed process stored in its last
    # instant are left, and those calls are settled)
    recorded = {}
    for phone in phones:
        for call_id, raw in redis_client.hgetall(person_key("acme", phone, "att")).items():
            recorded[call_id.decode()] = attempt_from_json(raw).outcome
    left = [k.rsplit("/", 1)[1] for k in pbx.pbx.astdb.entries if k.startswith(f"/{outcomes.FAMILY}/")]
    assert len(left) <= 2, left
    assert all(recorded.get(call_id) in LIVE for call_id in left), left
