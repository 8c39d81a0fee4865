"""A campaign dialed from the record a window at a time (issue 18): real redis-server, a real record (SQLite and
PostgreSQL), the real gate, the sandbox PBX."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
import redis

from dialer.campaigns import CampaignStore
from dialer.config import load_config
from dialer.record.contacts import get_contact, store_contacts
from dialer.record.store import Record
from dialer.record.url import parse_record_url
from dialer.runtime.engine import offset_clock, run_engine
from dialer.runtime.queues import ContactQueue
from dialer.runtime.window import final_states
from tests.runtime_support import AT, BLOCTEL, SECRET_KEY, OriginateObserver, eventually, numbers, setup_campaign
from tests.test_runtime_engine import EXPECTED, RETRIES, SETTINGS, sandbox, start_pbx

WINDOW = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/record.db"
    return request.getfixturevalue("postgres_url")


def contact(row: int, phone: str) -> dict[str, str]:
    """A contact as the import builds it (dialer.contacts.jobs.build_contact)."""
    phones = [{"e": phone, "t": "fixed_line", "z": "Europe/Paris", "c": "FR", "s": "", "x": "", "k": "phone"}]
    return {"id": f"imp1-{row}", "list": "leads", "campaign": "", "import": "imp1", "row": str(row),
            "phone": phone, "line_type": "fixed_line", "timezones": "Europe/Paris", "phone_country": "FR",
            "country": "FR", "postal_code": "75011", "phones": json.dumps(phones)}


async def test_a_campaign_dials_its_contacts_from_the_record_a_window_at_a_time(
        redis_url: str, redis_client: redis.Redis, record_url: str, tmp_path: Path) -> None:
    phones = [*numbers(13), BLOCTEL[0]]
    record = Record(parse_record_url(record_url), pool_size=2)
    record.migrate()
    store_contacts(record, "acme", "leads", [contact(row, p) for row, p in enumerate(phones, start=2)])
    record.close()
    # the campaign's list "leads" is only in the record (Redis's contact store holds another list)
    campaign = setup_campaign(redis_client, tmp_path, ["+33145670990"], list_id="other", lists=["leads"],
                              retry_rules=RETRIES, max_attempts=2, recording=True)
    config = load_config(env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY,
                              "DIALER_RECORD_URL": record_url})
    settings = dataclasses.replace(SETTINGS, window=WINDOW, window_seconds=0.1)
    queue = ContactQueue(redis_client, "acme", campaign)
    most = [0]
    pbx = await start_pbx()
    stop = asyncio.Event()
    try:
        async with OriginateObserver(pbx.port) as observer:
            task = asyncio.create_task(run_engine(config, stop_event=stop, clock=offset_clock(AT, 60.0),
                                                  servers=[sandbox(pbx)], settings=settings, process_id="p1"))
            store = CampaignStore(redis_client)

            def done() -> bool:
                counts = queue.counts()
                most[0] = max(most[0], counts["ready"] + counts["waiting"] + counts["inflight"])
                return task.done() or store.get("acme", campaign).status == "completed"

            try:
                await eventually(done, timeout=120)
            finally:
                stop.set()
                await task
            await asyncio.sleep(0.3)
    finally:
        await pbx.stop()
    assert store.get("acme", campaign).status == "completed"
    assert 0 < most[0] <= WINDOW  # never more of the campaign in Redis than its window
    record = Record(parse_record_url(record_url), pool_size=1)
    try:
        finals = final_states(record, queue)
        assert len(finals) == len(phones)  # every contact of the record's list, once
        by_phone = {get_contact(record, "acme", cid)["phone"]: f for cid, f in finals.items()}
    finally:
        record.close()
    # every contact that left the window left Redis too: the queue keeps counters only
    assert queue.final_states() == {} and queue.counts()["final"] == len(phones)
    left = {k.decode().rsplit(":q:", 1)[1] for k in redis_client.scan_iter(match=f"t:{{acme}}:campaign:{campaign}:q:*")}
    assert left <= {"tally", "window"}, left
    assert by_phone.pop(BLOCTEL[0])["reason"] == "gate_denied" and observer.by_number[BLOCTEL[0]] == 0
    for phone, final in by_phone.items():
        reason, calls = EXPECTED.get(phone[-1], ("answered", 1))
        assert (final["reason"], final["attempts"]) == (reason, calls), (phone, final)
        assert observer.by_number[phone] == calls, phone
    assert "+33145670990" not in observer.by_number  # the other list is not the campaign's


async def test_a_record_that_cannot_be_read_never_completes_the_campaign_early(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="dialer")
    url = f"sqlite:///{tmp_path}/later.db"  # not there yet: the record cannot be read
    campaign = setup_campaign(redis_client, tmp_path, ["+33145670990"], list_id="other", lists=["leads"])
    config = load_config(env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY,
                              "DIALER_RECORD_URL": url})
    settings = dataclasses.replace(SETTINGS, window=WINDOW, window_seconds=0.1)
    store = CampaignStore(redis_client)
    pbx = await start_pbx()
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(run_engine(config, stop_event=stop, clock=offset_clock(AT, 60.0),
                                              servers=[sandbox(pbx)], settings=settings, process_id="p1"))
        try:
            await eventually(lambda: "the record cannot be read" in caplog.text, timeout=60)
            await asyncio.sleep(1.0)  # several completion checks (stats every 0.2 s) with an empty window
            assert store.get("acme", campaign).status == "running"
            record = Record(parse_record_url(url), pool_size=1)
            record.migrate()
            store_contacts(record, "acme", "leads", [contact(2, "+33145670001"), contact(3, "+33145670005")])
            record.close()
            await eventually(lambda: task.done() or store.get("acme", campaign).status == "completed", timeout=60)
        finally:
            stop.set()
            await task
    finally:
        await pbx.stop()
    assert store.get("acme", campaign).status == "completed"
    assert ContactQueue(redis_client, "acme", campaign).final_reasons() == {"answered": 2}
    assert "the record is readable again" in caplog.text
