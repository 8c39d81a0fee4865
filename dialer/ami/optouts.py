"""Record the opt-outs our dialplan reports (UserEvent DialerOptOut) in the company-wide DNC.

Nothing lost: a failed write is retried with backoff until it succeeds; if the process stops
first, a CRITICAL log names the call id so the opt-out can be replayed, and `pending` holds
the ones not stored yet. In production the record function is FactStore.add_optout
(dialer/facts.py): one MULTI/EXEC that writes the DNC entry, the evidence stream and bumps
the person's version, so the gate's next reservation for that number sees it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from dialer.ami.calls import OptOut

if TYPE_CHECKING:
    from dialer.facts import FactStore

log = logging.getLogger(__name__)

STORED_MEMORY = 100_000  # call ids remembered as stored (a few MB at most)
SOURCE = "keypress"  # FactStore's vocabulary: keypress, agent, api, sms, import

# record(tenant, e164, *, at, source, campaign, call_id) -> None; sync or async
RecordOptOut = Callable[..., object]


class OptOutRecorder:
    """An AMIPool `on_optout` sink: `AMIPool(servers, on_optout=OptOutRecorder.for_fact_store(store))`."""

    def __init__(self, record: RecordOptOut, *, retry_initial: float = 0.1, retry_max: float = 5.0) -> None:
        self.record = record
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.recorded = 0
        self.pending: dict[str, OptOut] = {}  # call id -> opt-out not stored yet
        # Calls whose opt-out this process stored: the same opt-out comes as an event and from AstDB (the dialplan
        # writes both); the second is not stored or logged again. Bounded: FactStore writes a call's opt-out once.
        self.stored: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def for_fact_store(cls, store: FactStore, *, confirm: Callable[[str, str], None] | None = None,
                       **options: float) -> OptOutRecorder:
        """Record into the company-wide DNC through the (synchronous) FactStore, off the event loop. `confirm`
        (tenant, e164) raises while the opt-out is not durable yet (the runtime: not on every Redis replica), so
        the write is retried and the dialplan's AstDB copy is not deleted before (dialer/runtime/replicas.py)."""

        async def record(tenant: str, e164: str, **fields: object) -> None:
            await asyncio.to_thread(store.add_optout, tenant, e164, scope="company", **fields)  # type: ignore[arg-type]
            if confirm is not None:
                await asyncio.to_thread(confirm, tenant, e164)

        return cls(record, **options)

    async def __call__(self, server: str, optout: OptOut) -> bool:
        """Store the opt-out; True when stored now, False when this process had stored it already."""
        if optout.call_id in self.stored:
            return False
        self.pending[optout.call_id] = optout
        delay = self.retry_initial
        try:
            while True:
                try:
                    result = self.record(
                        optout.tenant,
                        optout.contact,
                        at=dt.datetime.fromtimestamp(optout.at, dt.UTC),
                        source=SOURCE,
                        campaign=optout.campaign_id,
                        call_id=optout.call_id,
                    )
                    if inspect.isawaitable(result):
                        await result
                    break
                except Exception as exc:
                    log.error(
                        "opt-out of call %s (campaign %s, server %s) not stored yet: %s; retrying in %.1f s",
                        optout.call_id,
                        optout.campaign_id,
                        server,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(self.retry_max, delay * 2)
        except asyncio.CancelledError:
            log.critical("opt-out of call %s NOT stored: process stopping; replay it", optout.call_id)
            raise
        self.pending.pop(optout.call_id, None)  # the same call may come from the event and from AstDB
        if optout.call_id in self.stored:  # stored meanwhile by the other path (event and AstDB at once)
            return False
        self.stored[optout.call_id] = None
        while len(self.stored) > STORED_MEMORY:
            self.stored.popitem(last=False)
        self.recorded += 1
        log.info("opt-out of call %s recorded (campaign %s)", optout.call_id, optout.campaign_id)
        return True
