"""The upgrade to contacts in the record (issue 18): contacts an older dialer kept in Redis's contact store move
into the record, then leave Redis. Nothing lost, nothing twice.

Per tenant, a batch at a time: the batch is written into the record (dialer.record.contacts.store_contacts: one
transaction, rows already there skipped), and only after that commit are the batch's Redis keys removed (the
contact hash and its entries in the phone index and the list and campaign sets). A run killed anywhere is run
again: what the record already holds is skipped, what Redis still holds is moved. When a tenant has no contact
left in Redis, the empty indexes (list/campaign member and phone sets) go too; each list's metadata
(t:T:list:L: imports, region, dates) stays, it is what the lists API shows.

Run by `dialer record move-contacts` and at every `dialer worker` start (nothing to do costs one SCAN).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from dialer.contacts.store import Keys, _s, tenant_prefix
from dialer.record.contacts import store_contacts
from dialer.record.store import Record

log = logging.getLogger(__name__)

BATCH = 1000


@dataclass
class Moved:
    contacts: dict[str, int] = field(default_factory=dict)  # tenant -> contacts moved

    @property
    def total(self) -> int:
        return sum(self.contacts.values())


def legacy_tenants(client: redis.Redis) -> list[str]:
    """Tenants with at least one contact in Redis's contact store."""
    found = set()
    for key in client.scan_iter(match="t:{*}:contact:*", count=5000):
        text = _s(key)
        found.add(text[3:text.index("}:")])
    return sorted(found)


def _contact_keys(client: redis.Redis, tenant: str) -> Iterator[str]:
    for key in client.scan_iter(match=f"{tenant_prefix(tenant)}contact:*", count=5000):
        yield _s(key)


def move_tenant(client: redis.Redis, record: Record, tenant: str, batch: int = BATCH) -> int:
    """Move one tenant's contacts; returns how many were moved."""
    keys = Keys(tenant)
    moved = 0
    pending: list[str] = []

    def flush() -> None:
        nonlocal moved
        pipe = client.pipeline(transaction=False)
        for key in pending:
            pipe.hgetall(key)
        contacts = []
        for key, raw in zip(pending, pipe.execute(), strict=True):
            if raw:
                contacts.append((key, {_s(k): _s(v) for k, v in raw.items()}))
        by_list: dict[str, list[dict[str, Any]]] = {}
        for _, contact in contacts:
            by_list.setdefault(contact.get("list") or "", []).append(contact)
        for list_id, group in by_list.items():
            store_contacts(record, tenant, list_id or None, group)  # committed before Redis forgets them
        pipe = client.pipeline(transaction=True)
        for key, contact in contacts:
            cid = str(contact["id"])
            for phone in json.loads(contact.get("phones") or "[]"):
                pipe.srem(keys.phone(phone["e"]), cid)
            if contact.get("list"):
                pipe.srem(keys.list_members(contact["list"]), cid)
            if contact.get("campaign"):
                pipe.srem(keys.campaign_contacts(contact["campaign"]), cid)
            pipe.delete(key)
        pipe.execute()
        moved += len(contacts)
        pending.clear()

    for key in _contact_keys(client, tenant):
        pending.append(key)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    _drop_indexes(client, tenant)
    return moved


def _drop_indexes(client: redis.Redis, tenant: str) -> None:
    """Once no contact is left in Redis: the dedupe and member sets that indexed them (the record has its own)."""
    if next(_contact_keys(client, tenant), None) is not None:
        return  # an older dialer still writing: leave its indexes
    p = tenant_prefix(tenant)
    doomed = [_s(k) for pattern in (f"{p}phone:*", f"{p}list:*:members", f"{p}list:*:phones",
                                    f"{p}campaign:*:contacts", f"{p}campaign:*:phones")
              for k in client.scan_iter(match=pattern, count=5000)]
    for start in range(0, len(doomed), 1000):
        client.unlink(*doomed[start:start + 1000])


def move_contacts(client: redis.Redis, record: Record, tenants: list[str] | None = None) -> Moved:
    """Move every given tenant's contacts (default: every tenant that has some in Redis)."""
    done = Moved()
    for tenant in tenants if tenants is not None else legacy_tenants(client):
        n = move_tenant(client, record, tenant)
        if n:
            log.info("tenant %s: %d contacts moved from Redis into the record", tenant, n)
        done.contacts[tenant] = n
    return done
