"""The campaign store: lifecycle moves as data, atomic under concurrency, recorded with who did them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis

from dialer.campaigns import (
    DEFAULTS,
    EDITABLE,
    STATUSES,
    TRANSITIONS,
    CampaignError,
    CampaignStore,
    campaign_key,
    start_problems,
    target_status,
)

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
READY = {"name": "Spring", "caller_id": "+33145678900", "seller_name": "Acme", "lists": ["l1"], "queue": "sales"}


@pytest.fixture
def store(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield CampaignStore(client)
    client.close()


def force_status(store: CampaignStore, tenant: str, campaign: str, status: str) -> None:
    store.redis.hset(campaign_key(tenant, campaign), "status", status)


def test_create_fills_defaults_and_records_creator(store):
    created = store.create("acme", {"name": "Spring"}, by="ann", at=AT)
    assert created.status == "draft" and created.created_by == "ann"
    assert created.config == {**DEFAULTS, "name": "Spring"}
    assert store.history("acme", created.id)[0]["action"] == "create"
    assert store.get("globex", created.id) is None
    assert [c.id for c in store.list("acme")] == [created.id] and store.list("globex") == []


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
@pytest.mark.parametrize("status", STATUSES)
def test_every_action_from_every_status_follows_the_table(store, action, status):
    campaign = store.create("acme", READY, by="ann", at=AT)
    force_status(store, "acme", campaign.id, status)
    expected = TRANSITIONS[action].get(status)
    if expected is None:
        with pytest.raises(CampaignError) as err:
            store.control("acme", campaign.id, action, by="bob", at=AT)
        assert err.value.code == "bad_transition"
        assert store.get("acme", campaign.id).status == status
    else:
        moved = store.control("acme", campaign.id, action, by="bob", at=AT)
        assert moved.status == expected and moved.updated_by == "bob"
        last = store.history("acme", campaign.id)[0]
        assert last == {"action": action, "from": status, "to": expected, "by": "bob", "at": "2026-03-02T10:00:00Z"}


def test_start_checks_what_the_campaign_lacks(store):
    campaign = store.create("acme", {"name": "Spring"}, by="ann", at=AT)
    with pytest.raises(CampaignError) as err:
        store.control("acme", campaign.id, "start", by="ann", at=AT)
    assert err.value.code == "campaign_incomplete" and err.value.field == "caller_id"
    fields = [f for f, _ in start_problems({"name": "x", "agent_kind": "ai"})]
    assert fields == ["caller_id", "seller_name", "lists", "ai_endpoint"]
    assert start_problems({**READY, "purpose": "informational", "seller_name": ""}) == []


def test_start_with_a_future_start_time_schedules(store):
    later = (AT + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    campaign = store.create("acme", {**READY, "starts_at": later}, by="ann", at=AT)
    assert store.control("acme", campaign.id, "start", by="ann", at=AT).status == "scheduled"
    assert target_status("start", "draft", {"starts_at": later}, AT + timedelta(hours=3)) == "running"
    assert store.control("acme", campaign.id, "activate", by="engine", at=AT).status == "running"


def test_configuration_changes_only_when_editable(store):
    campaign = store.create("acme", READY, by="ann", at=AT)
    for status in STATUSES:
        force_status(store, "acme", campaign.id, status)
        if status in EDITABLE:
            changed = store.update("acme", campaign.id, {"pacing_ratio": 1.5, "queue": None}, by="cy", at=AT)
            assert changed.config["pacing_ratio"] == 1.5 and "queue" not in changed.config
            assert changed.updated_by == "cy"
        else:
            with pytest.raises(CampaignError) as err:
                store.update("acme", campaign.id, {"pacing_ratio": 2}, by="cy", at=AT)
            assert err.value.code == "not_editable"
    with pytest.raises(KeyError):
        store.update("globex", campaign.id, {"pacing_ratio": 2}, by="cy", at=AT)


def test_null_resets_a_defaulted_field(store):
    campaign = store.create("acme", {**READY, "purpose": "informational"}, by="ann", at=AT)
    assert store.update("acme", campaign.id, {"purpose": None}, by="a", at=AT).config["purpose"] == "telemarketing"


def test_windows_must_not_be_inverted(store):
    with pytest.raises(CampaignError) as err:
        store.create("acme", {"name": "x", "schedule_windows": [{"days": ["mon"], "start": "18:00", "end": "09:00"}]},
                     by="a", at=AT)
    assert err.value.field == "schedule_windows[0].end"


def test_concurrent_pause_and_stop_cannot_both_win(store, redis_url):
    """Many rounds of two threads racing different moves from `running`: exactly one applies each time."""
    for _ in range(30):
        campaign = store.create("acme", READY, by="ann", at=AT)
        store.control("acme", campaign.id, "start", by="ann", at=AT)
        results: dict[str, str] = {}
        barrier = threading.Barrier(2)

        def act(action: str, campaign_id: str = campaign.id, barrier: threading.Barrier = barrier,
                results: dict[str, str] = results) -> None:
            own = CampaignStore(redis.Redis.from_url(redis_url, decode_responses=True))
            barrier.wait()
            try:
                results[action] = own.control("acme", campaign_id, action, by=action, at=AT).status
            except CampaignError as exc:
                results[action] = exc.code
            finally:
                own.redis.close()

        threads = [threading.Thread(target=act, args=(a,)) for a in ("pause", "stop")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = store.get("acme", campaign.id).status
        winners = [a for a, r in results.items() if r != "bad_transition"]
        # Either one wins alone, or they ran one after the other (pause, then stop from paused).
        moves = [h["action"] for h in store.history("acme", campaign.id)][:-2]
        assert len(moves) == len(winners) and sorted(moves) == sorted(winners)
        assert final in ("paused", "stopping")


def test_gate_campaign_carries_the_compliance_attributes(store):
    campaign = store.create("acme", {**READY, "purpose": "debt_collection", "voice": "artificial", "recording": True},
                            by="a", at=AT)
    gate = store.get("acme", campaign.id).gate_campaign()
    assert (gate.tenant, gate.purpose, gate.voice, gate.recording) == ("acme", "debt_collection", "artificial", True)


def test_an_ai_agent_campaign_is_an_artificial_voice_for_the_gate(store):
    """An AI voice agent is an artificial voice (FCC 24-17): a campaign left at the default `voice` must not
    escape the artificial-voice consent rules."""
    from rules import evaluate
    from rules.model import Contact, Facts, Lists

    ai = store.create("acme", {**READY, "agent_kind": "ai", "ai_endpoint": "PJSIP/ai@bot"}, by="a", at=AT)
    human = store.create("acme", dict(READY), by="a", at=AT)
    assert store.get("acme", ai.id).gate_campaign().voice == "artificial"
    assert store.get("acme", human.id).gate_campaign().voice == "human"
    at = datetime(2026, 1, 12, 15, 0, tzinfo=UTC)
    facts = Facts(lists=Lists(national={"*": False}), registry_copies={"national": at - timedelta(days=2)})
    ny = Contact("+12125550123")
    decision = evaluate(ny, store.get("acme", ai.id).gate_campaign(), facts, at)
    assert not decision.allowed and "WRITTEN_CONSENT_REQUIRED" in decision.codes()
    assert "WRITTEN_CONSENT_REQUIRED" not in evaluate(ny, store.get("acme", human.id).gate_campaign(), facts,
                                                      at).codes()


def test_a_power_campaign_without_a_ratio_dials_more_than_progressive(store):
    """The schema's default ratio used to be 1: a campaign switched to power mode without a ratio was progressive."""
    from dialer.runtime.policy import pacing_policy

    created = store.create("acme", {**READY, "pacing_mode": "power"}, by="ann", at=AT)
    assert pacing_policy(created.config).power_ratio == 2.0
    chosen = store.create("acme", {**READY, "pacing_mode": "power", "pacing_ratio": 3.5}, by="ann", at=AT)
    assert pacing_policy(chosen.config).power_ratio == 3.5
