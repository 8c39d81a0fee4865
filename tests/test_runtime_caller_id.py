"""The campaign's caller ID at run time (issue 13): the Originate presents it (the sandbox PBX reports the caller
ID it was given, as Asterisk does in OriginateResponse), and a caller ID unlawful where the contacts are keeps the
campaign from calling them (CALLER_ID_NOT_ALLOWED, ARCEP décision 2022-1583) without dropping them."""

from __future__ import annotations

import asyncio
from collections import Counter

from dialer.ami.originate import caller_id_field, campaign_caller_id
from dialer.campaigns import CampaignStore
from dialer.livestats import denials_key
from dialer.runtime.engine import offset_clock
from dialer.runtime.queues import ContactQueue
from tests.runtime_support import AT, OriginateObserver, eventually, numbers, setup_campaign
from tests.test_runtime_engine import engine_task, start_pbx


class CallerIdObserver(OriginateObserver):
    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.caller_ids: Counter[tuple[str, str]] = Counter()

    def _seen(self, message) -> None:
        super()._seen(message)
        self.caller_ids[(message.get("CallerIDNum") or "", message.get("CallerIDName") or "")] += 1


def test_caller_id_field():
    assert campaign_caller_id({"caller_id": "+33162000000", "seller_name": "Acme SAS"}) == '"Acme SAS" <+33162000000>'
    assert campaign_caller_id({"caller_id": "+33162000000"}) == "+33162000000"
    assert caller_id_field("+33162000000", 'Evil" <+1555>\r\nAction: Hangup') == '"Evil +1555 Action: Hangup" ' \
        "<+33162000000>"
    assert caller_id_field("", "Acme") == ""


async def test_originates_present_the_campaign_caller_id(redis_url, redis_client, tmp_path):
    phones = [p for p in numbers(6, base="+331456720") if p[-1] not in "2347"]
    campaign = setup_campaign(redis_client, tmp_path, phones, caller_id="+33162000042", seller_name="Acme SAS")
    pbx = await start_pbx()
    try:
        async with CallerIdObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, offset_clock(AT, 1.0))
            await eventually(lambda: task.done() or CampaignStore(redis_client).get("acme", campaign).status
                             == "completed", timeout=60)
            stop.set()
            await task
    finally:
        await pbx.stop()
    assert sum(observer.by_number.values()) == len(phones)
    assert set(observer.caller_ids) == {("+33162000042", "Acme SAS")}


async def test_an_unlawful_caller_id_holds_the_contacts_and_says_why(redis_url, redis_client, tmp_path):
    phones = numbers(5, base="+331456730")
    # a valid Paris landline, but not in ARCEP's canvassing ranges: unlawful for canvassing French consumers
    campaign = setup_campaign(redis_client, tmp_path, phones, caller_id="+33145678900")
    pbx = await start_pbx()
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, offset_clock(AT, 1.0))
            denials = denials_key("acme", campaign)
            await eventually(lambda: int(redis_client.hget(denials, "CALLER_ID_NOT_ALLOWED") or 0) >= 3, timeout=30)
            await asyncio.sleep(1.0)
            stop.set()
            await task
    finally:
        await pbx.stop()
    assert sum(observer.by_number.values()) == 0  # nobody was called
    queue = ContactQueue(redis_client, "acme", campaign)
    assert queue.final_states() == {}  # nobody left the campaign: they wait for a lawful caller ID
    assert CampaignStore(redis_client).get("acme", campaign).status == "running"
