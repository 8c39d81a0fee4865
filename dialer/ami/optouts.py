"""Record the opt-outs our dialplan reports (UserEvent DialerOptOut) in the company-wide DNC.

Nothing lost: a failed write is retried with backoff until it succeeds (or the process
stops, which is logged loudly with the call id so the opt-out can be replayed). The
record function is injected: in production it is FactStore.add_optout (dialer/facts.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Callable

from dialer.ami.calls import OptOut

log = logging.getLogger(__name__)

SOURCE = "dialplan-keypress"

# record(tenant, e164, *, source, call_id, campaign, at) -> None (sync or async)
RecordOptOut = Callable[..., object]


class OptOutRecorder:
    """An AMIPool `on_optout` sink: `pool = AMIPool(servers, on_optout=OptOutRecorder(record))`."""

    def __init__(self, record: RecordOptOut, *, retry_initial: float = 0.1, retry_max: float = 5.0) -> None:
        self.record = record
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.recorded = 0
        self.pending: dict[str, OptOut] = {}  # call id -> opt-out not yet stored

    async def __call__(self, server: str, optout: OptOut) -> None:
        self.pending[optout.call_id] = optout
        delay = self.retry_initial
        try:
            while True:
                try:
                    result = self.record(
                        optout.tenant,
                        optout.contact,
                        source=SOURCE,
                        call_id=optout.call_id,
                        campaign=optout.campaign_id,
                        at=dt.datetime.fromtimestamp(optout.at, dt.UTC),
                    )
                    if inspect.isawaitable(result):
                        await result
                    break
                except asyncio.CancelledError:
                    raise
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
        del self.pending[optout.call_id]
        self.recorded += 1
        log.info("opt-out of call %s recorded (campaign %s)", optout.call_id, optout.campaign_id)
