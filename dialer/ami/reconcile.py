"""After a reconnect: ask Asterisk which channels are up and settle the attempts that are gone.

The decision is pure (CallTracker.reconcile over plan_reconciliation); this is the I/O half.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dialer.ami.calls import CallTracker, Outcome
from dialer.ami.client import AMIClient

# Attempts sent this recently may not have a channel yet: the next sweep decides for them.
DEFAULT_MIN_AGE = 2.0


async def reconcile(
    client: AMIClient,
    tracker: CallTracker,
    *,
    clock: Callable[[], float] = time.time,
    min_age: float = DEFAULT_MIN_AGE,
    timeout: float | None = None,
) -> list[Outcome]:
    """CoreShowChannels, then settle: still up -> kept; gone with no final event -> unknown."""
    if not len(tracker):
        return []
    listing = await client.event_list("CoreShowChannels", timeout=timeout)
    return tracker.reconcile(listing.events, clock(), min_age=min_age)
