"""A campaign's dial window (issue 18): at most `size` contacts of the campaign in Redis at a time, read from the
record (dialer.record.contacts) and refilled as calls drain it; contacts outside the window cost Redis nothing.

What a window contact holds in Redis is the runtime queue's compact entry (dialer.runtime.queues: its state, its
data (number, country, postal code, state, zones, priority), its place in `ready`, its number in `phones`); the
per-person facts the gate reads are loaded by the gate itself for the numbers it decides on.

The cursor (the last contact id taken from the record) lives beside the queue, in `q:window` (field `after`), and
moves only after the contacts were added: a refill that dies in between adds the same page again, and the queue's
load script leaves contacts it already holds where they are (nothing twice). When the record has no contact past
the cursor, `exhausted` is set; new members imported later are picked up by `refill(..., rescan=True)`, which
starts again from the first contact (those the queue already holds are skipped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from dialer.record.contacts import window_page
from dialer.record.store import Record, RecordUnavailable
from dialer.runtime.queues import ContactQueue, queue_prefix

# The engine's logger: RecordWindows' lines were the engine's before the split; operators filter on its name.
log = logging.getLogger("dialer.runtime.engine")

DEFAULT_SIZE = 2000
LOW_WATER = 0.5  # refill when fewer than this share of the window is still to be dialed


def window_key(queue: ContactQueue) -> str:
    return queue_prefix(queue.tenant, queue.campaign) + "window"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def active(queue: ContactQueue) -> int:
    """Contacts of the window still to be dialed or in a call: ready, waiting for a retry, in flight."""
    counts = queue.counts()
    return counts["ready"] + counts["waiting"] + counts["inflight"]


def refill(record: Record, queue: ContactQueue, lists: Sequence[str], *, at: float, size: int = DEFAULT_SIZE,
           rescan: bool = False, force: bool = False) -> dict[str, int]:
    """Top the window up to `size` contacts from the record (when below LOW_WATER of it, or `force`). A contact
    without a valid number leaves as final (`no_valid_number`), as the whole-list loader does."""
    totals = {"added": 0, "known": 0, "duplicates": 0, "no_number": 0, "read": 0}
    key = window_key(queue)
    if rescan:
        queue.redis.hdel(key, "after", "exhausted")
    now_active = active(queue)
    if not force and not rescan and now_active >= size * LOW_WATER:
        return totals
    after = _s(queue.redis.hget(key, "after") or "")
    while now_active < size:
        page = window_page(record, queue.tenant, queue.campaign, lists, after, size - now_active)
        if not page:
            queue.redis.hset(key, "exhausted", "1")
            break
        dialable = []
        for contact in page:
            if contact.phone.startswith("+"):
                dialable.append(contact)
            elif queue.finalize_unqueued(contact.contact_id, "no_valid_number",
                                         "the contact has no valid phone number", at):
                totals["no_number"] += 1
        for k, v in queue.add(dialable, at=at).items():
            totals[k] += v
        totals["read"] += len(page)
        after = page[-1].contact_id
        queue.redis.hset(key, mapping={"after": after})  # after the add: a crash re-adds, never skips
        queue.redis.hdel(key, "exhausted")
        now_active = active(queue)
    return totals


def exhausted(queue: ContactQueue) -> bool:
    return queue.redis.hget(window_key(queue), "exhausted") is not None


class RecordWindows:
    """The engine's side of the windows: refilled off the event loop; the record's outage said once (ERROR) and its
    return once (WARNING), the window already in Redis being dialed meanwhile."""

    def __init__(self, record: Record, size: int) -> None:
        self.record = record
        self.size = size
        self._record_down = False

    async def refill(self, queue: ContactQueue, lists: Sequence[str], ts: float, rescan: bool = False) -> int | None:
        """Top the campaign's window up from the record; the contacts it queued, None when the record is down
        (logged once; the window already in Redis keeps being dialed)."""
        try:
            totals = await asyncio.to_thread(refill, self.record, queue, lists, at=ts, size=self.size, rescan=rescan)
        except RecordUnavailable as exc:
            if not self._record_down:
                log.error("campaign %s/%s: the record cannot be read, dialing the window in Redis only: %s",
                          queue.tenant, queue.campaign, exc)
            self._record_down = True
            return None
        if self._record_down:
            log.warning("the record is readable again: windows are refilled")
        self._record_down = False
        queued = totals["added"] + totals["no_number"] + totals["duplicates"]
        if queued:
            log.info("campaign %s/%s: window refilled from the record: %d queued (%d final as duplicate numbers, %d "
                     "without a valid number)", queue.tenant, queue.campaign, totals["added"], totals["duplicates"],
                     totals["no_number"])
        return queued
