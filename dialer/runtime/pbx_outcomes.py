"""The runtime's use of the outcomes our dialplan keeps in AstDB (dialer/ami/outcomes.py).

A call settled without its final events (taken over from a dead process, or gone after a reconnect: `unknown`) is
looked up in its server's AstDB first, so it is recorded with what really happened; every answered call's entry is
deleted once its outcome is stored. Without a connection the call stays `unknown` (counted, cooled off) and the
entry stays for an operator: never a guess in the person's favour of a second call.
"""

from __future__ import annotations

import logging

from dialer.ami import outcomes
from dialer.ami.calls import Outcome
from dialer.ami.client import AMIError
from dialer.ami.dispositions import Disposition
from dialer.ami.pool import AMIPool

log = logging.getLogger(__name__)


def may_be_stored(outcome: Outcome) -> bool:
    """Whether the dialplan may have stored this call's outcome (it ran: the call was answered, or we cannot tell)."""
    return outcome.answered_at is not None or outcome.disposition is Disposition.UNKNOWN


async def settle_with_pbx(pool: AMIPool, server: str, outcome: Outcome, *, taken_over: bool) -> Outcome:
    """The outcome to record: the events' own, or the stored one when the events could not know (see
    outcomes.settle). Asked only for calls taken over or settled without their events."""
    if not may_be_stored(outcome):
        return outcome
    if not taken_over and outcome.disposition is not Disposition.UNKNOWN:
        return outcome
    client = pool.clients.get(server)
    if client is None or not client.connected:
        log.warning("call %s: server %s not connected, its stored outcome cannot be read; recorded as %s",
                    outcome.call_id, server, outcome.disposition)
        return outcome
    try:
        stored = await outcomes.read(client, outcome.call_id)
    except AMIError as exc:
        log.warning("call %s: stored outcome not readable on %s (%s); recorded as %s", outcome.call_id, server, exc,
                    outcome.disposition)
        return outcome
    settled = outcomes.settle(outcome, stored)
    if settled is not outcome:
        log.info("call %s: outcome %s read back from AstDB on %s (events said %s)", outcome.call_id,
                 settled.disposition, server, outcome.disposition)
    return settled


async def forget_stored(pool: AMIPool, server: str, outcome: Outcome) -> None:
    """Delete the call's AstDB entry once its outcome is stored (an entry left behind is harmless: the call is
    settled, and a successor reads only the calls it takes over)."""
    if not may_be_stored(outcome):
        return
    client = pool.clients.get(server)
    if client is None or not client.connected:
        return
    try:
        await outcomes.forget(client, outcome.call_id)
    except AMIError as exc:
        log.warning("call %s: AstDB outcome not deleted on %s (%s)", outcome.call_id, server, exc)
