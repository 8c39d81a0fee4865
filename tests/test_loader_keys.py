"""The whole-list loader's `known` and `phones` (dialer/runtime/queues.py) stay while the campaign may still load
or settle contacts (running, paused, stopping) and go when it completes (issue 18: nothing in Redis for contacts
outside a running campaign); a person's access request still finds what became of their contact. Real
redis-server, the real importer, campaign store and queue scripts."""

from __future__ import annotations

from pathlib import Path

import redis

from dialer import privacy
from dialer.campaigns import CampaignStore
from dialer.runtime.loader import load_campaign
from dialer.runtime.queues import ContactQueue, queue_prefix
from tests.runtime_support import AT, numbers, setup_campaign

T = "acme"


def loader_keys(client: redis.Redis, campaign: str) -> dict[str, int]:
    p = queue_prefix(T, campaign)
    return {"known": int(client.scard(p + "known")), "phones": int(client.hlen(p + "phones"))}


def test_the_loader_index_lives_as_long_as_the_campaign_can_load_or_settle(redis_client: redis.Redis,
                                                                          tmp_path: Path) -> None:
    phones = numbers(1, base="+331456970")  # all dialed by completion (the test below: not)
    cid = setup_campaign(redis_client, tmp_path, phones, list_id="few")
    queue = ContactQueue(redis_client, T, cid)
    store = CampaignStore(redis_client)
    at = AT.timestamp()
    assert load_campaign(redis_client, queue, ["few"], at=at)["added"] == 1
    assert loader_keys(redis_client, cid) == {"known": 1, "phones": 1}
    claim = queue.claim(1, owner="p1", now=at, lease_until=at + 60, call_ids=["call-1"], servers=["s1"])[0]
    store.control(T, cid, "pause", by="ann", at=AT)
    # paused: the engine reloads the lists (new members) and must not queue anyone twice
    assert load_campaign(redis_client, queue, ["few"], at=at)["added"] == 0
    assert loader_keys(redis_client, cid) == {"known": 1, "phones": 1}
    store.control(T, cid, "stop", by="ann", at=AT)
    # stopping: a call in flight still settles, its final filed by `known`
    assert loader_keys(redis_client, cid) == {"known": 1, "phones": 1}
    assert queue.finish(claim, reason="answered", at=at + 30, count_attempt=True)
    assert ContactQueue(redis_client, T, cid).find(contact_id=claim.contact.contact_id)[0].state == "final"
    store.control(T, cid, "complete", by="engine", at=AT)  # the engine's move, once nothing is in flight
    assert loader_keys(redis_client, cid) == {"known": 0, "phones": 0}
    assert redis_client.hget(queue_prefix(T, cid) + "final", claim.contact.contact_id) is not None
    # An access request by number still finds the contact's final (through the person's contact ids).
    data = privacy.access(redis_client, T, phone=claim.contact.phone, actor="user:dpo", at=AT, secret_key=b"")
    finals = [e for e in data["people"][0]["campaign_queues"] if e["state"] == "final"]
    assert [(e["campaign"], e["contact_id"], e["final"]["reason"]) for e in finals] == [
        (cid, claim.contact.contact_id, "answered")]


def test_a_stopped_campaign_completing_with_contacts_queued_keeps_the_index_for_their_erasure(
        redis_client: redis.Redis, tmp_path: Path) -> None:
    # Stop, then complete with contacts never dialed (still ready): an erasure of one files its final by `known`
    # in `final`; without `known` it went to `leaving`, which nothing moves for a completed campaign.
    phones = numbers(3, base="+331456971")
    cid = setup_campaign(redis_client, tmp_path, phones, list_id="stopped")
    queue = ContactQueue(redis_client, T, cid)
    store = CampaignStore(redis_client)
    assert load_campaign(redis_client, queue, ["stopped"], at=AT.timestamp())["added"] == 3
    store.control(T, cid, "stop", by="ann", at=AT)
    store.control(T, cid, "complete", by="engine", at=AT)
    assert loader_keys(redis_client, cid) == {"known": 3, "phones": 3}  # retention removes them with the lists
    privacy.erase(redis_client, T, phone=phones[0], actor="user:dpo", at=AT, secret_key=b"k" * 32)
    p = queue_prefix(T, cid)
    assert redis_client.hlen(p + "leaving") == 0
    assert [v for v in redis_client.hvals(p + "final") if b'"erased"' in v]
