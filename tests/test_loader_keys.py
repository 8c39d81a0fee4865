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
    phones = numbers(3, base="+331456970")
    cid = setup_campaign(redis_client, tmp_path, phones, list_id="few")
    queue = ContactQueue(redis_client, T, cid)
    store = CampaignStore(redis_client)
    at = AT.timestamp()
    assert load_campaign(redis_client, queue, ["few"], at=at)["added"] == 3
    assert loader_keys(redis_client, cid) == {"known": 3, "phones": 3}
    claim = queue.claim(1, owner="p1", now=at, lease_until=at + 60, call_ids=["call-1"], servers=["s1"])[0]
    store.control(T, cid, "pause", by="ann", at=AT)
    # paused: the engine reloads the lists (new members) and must not queue anyone twice
    assert load_campaign(redis_client, queue, ["few"], at=at)["added"] == 0
    assert loader_keys(redis_client, cid) == {"known": 3, "phones": 3}
    store.control(T, cid, "stop", by="ann", at=AT)
    # stopping: a call in flight still settles, its final filed by `known`
    assert loader_keys(redis_client, cid) == {"known": 3, "phones": 3}
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
