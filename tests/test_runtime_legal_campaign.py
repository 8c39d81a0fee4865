"""Two dialer campaigns declared one legal campaign (`legal_campaign`, dialer/pacing/legal.py) share one abandon
window, against the sandbox PBX: a new list for an existing offer inherits the offer's room under the cap instead
of starting held (cap-room), waits a moment after joining, and the offer's window stays under the cap."""

from __future__ import annotations

from datetime import UTC, datetime

from dialer.campaigns import CampaignStore, campaign_key
from dialer.livestats import stats_key
from dialer.pacing import RedisAbandonCounter
from dialer.runtime.report import campaign_summary
from tests.runtime_support import AT, setup_campaign
from tests.test_runtime_engine import start_pbx
from tests.test_runtime_shared_agents import AGENTS, CALLEES, campaign_phones, live_figures, run_one


async def test_a_new_list_paces_on_its_offers_window(redis_url, redis_client, tmp_path, monkeypatch):
    monkeypatch.setattr("dialer.runtime.figures.SETTLE_SECONDS", 2.0)  # the join wait, shortened for the test
    store = CampaignStore(redis_client)
    # The offer's first list: finished, 500 clean live answers in the window (an hour before the new list starts).
    old = store.create("acme", {"name": "spring list 1", "legal_campaign": "spring-offer"}, by="tester", at=AT)
    store.control("acme", old.id, "archive", by="tester", at=AT)
    counter = RedisAbandonCounter(redis_client, "acme")
    for i in range(500):
        counter.record(old.id, f"earlier-{i}", AT.timestamp() - 3600, False)
    # The new list: no call of its own yet (alone, cap-room would hold it to calls with an agent reserved), its
    # configuration written a moment ago (it joined the legal campaign now).
    new = setup_campaign(redis_client, tmp_path, campaign_phones(0, 150), pacing_mode="predictive", max_attempts=1,
                         recording=False, legal_campaign="spring-offer")
    redis_client.hset(campaign_key("acme", new), "updated_at",
                      datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))
    pbx = await start_pbx(queues={"dialer": 3}, callee_mode="profile", callee=CALLEES, agents=AGENTS,
                          time_scale=0.02, seed=11)
    seen: list[tuple[float, str, str, int]] = []
    gauges: dict[str, str] = {}

    async def during(elapsed: float) -> None:
        raw = redis_client.hmget(stats_key("acme", new), ["pacing_reason", "pacing_why", "legal_members"])
        if raw[0] is not None:
            seen.append((elapsed, raw[0].decode(), raw[1].decode(), pbx.pbx.calls_up()))
        if raw[2] is not None:
            gauges["legal_members"] = raw[2].decode()

    try:
        await run_one(redis_url, redis_client, tmp_path, new, pbx, during)
    finally:
        await pbx.stop()
    joined = [s for s in seen if s[1] == "legal-join"]
    assert joined and "joined the legal campaign spring-offer moments ago" in joined[0][2], sorted({s[1] for s in seen})
    assert max(s[3] for s in joined) <= 3  # while joining: only calls with an agent reserved
    after = [s for s in seen if s[0] > joined[-1][0]]
    assert "cap-room" not in {s[1] for s in after}  # the offer's room is its own: never held as a new window
    assert max(s[3] for s in after) > 3  # dialing ahead: more calls up than the 3 agents
    answers, abandons = live_figures(redis_client, "acme", new)
    assert answers >= 20
    # the law counts the offer: both lists' answers and abandons, under the cap
    window = counter.totals_of([old.id, new], AT.timestamp() + 3600, 24 * 3600)
    assert window == (500 + answers, abandons) and abandons <= 0.03 * window[0]
    assert float(gauges["legal_members"]) == 2
    # `dialer campaigns report`: both lists finished, both still in the offer's window
    summary = campaign_summary(redis_client, "acme", new, AT)
    assert summary["legal_campaign"]["members"] == sorted([old.id, new]) and summary["legal_campaign"]["dialing"] == 0
    assert summary["legal_campaign"]["abandons"]["answers_24h"] == window[0]
    print(f"\nlegal campaign: the new list {answers} live answers, {abandons} abandoned; peak calls up "
          f"{max(s[3] for s in after)} on 3 agents after {len(joined)} readings at legal-join")
