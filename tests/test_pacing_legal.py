"""Legal campaigns (dialer/pacing/legal.py): dialer campaigns declared one calling campaign in law share one abandon
window; each member paces on its part of the room, so the members together stay within it (issue 15 s.4)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
import redis

from dialer.audit import AuditLog
from dialer.campaigns import CampaignError, CampaignStore, campaign_key
from dialer.pacing import PacingMode, PacingPolicy, PacingState, PolicyError, RedisAbandonCounter, Survival
from dialer.pacing.abandons import DAY, HOUR
from dialer.pacing.guard import abandon_verdict
from dialer.pacing.legal import LEGAL_JOIN, legal_groups, legal_key, member_share
from dialer.pacing.pool import plan_on_pool
from dialer.scenario import ScenarioError, scenario_from_mapping
from dialer.simulate import simulate_scenario

T0 = 1_800_000_000.0
CAP = 0.03


def room(pair: tuple[int, int]) -> float:
    return CAP * pair[0] - pair[1]


@pytest.mark.parametrize("members", [1, 2, 3, 5])
def test_the_members_parts_of_the_room_add_up_to_at_most_the_room(members: int) -> None:
    for answers, abandons in itertools.product(range(0, 700, 7), range(0, 25)):
        legal = (answers, abandons)
        share = member_share(legal, members)
        assert members * room(share) <= room(legal) + 1e-9, (legal, share)
        if answers and share[0]:  # the same rate or above: over the cap together is over it for each
            assert share[1] / share[0] >= abandons / answers - 1e-12
        # each member's rules hold it as the whole window's would: over the cap, every member is held
        if abandons > CAP * answers:
            assert abandon_verdict(CAP, share).reason in ("cap-reached", "cap-room")
        # a member may place a call that could be abandoned only while the window has room for one per member
        if not abandon_verdict(CAP, share).reserved_only:
            assert abandons + members <= CAP * answers + 1e-9
    assert member_share((1000, 20), 1) == (1000, 20)
    assert member_share((1000, 20), 2) == (500, 10)
    assert member_share((1001, 21), 2) == (500, 11)


def test_a_new_list_inherits_the_offers_room() -> None:
    """A new dialer campaign alone has no room for an abandon (cap-room); as a member of a legal campaign whose
    window holds the offer's earlier calls, it may overdial from its first call (its part of the room)."""
    assert abandon_verdict(CAP, (0, 0)).reason == "cap-room"
    assert not abandon_verdict(CAP, member_share((1000, 20), 2)).reserved_only  # room 10, 5 each
    assert not abandon_verdict(CAP, member_share((1000, 28), 2)).reserved_only  # room 2: one abandon each
    assert abandon_verdict(CAP, member_share((1000, 29), 2)).reason == "cap-room"  # room 1: not one each
    flat = Survival(tuple(max(0.0, 1 - i / 30) for i in range(31)), 1.0, 15.0)
    state = PacingState(now=0.0, free_agents=5, answer_rate=0.3, ring_answered=flat, ring_other=flat, handle=flat)
    policy = PacingPolicy(mode=PacingMode.PREDICTIVE)
    alone = plan_on_pool(policy, state, key="new", mine=(), others=[], legal=(0, 0))
    member = plan_on_pool(policy, state, key="new", mine=(), others=[], legal=member_share((1000, 20), 2))
    assert alone.calls == 5 and member.calls > 5  # progressive (cap-room) / dialing ahead
    joining = plan_on_pool(policy, state, key="new", mine=(), others=[], legal=member_share((1000, 20), 2),
                           joining="spring-offer")
    assert joining.calls == 5 and joining.verdict.reason == LEGAL_JOIN
    assert "joined the legal campaign spring-offer moments ago" in joining.verdict.text


def test_groups_count_finished_members_and_split_between_those_that_may_dial() -> None:
    groups = legal_groups([
        ("c1", "completed", {"legal_campaign": "offer"}),
        ("c2", "running", {"legal_campaign": "offer"}),
        ("c3", "draft", {"legal_campaign": "offer"}),
        ("c4", "running", {}),
        ("c5", "running", {"legal_campaign": "other"}),
        ("c6", "archived", {"legal_campaign": "other"}),
        ("c7", "running", {"legal_campaign": "no spaces"}),
    ])
    assert groups["offer"].members == ("c1", "c2", "c3") and groups["offer"].dialing == 2
    assert groups["other"].members == ("c5", "c6") and groups["other"].dialing == 1
    assert set(groups) == {"offer", "other"}
    assert legal_key({}) == legal_key({"legal_campaign": None}) == ""
    with pytest.raises(PolicyError, match="legal_campaign"):
        legal_key({"legal_campaign": "no spaces"})


def test_redis_sums_the_members_windows(redis_client: redis.Redis) -> None:
    counter = RedisAbandonCounter(redis_client, "acme")
    for i in range(100):
        counter.record("old", f"o{i}", T0 - 3 * DAY, abandoned=i < 2)  # in the 30-day window only
        counter.record("new", f"n{i}", T0 - HOUR, abandoned=i < 1)
    counter.record("new", "n0", T0 - HOUR, abandoned=False)  # a replay: counted once
    assert counter.totals_of(["old", "new"], T0, 30 * DAY) == (200, 3)
    assert counter.totals_of(["old", "new"], T0, DAY) == (100, 1)
    stats = counter.stats_of(["old", "new"], T0)
    assert (stats.answers_24h, stats.abandons_30d) == (100, 3)
    assert counter.totals_of([], T0, DAY) == (0, 0)


def test_the_setting_and_its_changes_are_audited(redis_client: redis.Redis) -> None:
    store = CampaignStore(redis_client)
    at = datetime(2026, 12, 7, 9, tzinfo=UTC)
    made = store.create("acme", {"name": "spring", "legal_campaign": "spring-offer"}, by="ana", at=at)
    store.update("acme", made.id, {"legal_campaign": "summer-offer"}, by="bob", at=at)
    store.update("acme", made.id, {"legal_campaign": None}, by="bob", at=at)
    entries = [e for e in AuditLog(redis_client).entries("acme") if e.kind == "campaign_control"]
    assert [e.payload.get("legal_campaign") for e in entries] == [
        {"from": None, "to": "spring-offer"}, {"from": "spring-offer", "to": "summer-offer"},
        {"from": "summer-offer", "to": None}]
    assert [e.actor for e in entries] == ["ana", "bob", "bob"]


def _day(legal: bool) -> dict:
    keys = {"legal_campaign": "offer"} if legal else {}
    return {"duration": "2h", "world": {"agents": 8, "answer_rate": 0.2},
            "campaigns": [{"name": "a", "mode": "predictive", **keys}, {"name": "b", "mode": "predictive", **keys}]}


def test_the_simulator_paces_members_on_one_window() -> None:
    """Two predictive lists of one offer on one queue: their window is one, each keeps to its part of the room, so
    the offer ends under the cap (a list alone may pass it: the law counts the offer)."""
    for seed in (1, 2, 3):
        day = {**_day(True), "seed": seed}
        r = simulate_scenario(scenario_from_mapping(day))
        answers = sum(c.live_answers for c in r.campaigns)
        abandons = sum(c.abandons for c in r.campaigns)
        assert abandons <= CAP * answers, (seed, [(c.live_answers, c.abandons) for c in r.campaigns])
        assert all(c.calls_placed > 50 for c in r.campaigns)
    with pytest.raises(ScenarioError, match=r"campaigns\[0\].legal_campaign"):
        scenario_from_mapping({**_day(False), "campaigns": [{"name": "a", "legal_campaign": "a b"}]})


def test_the_legal_campaign_is_declared_before_the_first_call(redis_client: redis.Redis) -> None:
    """Once a campaign may have dialed, its calls are in its legal campaign's window: changing the key then would move
    them into another window (or out of one). Refused with its own code; its other settings stay editable."""
    store = CampaignStore(redis_client)
    at = datetime(2026, 12, 7, 9, tzinfo=UTC)
    made = store.create("acme", {"name": "spring", "legal_campaign": "spring-offer"}, by="ana", at=at)
    store.update("acme", made.id, {"legal_campaign": "summer-offer"}, by="ana", at=at)  # a draft: still declaring
    redis_client.hset(campaign_key("acme", made.id), "status", "paused")  # it ran, and was paused
    for key in ("spring-offer", None):
        with pytest.raises(CampaignError) as err:
            store.update("acme", made.id, {"legal_campaign": key}, by="bob", at=at)
        assert err.value.code == "legal_campaign_fixed" and err.value.field == "legal_campaign"
    stored = store.get("acme", made.id)
    assert stored is not None and stored.config["legal_campaign"] == "summer-offer"
    assert store.update("acme", made.id, {"pacing_ratio": 1.5}, by="bob", at=at).config["pacing_ratio"] == 1.5
