"""A campaign's dial window (issue 18): at most `size` contacts of the campaign in Redis at a time, read from the
record (dialer.record.contacts) and refilled as calls drain it; contacts outside the window cost Redis nothing,
before they enter it and after they leave it.

What a window contact holds in Redis is the runtime queue's compact entry (dialer.runtime.queues: one string with
its number, zones, country, postal code, state, priority, attempts); the per-person facts the gate reads are loaded
by the gate itself for the numbers it decides on. A contact that leaves (final) is written to the record's
`campaign_finals` by the next refill and then dropped from Redis (`archive_finals`); the window never reads it
again, and the queue's `tally` keeps the campaign's figures.

Nothing twice: the cursor (the last contact id taken, `q:window` field `after`) moves in the same script that adds
the page, and only if the window's generation (`gen`) is the one read before the page: dropping finals and a
rescan move it, so a page read before a contact was moved to the record (or by another process) is read again.
Contacts the queue still holds are skipped (read in one step with the generation). Duplicate numbers are found in
the record (one contact per (campaign, number): the first by id) and leave as final `duplicate_number`.
New members imported later behind the cursor are picked up by `refill(..., rescan=True)`, which starts again from
the first contact (those final in the record or held in Redis are skipped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from dialer.record.contacts import campaign_finals, store_finals, window_page
from dialer.record.store import Record, RecordUnavailable
from dialer.runtime.queues import ContactQueue, queue_prefix

# The engine's logger: RecordWindows' lines were the engine's before the split; operators filter on its name.
log = logging.getLogger("dialer.runtime.engine")

DEFAULT_SIZE = 2000
LOW_WATER = 0.5  # refill when fewer than this share of the window is still to be dialed
FINALS_BATCH = 1000  # finals moved to the record per transaction
STALE_TRIES = 20  # pages read again when another process moved the window meanwhile, before giving up this turn


def window_key(queue: ContactQueue) -> str:
    return queue_prefix(queue.tenant, queue.campaign) + "window"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def active(queue: ContactQueue) -> int:
    """Contacts of the window still to be dialed or in a call: ready, waiting for a retry, in flight."""
    counts = queue.counts()
    return counts["ready"] + counts["waiting"] + counts["inflight"]


def archive_finals(record: Record, queue: ContactQueue) -> int:
    """Move the queue's final contacts to the record (campaign_finals), then drop them from Redis. Written before
    dropped: a crash in between writes them again (idempotent). Returns how many moved."""
    moved = 0
    while True:
        finals = queue.finals_batch(FINALS_BATCH)
        if not finals:
            return moved
        store_finals(record, queue.tenant, queue.campaign, finals)
        moved += queue.drop_finals(list(finals))


def final_states(record: Record, queue: ContactQueue) -> dict[str, dict[str, Any]]:
    """Every contact that left the campaign: those moved to the record and those still in Redis."""
    return {**campaign_finals(record, queue.tenant, queue.campaign), **queue.final_states()}


def refill(record: Record, queue: ContactQueue, lists: Sequence[str], *, at: float, size: int = DEFAULT_SIZE,
           rescan: bool = False, force: bool = False) -> dict[str, int]:
    """Top the window up to `size` contacts from the record (when below LOW_WATER of it, or `force`), after moving
    its final contacts to the record. A contact without a valid number leaves as final (`no_valid_number`), one
    whose number an earlier contact of the campaign holds as `duplicate_number`."""
    totals = {"added": 0, "known": 0, "duplicates": 0, "no_number": 0, "read": 0}
    archive_finals(record, queue)
    key = window_key(queue)
    if rescan:
        pipe = queue.redis.pipeline(transaction=True)
        pipe.hdel(key, "after", "exhausted")
        pipe.hincrby(key, "gen", 1)
        pipe.execute()
    now_active = active(queue)
    if not force and not rescan and now_active >= size * LOW_WATER:
        return totals
    stale = 0
    while now_active < size:
        gen, after, held = queue.held()
        page = window_page(record, queue.tenant, queue.campaign, lists, after, size - now_active)
        if not page:
            queue.redis.hset(key, "exhausted", "1")
            break
        items = []
        for contact in page:
            if contact.contact_id in held:
                totals["known"] += 1
            elif not contact.phone.startswith("+"):
                items.append((contact, "n", ""))
            elif contact.duplicate_of:
                items.append((contact, "d", contact.duplicate_of))
            else:
                items.append((contact, "q", ""))
        done = queue.load_window(items, at=at, gen=gen, after=page[-1].contact_id)
        if done is None:  # another process moved the window since `gen` was read: read the page again
            totals["known"] -= sum(1 for c in page if c.contact_id in held)
            stale += 1
            if stale >= STALE_TRIES:
                break
            continue
        for k, v in done.items():
            totals[k] += v
        totals["read"] += len(page)
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

    async def archive(self, queue: ContactQueue) -> int | None:
        """Move the campaign's final contacts to the record (None when the record is down: they stay in Redis)."""
        try:
            return await asyncio.to_thread(archive_finals, self.record, queue)
        except RecordUnavailable as exc:
            if not self._record_down:
                log.error("campaign %s/%s: the record cannot be written, final contacts stay in Redis: %s",
                          queue.tenant, queue.campaign, exc)
            self._record_down = True
            return None

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
