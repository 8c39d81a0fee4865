"""Two dialer campaigns declared one legal campaign (`legal_campaign`, dialer/pacing/legal.py) share one abandon
window, against the sandbox PBX: a new list for an existing offer inherits the offer's room under the cap instead
of starting held (cap-room), waits a moment after joining, and the offer's window stays under the cap."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dialer.campaigns import CampaignStore, campaign_key
from dialer.livestats import stats_key
from dialer.pacing import RedisAbandonCounter
from dialer.runtime.report import campaign_summary
from tests.runtime_support import AT, setup_campaign
from tests.test_cli_campaigns import dialer
from tests.test_runtime_engine import start_pbx
from tests.test_runtime_shared_agents import AGENTS, CALLEES, campaign_phones, live_figures, run_one


async def test_a_new_list_paces_on_its_offers_window(redis_url, redis_client, tmp_path):
    store = CampaignStore(redis_client)
    # The offer's first list: finished, 500 clean live answers in the window (an hour before the new list starts).
    old = store.create("acme", {"name": "spring list 1", "legal_campaign": "spring-offer"}, by="tester", at=AT)
    store.control("acme", old.id, "archive", by="tester", at=AT)
    counter = RedisAbandonCounter(redis_client, "acme")
    for i in range(500):
        counter.record(old.id, f"earlier-{i}", AT.timestamp() - 3600, False)
    # The new list: no call of its own yet (alone, cap-room would hold it to calls with an agent reserved). It joins
    # the legal campaign "now" for as long as the test says: its configuration stamped an hour ahead of the wall
    # clock, then (once the dashboard has said so for a while) an hour back.
    new = setup_campaign(redis_client, tmp_path, campaign_phones(0, 150), pacing_mode="predictive", max_attempts=1,
                         recording=False, legal_campaign="spring-offer")

    def stamp(offset: float) -> None:
        at = datetime.fromtimestamp(time.time() + offset, UTC)
        redis_client.hset(campaign_key("acme", new), "updated_at",
                          at.isoformat(timespec="seconds").replace("+00:00", "Z"))

    stamp(3600)
    pbx = await start_pbx(queues={"dialer": 3}, callee_mode="profile", callee=CALLEES, agents=AGENTS,
                          time_scale=0.02, seed=11)
    seen: list[tuple[float, str, str, int]] = []
    gauges: dict[str, str] = {}
    settled: list[float] = []

    async def during(elapsed: float) -> None:
        raw = redis_client.hmget(stats_key("acme", new), ["pacing_reason", "pacing_why", "legal_members"])
        if raw[0] is not None:
            seen.append((elapsed, raw[0].decode(), raw[1].decode(), pbx.pbx.calls_up()))
        if raw[2] is not None:
            gauges["legal_members"] = raw[2].decode()
        joined = [s for s in seen if s[1] == "legal-join"]
        if not settled and joined and elapsed - joined[0][0] > 3.0:
            stamp(-3600)
            settled.append(elapsed)

    try:
        await run_one(redis_url, redis_client, tmp_path, new, pbx, during)
    finally:
        await pbx.stop()
    assert settled, sorted({s[1] for s in seen})
    before = {s[1] for s in seen if s[0] < settled[0]}  # (QUEUE_UNCHECKED too, until Asterisk says the queue exists)
    assert "legal-join" in before and not before & {"predictive", "backoff", "cap-room"}, sorted(before)
    joined = [s for s in seen if s[0] < settled[0] and s[1] == "legal-join"]
    assert "joined the legal campaign spring-offer moments ago" in joined[0][2]
    assert max(s[3] for s in joined) <= 3  # while joining: only calls with an agent reserved
    after = [s for s in seen if s[0] > settled[0]]
    assert "cap-room" not in {s[1] for s in after}  # the offer's room is its own: never held as a new window
    assert max(s[3] for s in after) > 3  # dialing ahead: more calls up than the 3 agents
    answers, abandons = live_figures(redis_client, "acme", new)
    assert answers >= 20
    # the law counts the offer: both lists' answers and abandons, under the cap
    window = counter.totals_of([old.id, new], AT.timestamp() + 3600, 24 * 3600)
    assert window == (500 + answers, abandons) and abandons <= 0.03 * window[0]
    assert float(gauges["legal_members"]) == 2
    # `dialer campaigns show`'s figures: both lists finished, both still in the offer's window
    summary = campaign_summary(redis_client, "acme", new, AT)
    assert summary["legal_campaign"]["members"] == sorted([old.id, new]) and summary["legal_campaign"]["dialing"] == 0
    assert summary["legal_campaign"]["abandons"]["answers_24h"] == window[0]
    # (the CLI counts at the wall clock's now, months after the test clock's calls: its windows are empty)
    shown = dialer(redis_url, "campaigns", "show", "--tenant", "acme", new).stdout
    assert "legal campaign spring-offer (2 campaigns, 0 may dial): abandons 24 h 0 of 0 live answers" in shown, shown
    print(f"\nlegal campaign: the new list {answers} live answers, {abandons} abandoned; peak calls up "
          f"{max(s[3] for s in after)} on 3 agents after {settled[0]:.1f} s at legal-join")
