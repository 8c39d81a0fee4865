"""Final call outcomes kept in Asterisk's AstDB, so a call whose dialer process died is settled with what happened.

Asterisk does not replay events: a process killed while its calls are up never hears how they ended, and the one
that takes them over (dialer/runtime/engine.py, `_resolve`) finds them gone. So our dialplan's h extension writes
every answered call's final outcome when the call ends (asterisk/extensions_dialer.conf):

    family dialer_outcome, key <call id>, value "<epoch>,<campaign id>,<tenant id>,<outcome>"

with outcome one of answered, abandoned, opted_out, machine. The dialer reads it (`DBGet`) for a call it settles
without its final events (taken over, or gone after a reconnect), and deletes it (`DBDel`) once the call's outcome
is stored, whichever way it was learnt. A call that was never answered never ran our dialplan: no entry, and it
stays `unknown` (counted, cooled off like an answered call).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass

from dialer.ami.calls import Outcome
from dialer.ami.client import ActionFailed, AMIClient
from dialer.ami.dispositions import Disposition

log = logging.getLogger(__name__)

FAMILY = "dialer_outcome"
OUTCOMES = {d.value: d for d in (Disposition.ANSWERED, Disposition.ABANDONED, Disposition.OPTED_OUT,
                                 Disposition.MACHINE)}
_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_NOT_FOUND = "Database entry not found"


@dataclass(frozen=True)
class StoredOutcome:
    """One call's outcome as the dialplan stored it."""

    call_id: str
    at: float  # the dialplan's ${EPOCH} when the call ended
    campaign_id: str
    tenant: str
    disposition: Disposition


def parse_value(call_id: str, value: str) -> StoredOutcome | str:
    """The stored value -> StoredOutcome, or a one-line reason it cannot be used."""
    parts = value.split(",")
    if len(parts) != 4:
        return f"entry {call_id!r}: {value!r} is not epoch,campaign,tenant,outcome"
    epoch, campaign, tenant, outcome = parts
    if not _ID.match(call_id) or not _ID.match(campaign) or not _ID.match(tenant):
        return f"entry {call_id!r}: call id, campaign or tenant missing or not an id"
    disposition = OUTCOMES.get(outcome)
    if disposition is None:
        return f"entry {call_id!r}: outcome {outcome!r} is not one of {', '.join(OUTCOMES)}"
    try:
        at = float(epoch)
    except ValueError:
        return f"entry {call_id!r}: time {epoch!r} is not an epoch"
    return StoredOutcome(call_id, at, campaign, tenant, disposition)


async def read(client: AMIClient, call_id: str, *, timeout: float | None = 5.0) -> StoredOutcome | None:
    """The call's stored outcome, None when there is none (or it cannot be used: logged, left for an operator).
    AMI errors other than "not found" propagate: the caller decides whether to wait or settle without it."""
    try:
        listing = await client.event_list("DBGet", {"Family": FAMILY, "Key": call_id}, timeout=timeout)
    except ActionFailed as exc:
        if (exc.response.get("Message") or "") == _NOT_FOUND:
            return None
        raise
    for message in listing.events:
        if (message.name or "") == "DBGetResponse":
            entry = parse_value(call_id, message.get("Val") or "")
            if isinstance(entry, str):
                log.error("AMI %s: AstDB outcome %s; kept in AstDB for an operator", client.name, entry)
                return None
            return entry
    return None


async def forget(client: AMIClient, call_id: str, *, timeout: float | None = 5.0) -> bool:
    """Delete the call's entry (its outcome is stored). True when one was deleted."""
    try:
        await client.action("DBDel", {"Family": FAMILY, "Key": call_id}, timeout=timeout)
    except ActionFailed as exc:
        if (exc.response.get("Message") or "") == _NOT_FOUND:
            return False
        raise
    return True


# What events alone may have missed and the stored outcome knows: it wins over these.
_WEAK = (Disposition.UNKNOWN, Disposition.ANSWERED)


def settle(outcome: Outcome, stored: StoredOutcome | None) -> Outcome:
    """The outcome to record: the events' own, unless they could not know (unknown, or a plain answer whose
    UserEvents were raised before this process listened) and the dialplan stored a stronger one."""
    if stored is None or outcome.disposition not in _WEAK:
        return outcome
    if stored.disposition is Disposition.ANSWERED and outcome.disposition is Disposition.ANSWERED:
        return outcome
    return dataclasses.replace(
        outcome,
        disposition=stored.disposition,
        answered_at=outcome.answered_at if outcome.answered_at is not None else stored.at,
        ended_at=min(outcome.ended_at, stored.at) if outcome.disposition is Disposition.UNKNOWN else outcome.ended_at,
        abandoned=outcome.abandoned or stored.disposition is Disposition.ABANDONED,
        resolved_by="astdb",
    )
