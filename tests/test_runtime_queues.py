"""Contact queues on a real redis-server: claim, reschedule, finalize, leases, takeover; retry and schedule rules."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from dialer.pacing import PolicyError
from dialer.runtime.policy import RetryPolicy, after_denial, pacing_policy, schedule_opens_at, windows_from_config
from dialer.runtime.queues import ContactQueue, QueuedContact
from rules.model import Decision, Reason

T0 = 1_772_528_400.0  # 2026-03-03T09:00:00Z


def contact(i: int, priority: int = 0, phone: str | None = None) -> QueuedContact:
    return QueuedContact(f"c{i}", phone or f"+3314567{i:04d}", "FR", "75011", None, ("Europe/Paris",), priority)


def claim(q: ContactQueue, n: int, owner: str = "p1", now: float = T0, lease: float = 1e12, tag: str = "x"):
    return q.claim(n, owner=owner, now=now, lease_until=lease, call_ids=[f"{tag}{i}" for i in range(n)],
                   servers=["s"] * n)


def test_claims_follow_priority_then_order_and_are_exclusive(redis_client):
    q = ContactQueue(redis_client, "t1", "c1")
    assert q.add([contact(1), contact(2, priority=5), contact(3)], at=T0) == {"added": 3, "known": 0, "duplicates": 0}
    assert q.add([contact(1)], at=T0 + 5)["known"] == 1  # loading again changes nothing
    first = claim(q, 2)
    assert [c.contact.contact_id for c in first] == ["c2", "c1"]
    assert [c.call_id for c in first] == ["x0", "x1"]
    assert q.state_of("c2") == "inflight" and q.claims()["c2"]["owner"] == "p1"
    rest = claim(q, 5, owner="p2", tag="y")
    assert [c.contact.contact_id for c in rest] == ["c3"]
    assert claim(q, 5, tag="z") == []


def test_same_priority_contacts_are_claimed_in_the_order_given(redis_client):
    q = ContactQueue(redis_client, "t1", "c1")
    q.add([contact(i) for i in (10, 2, 33, 1)], at=T0)
    assert [c.contact.contact_id for c in claim(q, 4)] == ["c10", "c2", "c33", "c1"]


def test_a_number_is_queued_once_per_campaign(redis_client):
    q = ContactQueue(redis_client, "t1", "c1")
    totals = q.add([contact(1, phone="+33145670001"), contact(2, phone="+33145670001")], at=T0)
    assert totals == {"added": 1, "known": 0, "duplicates": 1}
    assert q.final_state("c2")["reason"] == "duplicate_number" and q.final_state("c2")["detail"] == "c1"


def test_concurrent_claims_never_share_a_contact(redis_client, redis_url):
    import redis

    q = ContactQueue(redis_client, "t1", "c1")
    q.add([contact(i) for i in range(500)], at=T0)
    got: list[list[str]] = [[] for _ in range(4)]

    def worker(k: int) -> None:
        own = ContactQueue(redis.Redis.from_url(redis_url), "t1", "c1")
        while True:
            batch = claim(own, 7, owner=f"p{k}", tag=f"w{k}-{len(got[k])}-")
            if not batch:
                return
            got[k] += [c.contact.contact_id for c in batch]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [c for part in got for c in part]
    assert len(everything) == 500 and len(set(everything)) == 500


def test_retry_waits_until_due_and_counts_attempts(redis_client):
    q = ContactQueue(redis_client, "t1", "c1")
    q.add([contact(1)], at=T0)
    [c] = claim(q, 1)
    assert q.retry(c, T0 + 900, reason="retry_busy", count_attempt=True, at=T0)
    assert q.retry(c, T0 + 900, reason="again", count_attempt=True, at=T0) is False  # settled once only
    assert q.state_of("c1") == "wait" and q.attempts("c1") == 1
    assert q.last_step("c1")["reason"] == "retry_busy"
    assert claim(q, 1, now=T0 + 899) == []
    [again] = claim(q, 1, now=T0 + 900, tag="second")
    assert again.attempts == 1 and again.call_id == "second0"
    assert q.finish(again, reason="answered", at=T0 + 950, count_attempt=True, disposition="answered")
    final = q.final_state("c1")
    assert (final["reason"], final["attempts"], final["disposition"]) == ("answered", 2, "answered")
    assert q.counts(T0 + 1000) == {"ready": 0, "waiting": 0, "due": 0, "inflight": 0, "final": 1}


def test_requeue_does_not_count_and_keeps_priority(redis_client):
    q = ContactQueue(redis_client, "t1", "c1")
    q.add([contact(1, priority=3), contact(2)], at=T0)
    [c] = claim(q, 1)
    assert c.contact.contact_id == "c1"
    assert q.requeue(c, reason="server_unavailable", at=T0 + 1)
    assert q.attempts("c1") == 0
    assert claim(q, 1, tag="n")[0].contact.contact_id == "c1"


def test_expired_claims_are_taken_over_once_and_the_old_owner_cannot_settle(redis_client):
    q = ContactQueue(redis_client, "t1", "c1")
    q.add([contact(1), contact(2)], at=T0)
    old = claim(q, 2, owner="dead", lease=100.0)
    assert q.renew("dead", ["c2"], 300.0) == 1  # c2's lease is renewed, c1's is not
    taken = q.take_over_expired(owner="p2", now_wall=200.0, lease_until=500.0)
    assert [(t.claim.contact.contact_id, t.previous_owner, t.claim.call_id) for t in taken] == [("c1", "dead", "x0")]
    assert q.take_over_expired(owner="p3", now_wall=200.0, lease_until=500.0) == []
    assert q.renew("dead", ["c1"], 900.0) == 0  # no longer its claim
    assert q.claims()["c1"]["owner"] == "p2"
    # the call id is what proves a claim: the taker settles with it, the old owner's settle then finds nothing
    assert q.finish(taken[0].claim, reason="max_attempts", at=T0, count_attempt=True)
    assert q.retry(old[0], T0, reason="late", count_attempt=True, at=T0) is False
    assert q.attempts("c1") == 1


def test_retry_rules_and_max_attempts():
    policy = RetryPolicy.from_config({"max_attempts": 3, "retry_rules": {"busy": 15, "no_answer": 120}})
    at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert policy.after_call("busy", 1, at).at == at + timedelta(minutes=15)
    assert policy.after_call("no_answer", 2, at).at == at + timedelta(hours=2)
    assert policy.after_call("busy", 3, at).reason == "max_attempts"
    assert policy.after_call("answered", 1, at).action == "final"
    assert policy.after_call("opted_out", 1, at).reason == "opted_out"
    assert policy.after_call("failed", 1, at).reason == "not_retried"
    unknown = policy.after_call("unknown", 1, at)
    # the call may have been answered: as long as after an answered call (issue 14)
    assert (unknown.action, unknown.at, unknown.count_attempt) == ("retry", at + timedelta(hours=24), True)


def test_gate_denials():
    at = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    hours = Decision(False, at, (Reason("OUTSIDE_CALLING_HOURS", "", "fr/hours", ""),), at + timedelta(hours=1))
    step = after_denial(hours, at)
    assert (step.action, step.at, step.count_attempt) == ("retry", at + timedelta(hours=1), False)
    registry = after_denial(Decision(False, at, (Reason("NATIONAL_REGISTRY", "", "fr/bloctel", ""),)), at)
    assert (registry.action, registry.detail) == ("final", "NATIONAL_REGISTRY")
    busy = after_denial(Decision(False, at, (Reason("STATE_UNAVAILABLE", "", "gate", ""),)), at)
    assert busy.action == "retry" and busy.at == at + timedelta(seconds=15)


def test_campaign_schedule_windows_in_the_contacts_zone():
    windows = windows_from_config([{"days": ["mon", "tue"], "start": "10:30", "end": "12:00"}])
    paris = ("Europe/Paris",)
    tuesday_10 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    assert schedule_opens_at(windows, paris, tuesday_10) == datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
    assert schedule_opens_at(windows, paris, tuesday_10 + timedelta(minutes=45)) is None
    after = schedule_opens_at(windows, paris, datetime(2026, 3, 3, 11, 0, tzinfo=UTC))
    assert after == datetime(2026, 3, 9, 9, 30, tzinfo=UTC)  # next Monday
    assert schedule_opens_at((), paris, tuesday_10) is None


def test_pacing_settings_from_the_campaign():
    assert pacing_policy({"pacing_mode": "predictive", "abandon_cap": 0.01}).mode == "predictive"
    assert pacing_policy({"pacing_mode": "power", "pacing_ratio": 2.5}).power_ratio == 2.5
    assert pacing_policy({"agent_kind": "ai", "pacing_mode": "predictive"}).mode == "agentless"
    with pytest.raises(PolicyError):
        pacing_policy({"pacing_mode": "preview"})  # started by an agent, not paced


def test_a_queue_of_the_old_layout_is_converted_once_and_nobody_is_queued_twice(redis_client):
    """A campaign running when the compact layout is deployed: its ready, waiting, in-flight and final contacts keep
    their place, and the whole-list loader does not queue any of them again."""
    import json

    q = ContactQueue(redis_client, "t1", "c1")
    p = "t:{t1}:campaign:c1:q:"

    def data(i: int, priority: int = 0) -> str:
        return json.dumps({"phone": f"+3314567{i:04d}", "country": "FR", "postal_code": "75011", "state": None,
                           "zones": ["Europe/Paris"], "priority": priority})

    # as the layout before issue 18's compact queue wrote them
    redis_client.hset(p + "state", mapping={"c1": "ready", "c2": "ready", "c3": "wait", "c4": "inflight",
                                            "c5": "final"})
    redis_client.hset(p + "data", mapping={"c1": data(1), "c2": data(2, 5), "c3": data(3), "c4": data(4)})
    redis_client.zadd(p + "ready", {"c1": 9e10 + T0, "c2": 4e10 + T0})
    redis_client.zadd(p + "wait", {"c3": T0 + 900})
    redis_client.hset(p + "attempts", mapping={"c3": 1, "c4": 1, "c5": 2})
    redis_client.hset(p + "last", "c3", json.dumps({"step": "retry", "reason": "retry_busy", "at": T0,
                                                    "due": T0 + 900}))
    redis_client.hset(p + "claims", "c4", json.dumps({"owner": "p1", "call_id": "k4", "server": "s", "claimed_at": T0,
                                                      "lease": 50.0}))
    redis_client.zadd(p + "inflight", {"c4": 50.0})
    redis_client.hset(p + "final", "c5", json.dumps({"reason": "answered", "detail": "", "at": T0, "attempts": 2}))
    redis_client.hset(p + "phones", mapping={f"+3314567{i:04d}": f"c{i}" for i in range(1, 6)})

    assert q.upgrade_layout() == 5 and q.upgrade_layout() == 0
    assert not redis_client.exists(p + "state", p + "data", p + "attempts", p + "last", p + "ready")
    assert q.counts(T0) == {"ready": 2, "waiting": 1, "due": 0, "inflight": 1, "final": 1}
    assert q.final_reasons() == {"answered": 1} and q.tally()["attempts"] == 4
    assert q.add([contact(i) for i in range(1, 7)], at=T0) == {"added": 1, "known": 5, "duplicates": 0}
    assert q.last_step("c3") == {"step": "retry", "reason": "retry_busy", "at": T0, "due": T0 + 900}
    assert [c.contact.contact_id for c in claim(q, 3)] == ["c2", "c1", "c6"]  # priority, then the old order
    [retried] = claim(q, 1, now=T0 + 900, tag="r")
    assert (retried.contact.contact_id, retried.attempts, retried.contact.zones) == ("c3", 1, ("Europe/Paris",))
    [held] = [c for c in q.find(contact_id="c4")]
    assert held.state == "inflight" and held.attempts == 1
    # the claim made before the upgrade settles with its call id
    taken = q.take_over_expired(owner="p2", now_wall=100.0, lease_until=3e12)
    assert [(t.claim.contact.contact_id, t.claim.call_id, t.claim.contact.phone) for t in taken] == [
        ("c4", "k4", "+33145670004")]
    assert q.finish(taken[0].claim, reason="answered", at=T0, count_attempt=True)
    assert q.final_state("c4")["attempts"] == 2
