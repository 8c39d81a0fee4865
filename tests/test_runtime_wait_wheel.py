"""The queue's contacts waiting for a retry (the wait wheel, dialer/runtime/queue_lua.py) on a real redis-server:
never promoted before their due time, promoted in due order within their priority, removable (erasure), a queue of
the layout before (the sorted set `wait`) served and converted, and under issue 18's 150 B per waiting contact."""

from __future__ import annotations

import random

from dialer.runtime.queue_lua import LAP_MS, PROMOTE_BATCH
from dialer.runtime.queues import ContactQueue, QueuedContact, queue_erase, queue_prefix

T0 = 1_772_528_400.0  # 2026-03-03T09:00:00Z
LAP = LAP_MS / 1000  # seconds: items this far apart share a minute list


def contact(i: int, priority: int = 0) -> QueuedContact:
    return QueuedContact(f"c{i}", f"+3314567{i:04d}", "FR", "75011", None, ("Europe/Paris",), priority)


def claim(q: ContactQueue, n: int, now: float, tag: str = "x"):
    return q.claim(n, owner="p1", now=now, lease_until=1e12, call_ids=[f"{tag}{i}" for i in range(n)],
                   servers=["s"] * n)


def waiting(q: ContactQueue, dues: dict[int, float], priority: dict[int, int] | None = None) -> None:
    """Queue the contacts, call each once and let it wait until its due time."""
    q.add([contact(i, (priority or {}).get(i, 0)) for i in dues], at=T0)
    for c in claim(q, len(dues), T0, tag="w"):
        assert q.retry(c, dues[int(c.contact.contact_id[1:])], reason="retry_busy", count_attempt=True, at=T0)


def test_a_waiting_contact_is_never_promoted_before_its_due_time_nor_left_behind_after_it(redis_client):
    rng = random.Random(18)
    # due times over three days: many share a wheel list a lap or more apart, some share a ms, some are sub-ms
    dues = {i: T0 + 1 + rng.choice([rng.uniform(0, 3 * 86400), rng.randrange(0, 3) * LAP + 61.5,
                                    round(rng.uniform(0, 600), 4)]) for i in range(400)}
    q = ContactQueue(redis_client, "t1", "c1")
    waiting(q, dues)
    assert q.counts(T0) == {"ready": 0, "waiting": 400, "due": 0, "inflight": 0, "final": 0}
    assert q.next_due() == min(-(-round(d * 1e6) // 1000) / 1000 for d in dues.values())  # rounded up to the ms
    checks = sorted({*dues.values(), *(d - 0.0005 for d in dues.values()), *(d + 0.0005 for d in dues.values()),
                     *(T0 + rng.uniform(0, 3 * 86400) for _ in range(100)), T0 + 4 * 86400})
    seen: set[int] = set()
    for now in checks:
        # due once its due time, rounded up to the ms (as kept), has passed
        expected_due = {i for i, d in dues.items() if -(-round(d * 1e6) // 1000) <= now * 1000} - seen
        assert q.counts(now)["due"] == len(expected_due)  # counted before the claim promotes them
        got = claim(q, 500, now, tag=f"{now}-")
        ids = [int(c.contact.contact_id[1:]) for c in got]
        for i in ids:
            # never early: the due time is rounded up to the ms, so at most 1 ms later than asked, never before
            assert dues[i] <= now, (i, dues[i], now)
        assert set(ids) == expected_due  # and nothing due is left waiting
        assert [dues[i] for i in ids] == sorted(dues[i] for i in ids)  # oldest due first (one priority)
        seen |= set(ids)
        for c in got:  # back to the queue's end so the test only follows the first promotion
            q.finish(c, reason="answered", at=now, count_attempt=True)
    assert seen == set(dues) and q.counts(T0 + 4 * 86400)["waiting"] == 0
    assert not redis_client.exists(*(q.keys[k] for k in q.keys if k.startswith("wait")))  # the wheel leaves no key


def test_due_retries_keep_priority_first_then_due_order(redis_client):
    q = ContactQueue(redis_client, "t1", "c1")
    dues = {1: T0 + 300, 2: T0 + 100, 3: T0 + 200, 4: T0 + 250, 5: T0 + 100 + LAP}  # 5 shares 2's wheel list
    waiting(q, dues, priority={3: 7, 4: 7})
    q.add([contact(9)], at=T0)  # ready before the retries come due: it keeps its place in priority 0
    got = [c.contact.contact_id for c in claim(q, 10, T0 + 400)]
    assert got == ["c3", "c4", "c9", "c2", "c1"]
    assert q.find(contact_id="c5")[0].due == T0 + 100 + LAP and q.next_due() == T0 + 100 + LAP


def test_a_claim_promotes_at_most_a_batch_oldest_first(redis_client):
    q = ContactQueue(redis_client, "t1", "c1")
    n = PROMOTE_BATCH + 200
    dues = {i: T0 + 30 + (n - i) * 0.01 for i in range(n)}  # one wheel list, queued newest due first
    waiting(q, dues)
    q.promote_due(T0 + 60)
    assert q.counts(T0 + 60) == {"ready": PROMOTE_BATCH, "waiting": 200, "due": 200, "inflight": 0, "final": 0}
    first = [int(c.contact.contact_id[1:]) for c in claim(q, PROMOTE_BATCH, T0 + 60)]
    assert first == sorted(range(200, n), reverse=True)  # the earliest-due batch, in due order
    assert q.counts(T0 + 60) == {"ready": 200, "waiting": 0, "due": 0, "inflight": 1000, "final": 0}  # the next
    assert [int(c.contact.contact_id[1:]) for c in claim(q, 300, T0 + 60, tag="y")] == list(range(199, -1, -1))


def test_a_waiting_contact_is_removed_by_its_erasure_and_the_others_wait_on(redis_client):
    q = ContactQueue(redis_client, "t1", "c1")
    # 1 and 2 in minute lists, 3 in a lap list, 4 in the far list (due in two days)
    dues = {1: T0 + 60, 2: T0 + 90, 3: T0 + 60 + LAP, 4: T0 + 2 * 86400}
    waiting(q, dues)
    [found] = q.find(e164=contact(1).phone)
    assert (found.state, found.due, found.attempts) == ("wait", T0 + 60, 1)
    for i in (1, 4):
        pipe = redis_client.pipeline(transaction=True)
        queue_erase(redis_client, pipe, "t1", "c1", contact(i).phone, T0 + 1)
        assert pipe.execute() == [1]
        assert q.final_state(f"c{i}") == {"reason": "erased", "detail": "", "at": T0 + 1, "attempts": 1}
        assert [f.state for f in q.find(contact_id=f"c{i}")] == ["final"]
    # the numbers are nowhere in the queue's keys any more
    for key in redis_client.scan_iter(match=queue_prefix("t1", "c1") + "*"):
        if redis_client.type(key) == b"list":
            items = redis_client.lrange(key, 0, -1)
            assert not [x for x in items if contact(1).phone.encode() in x or contact(4).phone.encode() in x], key
    assert q.next_due() == T0 + 90  # the erased contact's due time left the lists' index
    assert q.counts(T0 + 60) == {"ready": 0, "waiting": 2, "due": 0, "inflight": 0, "final": 2}
    assert claim(q, 5, T0 + 60) == []
    assert [c.contact.contact_id for c in claim(q, 5, T0 + 3 * 86400)] == ["c2", "c3"]


def test_a_running_queue_of_the_layout_before_is_served_then_converted(redis_client):
    """A campaign whose contacts wait in the sorted set `wait` (entry -> due seconds) when this version is
    deployed: every script still reads it (no contact lost or queued twice), and upgrade_layout() moves it into the
    wheel with the same due times, rounded up to the ms."""
    q = ContactQueue(redis_client, "t1", "c1")
    p = queue_prefix("t1", "c1")
    old = {contact(1).entry(1, '["retry","retry_busy",1772528400.0]'): T0 + 60.0004,
           contact(2, 4).entry(2, '["retry","retry_no_answer",1772528400.0]'): T0 + 120,
           contact(3).entry(1, ""): T0 + 180}
    redis_client.zadd(p + "wait", old)
    waiting(q, {4: T0 + 90})  # a retry settled by this version goes to the wheel
    assert q.counts(T0 + 100) == {"ready": 0, "waiting": 4, "due": 2, "inflight": 0, "final": 0}
    assert q.held()[2] == {"c1", "c2", "c3", "c4"}  # a refill skips them all
    assert {f.contact_id: f.due for f in q.held_entries()} == {"c1": T0 + 60.0004, "c2": T0 + 120, "c3": T0 + 180,
                                                               "c4": T0 + 90}
    assert q.find(contact_id="c2")[0].attempts == 2 and q.next_due() == T0 + 60.0004
    assert [c.contact.contact_id for c in claim(q, 5, T0 + 100)] == ["c1", "c4"]  # served, in due order
    assert q.upgrade_layout() == 2 and q.upgrade_layout() == 0
    assert not redis_client.exists(p + "wait")
    found = {f.contact_id: f for f in q.held_entries() if f.state == "wait"}
    assert {c: (f.due, f.attempts) for c, f in found.items()} == {"c2": (T0 + 120, 2), "c3": (T0 + 180, 1)}
    assert found["c2"].last == {"step": "retry", "reason": "retry_no_answer", "at": T0, "due": T0 + 120}
    assert claim(q, 5, T0 + 119.999) == []
    assert [c.contact.contact_id for c in claim(q, 5, T0 + 180)] == ["c2", "c3"]  # priority 4 first


def _bytes_waiting(client, q: ContactQueue) -> int:
    return sum(int(client.memory_usage(key, samples=0) or 0) for name, key in q.keys.items()
               if name.startswith("wait") and client.exists(key))


def test_a_contact_waiting_for_a_retry_costs_under_150_bytes(redis_client):
    """Issue 18's goal for a window contact, for a waiting one: its item and its share of the wait lists' fixed
    keys, measured by MEMORY USAGE (every element counted), with due times spread over an hour and over a day."""
    rng = random.Random(7)
    for spread, tenant in ((3600, "t1"), (86400, "t2")):
        q = ContactQueue(redis_client, tenant, "c1")
        n = 2000
        q.add([QueuedContact(f"{tenant}-imp1-{i}", f"+3314{i:07d}", "FR", "75011", None, ("Europe/Paris",), 0)
               for i in range(n)], at=T0)
        for c in claim(q, n, T0):
            assert q.retry(c, T0 + rng.uniform(60, spread), reason="retry_busy", count_attempt=True, at=T0 + 1.234)
        per_contact = _bytes_waiting(redis_client, q) / n
        assert per_contact < 150, (spread, per_contact)
        # the same items as members of the sorted set this layout replaced: over the goal
        flat = {e.entry.contact.entry(e.entry.attempts, '["retry","retry_busy",1772528401.234]'): e.due
                for e in q.held_entries()}
        redis_client.zadd(f"t:{{{tenant}}}:zset-for-comparison", flat)
        assert redis_client.memory_usage(f"t:{{{tenant}}}:zset-for-comparison", samples=0) / n > 150
