"""Contacts in the record and the campaign's dial window in Redis (issue 18), on SQLite and on a PostgreSQL the
test session starts."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from dialer.record.contacts import contacts_for_phone, erase_phone, get_contact, store_contacts, window_page
from dialer.record.store import Record
from dialer.runtime.queues import ContactQueue
from dialer.runtime.window import active, archive_finals, exhausted, final_states, refill, window_key

AT = 1_767_000_000.0



def contact(import_id: str, row: int, phone: str, **extra: str) -> dict[str, str]:
    """A contact as the import builds it (dialer.contacts.jobs)."""
    phones = [{"e": phone, "t": "fixed_line", "z": "Europe/Paris", "c": "FR", "s": "", "x": "", "k": "tel"}]
    if "other" in extra:
        phones.append({"e": extra.pop("other"), "t": "mobile", "z": "Europe/Paris", "c": "FR", "s": "", "x": "",
                       "k": "mobile"})
    return {"id": f"{import_id}-{row}", "list": "L", "campaign": "", "import": import_id, "row": str(row),
            "phone": phone, "line_type": "fixed_line", "timezones": "Europe/Paris", "phone_country": "FR",
            "phone_subdivision": "", "first_name": "Zoé", "postal_code": "75011",
            "phones": json.dumps(phones, separators=(",", ":")), **extra}


def people(n: int, import_id: str = "imp1", first_number: int = 0) -> list[dict[str, str]]:
    return [contact(import_id, row, f"+3314567{first_number + row:04d}") for row in range(2, n + 2)]


def counted(record: Record, table: str, tenant: str) -> int:
    return record.query(f"SELECT count(*) FROM {table} WHERE tenant = %s", (tenant,))[0][0]


def test_contacts_are_stored_once_and_found_by_any_of_their_numbers(record: Record) -> None:
    batch = [*people(30), contact("imp1", 99, "+33145679999", other="+33612345678", **{"x.priority": "7"})]
    assert store_contacts(record, "t1", "L", batch, batch=8) == 31
    assert store_contacts(record, "t1", "L", batch, batch=8) == 31  # again (a retried import): nothing twice
    assert counted(record, "contacts", "t1") == 31 and counted(record, "list_members", "t1") == 31
    stored = get_contact(record, "t1", "imp1-99")
    assert stored is not None and stored["first_name"] == "Zoé" and stored["phones"][1]["e"] == "+33612345678"
    assert [c["id"] for c in contacts_for_phone(record, "t1", "+33612345678")] == ["imp1-99"]
    assert contacts_for_phone(record, "t2", "+33612345678") == []  # another tenant sees nothing
    page = window_page(record, "t1", "c1", ["L"], "imp1-98", 5)
    assert [(c.contact_id, c.phone, c.country, c.postal_code, c.zones, c.priority) for c in page] == [
        ("imp1-99", "+33145679999", "FR", "75011", ("Europe/Paris",), 7)]
    # erasure: the contact, its memberships and its numbers go, in one transaction
    assert erase_phone(record, "t1", "+33612345678") == ["imp1-99"]
    assert get_contact(record, "t1", "imp1-99") is None and contacts_for_phone(record, "t1", "+33145679999") == []
    assert counted(record, "list_members", "t1") == 30


def test_window_holds_at_most_its_size_in_redis_and_refills_as_calls_drain_it(
        redis_client: redis.Redis, record: Record) -> None:
    batch = people(25)
    batch[7] = contact("imp1", 9, batch[3]["phone"])  # the same number twice: queued once
    store_contacts(record, "t1", "L", batch)
    store_contacts(record, "t1", "other-list", people(5, "imp9"))  # not the campaign's
    store_contacts(record, "t2", "L", people(5, "imp1"))  # another tenant's list of the same name
    queue = ContactQueue(redis_client, "t1", "c1")
    totals = refill(record, queue, ["L"], at=AT, size=10)
    assert totals["added"] == 10 and queue.counts()["ready"] == 10  # nothing outside the window
    assert refill(record, queue, ["L"], at=AT, size=10)["read"] == 0  # full: nothing read
    seen: list[str] = []
    n = 0
    while not (exhausted(queue) and queue.counts()["ready"] == 0):
        claims = queue.claim(3, owner="p1", now=AT, lease_until=AT + 60, call_ids=[f"call{n + i}" for i in range(3)],
                             servers=["pbx"] * 3)
        n += 3
        for c in claims:
            seen.append(c.contact.contact_id)
            assert queue.finish(c, reason="answered", at=AT, count_attempt=True)
        assert active(queue) <= 10  # never more than the window waiting
        assert redis_client.hlen(queue.keys["leaving"]) <= 4  # finals leave Redis at the next refill (3 + a duplicate)
        refill(record, queue, ["L"], at=AT, size=10)
        assert n < 100, "the window never ran dry"
    assert len(seen) == len(set(seen)) == 24  # every contact once; the duplicate number left as final
    assert final_states(record, queue)["imp1-9"] == {"reason": "duplicate_number", "detail": "imp1-5", "at": AT,
                                                     "attempts": 0, "disposition": None}
    archive_finals(record, queue)
    assert redis_client.hlen(queue.keys["leaving"]) == 0 and queue.counts()["final"] == 25  # moved, still counted
    assert queue.final_reasons() == {"answered": 24, "duplicate_number": 1}
    # nothing of the campaign's 25 contacts is left in Redis but the queue's fixed-size keys
    left = {k.decode().rsplit(":q:", 1)[1] for k in redis_client.scan_iter(match="t:{t1}:campaign:c1:q:*")}
    assert left <= {"tally", "window"}, left
    assert refill(record, queue, ["L"], at=AT, size=10, rescan=True)["added"] == 0  # nobody twice
    # "why is this contact not called": its final is in the record now
    from dialer.record.contacts import campaign_final
    from gateway.api.gatecheck import queue_entry

    assert queue_entry(redis_client, "t1", "c1", "imp1-9") is None
    moved = queue_entry(redis_client, "t1", "c1", "imp1-9", campaign_final(record, "t1", "c1", "imp1-9"))
    assert moved is not None and moved["state"] == "final" and moved["final"]["reason"] == "duplicate_number"
    assert moved["final"]["at"].startswith("2025-12-29")  # ISO 8601, as the API gives instants
    assert not any(cid.startswith("imp9-") for cid in seen)


def test_a_refill_that_dies_before_moving_the_cursor_adds_nothing_twice(
        redis_client: redis.Redis, record: Record) -> None:
    store_contacts(record, "t1", "L", people(12))
    queue = ContactQueue(redis_client, "t1", "c1")
    refill(record, queue, ["L"], at=AT, size=8)
    redis_client.hdel(window_key(queue), "after")  # as if the process died after the add, before the cursor
    again = refill(record, queue, ["L"], at=AT, size=16, force=True)
    assert again["known"] == 8 and again["added"] == 4
    assert queue.counts()["ready"] == 12 and queue.tally()["taken"] == 12
    # members imported later whose ids sort before the cursor: a rescan picks them up, skipping those queued
    store_contacts(record, "t1", "L", people(3, "imp0", first_number=5000))
    assert refill(record, queue, ["L"], at=AT, size=32, force=True)["added"] == 0 and exhausted(queue)
    rescan = refill(record, queue, ["L"], at=AT, size=32, rescan=True)
    assert rescan["added"] == 3 and rescan["known"] == 12
    assert queue.counts()["ready"] == 15


def test_access_and_erasure_reach_the_contacts_in_the_record(redis_client: redis.Redis, record: Record) -> None:
    from datetime import UTC, datetime

    from dialer import privacy

    key = "k" * 32
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    store_contacts(record, "t1", "L", [contact("imp1", 2, "+33145670002", other="+33612340002"),
                                       contact("imp1", 3, "+33145670003")])
    found = privacy.access(redis_client, "t1", phone="+33612340002", at=at, secret_key=key, record=record)
    assert [c["id"] for c in found["record_contacts"]] == ["imp1-2"]
    report = privacy.erase(redis_client, "t1", phone="+33612340002", actor="user:dpo", at=at, secret_key=key,
                           record=record)
    assert report.removed["record_contacts"] == 1
    assert get_contact(record, "t1", "imp1-2") is None and get_contact(record, "t1", "imp1-3") is not None
    assert contacts_for_phone(record, "t1", "+33145670002") == []  # its other number went with it
    assert privacy.access(redis_client, "t1", phone="+33612340002", at=at, secret_key=key,
                          record=record)["record_contacts"] == []


def test_offboarding_exports_then_deletes_the_tenants_contacts_in_the_record(
        redis_client: redis.Redis, record: Record, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from dialer.offboarding import offboard
    from dialer.record.contacts import store_finals

    store_contacts(record, "t1", "L", people(7))
    store_contacts(record, "t1", "M", people(2))  # the same contacts on a second list
    store_finals(record, "t1", "c1", {"imp1-2": {"reason": "answered", "at": 1.0, "attempts": 1}})
    store_contacts(record, "t2", "L", people(3))
    report = offboard(redis_client, "t1", tmp_path / "export", datetime(2026, 12, 1, tzinfo=UTC), actor="user:ops",
                      secret_key="k" * 32, record=record)
    lines = (tmp_path / "export" / "record_contacts.jsonl").read_text(encoding="utf-8").splitlines()
    exported = {c["id"]: c for c in map(json.loads, lines)}
    assert report.files["record_contacts.jsonl"] == len(exported) == 7
    assert exported["imp1-2"]["lists"] == ["L", "M"] and exported["imp1-8"]["lists"] == ["L"]
    finals = (tmp_path / "export" / "record_campaign_finals.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["contact_id"] for x in finals] == ["imp1-2"]
    for table in ("contacts", "list_members", "contact_phones", "campaign_finals"):
        assert counted(record, table, "t1") == 0, table
    assert counted(record, "contacts", "t2") == 3  # another tenant's stay


def test_a_page_read_before_finals_moved_to_the_record_is_read_again_never_added(
        redis_client: redis.Redis, record: Record) -> None:
    """Two processes refill the same window: one reads a page, the other meanwhile dials a contact of the window
    to the end and moves it to the record, then the cursor is reset (a rescan). The first one's page is stale:
    adding it would queue the finished contact again."""
    store_contacts(record, "t1", "L", people(4))
    queue = ContactQueue(redis_client, "t1", "c1")
    gen, after, _ = queue.held()
    page = window_page(record, "t1", "c1", ["L"], after, 4)  # process A reads, and is slow
    refill(record, queue, ["L"], at=AT, size=4)  # process B fills the window
    [c] = queue.claim(1, owner="b", now=AT, lease_until=AT + 60, call_ids=["k"], servers=["pbx"])
    assert queue.finish(c, reason="answered", at=AT, count_attempt=True)
    refill(record, queue, ["L"], at=AT, size=4, rescan=True)  # B moves the final to the record, rescans
    assert queue.load_window([(x, "q", "") for x in page], at=AT, gen=gen, after=page[-1].contact_id) is None
    assert queue.counts()["ready"] == 3 and queue.final_state(c.contact.contact_id) is None  # moved
    assert final_states(record, queue)[c.contact.contact_id]["reason"] == "answered"
    assert c.contact.contact_id not in {x.contact_id for x in window_page(record, "t1", "c1", ["L"], "", 10)}


def test_erasure_reaches_window_contacts_ready_and_waiting(redis_client: redis.Redis, record: Record) -> None:
    from datetime import UTC, datetime

    from dialer import privacy

    store_contacts(record, "t1", "L", people(3))
    redis_client.zadd("t:{t1}:campaigns", {"c1": 0})  # the tenant's campaign (privacy reaches its queue)
    queue = ContactQueue(redis_client, "t1", "c1")
    refill(record, queue, ["L"], at=AT, size=10)
    [c] = queue.claim(1, owner="p", now=AT, lease_until=AT + 60, call_ids=["k"], servers=["pbx"])
    assert queue.retry(c, AT + 900, reason="retry_busy", count_attempt=True, at=AT)  # waits for a retry
    waiting, ready = c.contact.phone, "+33145670004"
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    found = privacy.access(redis_client, "t1", phone=waiting, at=at, secret_key="k" * 32)
    assert [(e["state"], e["attempts"]) for e in found["people"][0]["campaign_queues"]] == [("wait", 1)]
    for number in (waiting, ready):
        report = privacy.erase(redis_client, "t1", phone=number, actor="user:dpo", at=at, secret_key="k" * 32)
        assert report.removed["campaign_queue_entries"] == 1, number
        assert queue.find(e164=number) == []
    assert queue.counts()["ready"] == 1 and queue.counts()["waiting"] == 0
    assert queue.final_reasons() == {"erased": 2}
    assert not [h for h in queue.held_entries() if h.entry and h.entry.contact.phone in (waiting, ready)]
