"""How a call ended, from what Asterisk tells us: pure tables, no I/O.

Three sources, in the order the call tracker trusts them:
1. our dialplan's UserEvents (DialerOptOut, DialerMachine, DialerAbandon): they say what
   happened after answer, which Asterisk itself cannot know;
2. the OriginateResponse Reason (Asterisk's own summary of the originate attempt);
3. the Q.850 hangup cause of the called channel (what the carrier said).

The tables are data on purpose: a telephony engineer or a lawyer may want a cause moved
from one bucket to another without reading code.
"""

from __future__ import annotations

from enum import StrEnum


class Disposition(StrEnum):
    """The dispositions of CONTRACTS.md (string values are the contract)."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    FAILED = "failed"
    ABANDONED = "abandoned"
    MACHINE = "machine"
    OPTED_OUT = "opted_out"
    UNKNOWN = "unknown"


# Q.850 cause codes as Asterisk reports them in Hangup `Cause`.
# 0 (not defined) is deliberately absent: it carries no information (Asterisk sets it on the
# originating half of a Local channel, for example) and must not decide an outcome.
HANGUP_CAUSES: dict[int, Disposition] = {
    1: Disposition.FAILED,  # unallocated (unassigned) number
    2: Disposition.FAILED,  # no route to specified transit network
    3: Disposition.FAILED,  # no route to destination
    16: Disposition.ANSWERED,  # normal call clearing (only meaningful once answered)
    17: Disposition.BUSY,  # user busy
    18: Disposition.NO_ANSWER,  # no user responding
    19: Disposition.NO_ANSWER,  # no answer from user (user alerted)
    20: Disposition.NO_ANSWER,  # subscriber absent (phone off, out of coverage)
    21: Disposition.BUSY,  # call rejected: a person declined it; retry later like busy, never "failed"
    22: Disposition.FAILED,  # number changed
    27: Disposition.FAILED,  # destination out of order
    28: Disposition.FAILED,  # invalid number format (incomplete number)
    34: Disposition.CONGESTION,  # no circuit/channel available
    38: Disposition.CONGESTION,  # network out of order
    41: Disposition.CONGESTION,  # temporary failure
    42: Disposition.CONGESTION,  # switching equipment congestion
    44: Disposition.CONGESTION,  # requested circuit/channel not available
    47: Disposition.CONGESTION,  # resource unavailable, unspecified
}

# OriginateResponse `Reason` (Asterisk's AST_CONTROL_* summary of the originate).
ORIGINATE_REASONS: dict[int, Disposition] = {
    0: Disposition.FAILED,  # the channel could not be requested at all
    1: Disposition.FAILED,  # hung up before any answer or progress
    3: Disposition.NO_ANSWER,  # rang until the Originate Timeout
    4: Disposition.ANSWERED,
    5: Disposition.BUSY,
    8: Disposition.CONGESTION,
}

# UserEvents our dialplan raises (asterisk/README.md) that decide the disposition.
USER_EVENTS: dict[str, Disposition] = {
    "DialerOptOut": Disposition.OPTED_OUT,
    "DialerMachine": Disposition.MACHINE,
    "DialerAbandon": Disposition.ABANDONED,
}

# When several of them arrive for one call, the strongest wins: an opt-out must never be
# hidden behind "abandoned" (the abandon is still flagged on the outcome for the abandon rate).
USER_EVENT_PRIORITY: dict[Disposition, int] = {
    Disposition.OPTED_OUT: 3,
    Disposition.MACHINE: 2,
    Disposition.ABANDONED: 1,
}


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def from_hangup_cause(cause: int | str | None) -> Disposition | None:
    """The disposition a Q.850 cause implies, UNKNOWN for an unlisted cause, None for 0/absent."""
    code = _as_int(cause)
    if not code:
        return None
    return HANGUP_CAUSES.get(code, Disposition.UNKNOWN)


def from_originate_reason(reason: int | str | None) -> Disposition:
    """The disposition an OriginateResponse Reason implies; UNKNOWN for anything unlisted."""
    code = _as_int(reason)
    if code is None:
        return Disposition.UNKNOWN
    return ORIGINATE_REASONS.get(code, Disposition.UNKNOWN)


def from_user_event(name: str | None) -> Disposition | None:
    """The disposition one of our UserEvents implies (None for DialerConnected and others)."""
    if not name:
        return None
    return USER_EVENTS.get(name)


def stronger(current: Disposition | None, new: Disposition) -> Disposition:
    """The UserEvent disposition to keep when a call reports more than one."""
    if current is None or USER_EVENT_PRIORITY.get(new, 0) > USER_EVENT_PRIORITY.get(current, 0):
        return new
    return current
