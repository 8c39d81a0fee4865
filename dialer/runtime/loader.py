"""Fill a campaign's queue with its whole lists at once, read from the record (dialer.contacts.store's readers):
idempotent, run again to pick up new members. Only with `record.window = 0`; by default the engine reads a window
at a time (dialer/runtime/window.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from dialer.contacts.store import campaign_member_ids, iter_contacts, list_member_ids
from dialer.runtime.queues import MAX_PRIORITY, ContactQueue, QueuedContact


def priority_of(contact: dict[str, Any]) -> int:
    """An optional kept column `priority` (0-9, higher first); anything else is 0."""
    raw = contact.get("x.priority") or contact.get("priority") or ""
    if raw == "":  # most contacts (an import stages millions): no exception raised and caught for nothing
        return 0
    try:
        value = int(str(raw).strip())
    except ValueError:
        return 0
    return max(0, min(MAX_PRIORITY, value))


def member_ids(client: Any, tenant: str, campaign: str, lists: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    sources = [list_member_ids(client, tenant, name) for name in lists]
    sources.append(campaign_member_ids(client, tenant, campaign))
    for source in sources:
        for cid in source:
            if cid not in seen:
                seen.add(cid)
                yield cid


def load_campaign(client: Any, queue: ContactQueue, lists: Iterable[str], *, at: float) -> dict[str, int]:
    """Queue every contact of the campaign's lists (and its own contact set) not queued yet.
    A contact without a valid number is recorded as final (`no_valid_number`) rather than dropped."""
    totals = {"added": 0, "known": 0, "duplicates": 0, "no_number": 0}
    pending: list[QueuedContact] = []

    given = 0

    def flush() -> None:
        nonlocal given
        for k, v in queue.add(pending, at=at, order_from=given).items():
            totals[k] += v
        given += len(pending)
        pending.clear()

    for contact in iter_contacts(client, queue.tenant, member_ids(client, queue.tenant, queue.campaign, lists)):
        phone = contact.get("phone") or ""
        cid = str(contact["id"])
        if not phone.startswith("+"):
            if queue.finalize_unqueued(cid, "no_valid_number", "the contact has no valid phone number", at):
                totals["no_number"] += 1
            continue
        pending.append(QueuedContact(cid, phone, contact.get("country") or None, contact.get("postal_code") or None,
                                     contact.get("state") or None, tuple(contact.get("timezones") or ()),
                                     priority_of(contact)))
        if len(pending) >= 500:
            flush()
    flush()
    return totals
