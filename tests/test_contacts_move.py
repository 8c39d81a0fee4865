"""The upgrade to contacts in the record (issue 18): contacts an older dialer kept in Redis's contact store move into
the record, idempotently, then leave Redis (dialer/contacts/move.py). Real redis-server; the record on SQLite and
PostgreSQL."""

from __future__ import annotations

import json

import pytest
import redis

from dialer.contacts.move import legacy_tenants, move_contacts
from dialer.contacts.store import Keys, contacts_for_phone, get_contact, list_count
from dialer.record.contacts import campaign_count, contact_ids_for_phone, store_contacts, tenant_count


def legacy(client: redis.Redis, tenant: str, list_id: str, row: int, numbers: list[str], campaign: str = "") -> dict:
    """One contact as an older dialer's import published it (hash, phone index, list and campaign sets)."""
    cid = f"old{tenant}-{row}"
    phones = [{"e": n, "t": "mobile", "z": "Europe/Paris", "c": "FR", "s": "", "x": "", "k": "phone"}
              for n in numbers]
    contact = {"id": cid, "list": list_id, "campaign": campaign, "import": f"old{tenant}", "row": str(row),
               "phone": numbers[0], "line_type": "mobile", "timezones": "Europe/Paris", "phone_country": "FR",
               "phone_subdivision": "", "first_name": f"n{row}", "x.segment": "gold",
               "phones": json.dumps(phones, separators=(",", ":"))}
    keys = Keys(tenant)
    client.hset(keys.contact(cid), mapping=contact)
    for n in numbers:
        client.sadd(keys.phone(n), cid)
        client.sadd(keys.list_phones(list_id), n)
    client.sadd(keys.list_members(list_id), cid)
    client.sadd(keys.lists, list_id)
    client.hset(keys.list(list_id), mapping={"id": list_id, "contacts": 0, "imports": 1})
    if campaign:
        client.sadd(keys.campaign_contacts(campaign), cid)
        client.sadd(keys.campaign_phones(campaign), *numbers)
    return contact


def contact_keys(client: redis.Redis, tenant: str) -> list[str]:
    p = f"t:{{{tenant}}}:"
    return sorted(k.decode() for pattern in ("contact:*", "phone:*", "list:*:members", "list:*:phones",
                                             "campaign:*:contacts", "campaign:*:phones")
                  for k in client.scan_iter(match=p + pattern))


def test_contacts_in_redis_move_into_the_record_once_and_leave_redis(redis_client: redis.Redis, record) -> None:
    a = [legacy(redis_client, "acme", "old", row, [f"+3361234{row:04d}"], campaign="spring" if row < 4 else "")
         for row in range(2, 7)]
    a.append(legacy(redis_client, "acme", "other", 9, ["+33612340002", "+33145670009"]))
    legacy(redis_client, "beta", "old", 2, ["+33699990002"])
    assert legacy_tenants(redis_client) == ["acme", "beta"]
    # before the move, subject requests still find them (an erasure during an upgrade misses nobody)
    assert contacts_for_phone(redis_client, "acme", "+33612340002") == ["oldacme-2", "oldacme-9"]
    assert get_contact(redis_client, "acme", "oldacme-9")["first_name"] == "n9"
    # an earlier run died after the record committed its first batch, before Redis forgot it
    store_contacts(record, "acme", "old", a[:2])
    moved = move_contacts(redis_client, record)
    assert moved.contacts == {"acme": 6, "beta": 1}
    assert tenant_count(record, "acme") == 6 and tenant_count(record, "beta") == 1  # each once
    assert list_count("acme", "old") == 5 and list_count("acme", "other") == 1 and list_count("beta", "old") == 1
    assert campaign_count(record, "acme", "spring") == 2
    assert contact_ids_for_phone(record, "acme", "+33612340002") == ["oldacme-2", "oldacme-9"]
    assert contact_ids_for_phone(record, "beta", "+33612340002") == []  # tenants apart
    moved_contact = get_contact(None, "acme", "oldacme-9")
    assert moved_contact is not None and moved_contact["x.segment"] == "gold"
    assert [p["e164"] for p in moved_contact["phones"]] == ["+33612340002", "+33145670009"]
    # nothing of them is left in Redis; the lists' metadata stays (the lists API shows it)
    assert contact_keys(redis_client, "acme") == [] and contact_keys(redis_client, "beta") == []
    assert redis_client.hget(Keys("acme").list("old"), "imports") == b"1"
    assert legacy_tenants(redis_client) == []
    assert move_contacts(redis_client, record).total == 0  # again: nothing to do, nothing twice
    assert tenant_count(record, "acme") == 6


def test_the_command_and_a_record_that_is_down(redis_client: redis.Redis, redis_url: str, record,
                                                monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from dialer.cli import main

    legacy(redis_client, "acme", "old", 2, ["+33612340002"])
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.setenv("DIALER_RECORD_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    assert main(["record", "move-contacts"]) == 1
    err = capsys.readouterr().err
    # one line says it (psycopg's pool may log its own attempts before it); never a traceback
    assert err.splitlines()[-1].startswith("dialer: record ") and "nothing more was moved" in err.splitlines()[-1]
    assert "Traceback" not in err
    assert contact_keys(redis_client, "acme")  # still in Redis: nothing lost
    url = record.url.url if record.dialect == "postgresql" else f"sqlite:///{record.url.path}"
    monkeypatch.setenv("DIALER_RECORD_URL", url)
    assert main(["record", "move-contacts", "--tenant", "acme"]) == 0
    assert "tenant acme: 1 contacts moved into the record" in capsys.readouterr().out
    assert contact_keys(redis_client, "acme") == [] and tenant_count(record, "acme") == 1
