"""Which of our call attempts an AMI message is about, and how each attempt ended.

A pure state machine: no sockets, no clock (every method takes `now`, UNIX seconds).
`register()` an attempt when its Originate is sent, `feed()` every AMI message, and
collect the records it returns: one `Outcome` per attempt, exactly once, and an `OptOut`
as soon as the called person presses the opt-out digit (before the call even ends: an
opt-out must be recorded at once, not when the line clears).

Events arrive in any order (the reference transcript shows OriginateResponse before or
after Newstate, UserEvent and Hangup), so nothing here relies on arrival order. An event
is matched to an attempt by, in turn:
  - the OriginateResponse ActionID (= our call id; `action_id` when a test uses another);
  - our channel variable DIALER_CALL_ID (ChanVariable fields, or a VarSet event) and the
    CallID field of our UserEvents;
  - a Uniqueid or Linkedid already bound to the attempt, including the Dest* fields
    (AgentComplete may name the caller only there).

The originated channel is the one whose Uniqueid equals its Linkedid (the first channel of
the call); its Hangup ends the attempt. The other channels carrying DIALER_CALL_ID (the far
half of a Local channel, for example) only contribute their hangup cause. Agent channels
share the Linkedid and are matched, but never decide anything but `connected_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dialer.ami.dispositions import (
    Disposition,
    from_hangup_cause,
    from_originate_reason,
    from_user_event,
    stronger,
)
from dialer.ami.protocol import Message

CALL_ID_VARIABLE = "DIALER_CALL_ID"
_CHANVARIABLE_CALL_ID = f"chanvariable({CALL_ID_VARIABLE.lower()})"
_UP = "6"  # ChannelState of an answered channel
_UNKNOWN_ID = "<unknown>"

# The events the tracker looks into; every other event is skipped after one set lookup.
_CHANNEL_EVENTS = frozenset(
    {
        "Newchannel",
        "Newstate",
        "VarSet",
        "Hangup",
        "UserEvent",
        "AgentConnect",
        "AgentComplete",
        "QueueCallerAbandon",
        "DialEnd",
    }
)


@dataclass
class Attempt:
    """One originated call we are waiting on. Mutable: the tracker fills it in."""

    call_id: str
    campaign_id: str
    tenant: str
    contact: str  # E.164
    sent_at: float
    action_id: str
    ring_timeout: float  # the Originate Timeout, in seconds
    uniqueid: str | None = None  # the originated channel
    linkedid: str | None = None
    channels: set[str] = field(default_factory=set)  # Uniqueids of channels carrying our call id
    response_ok: bool | None = None  # OriginateResponse Success (True) / Failure (False)
    response_reason: int | None = None
    response_at: float | None = None
    answered_at: float | None = None
    connected_at: float | None = None
    hungup_at: float | None = None
    cause: int | None = None  # the originated channel's hangup cause
    other_cause: int | None = None  # first non-zero cause of our other channels
    user_disposition: Disposition | None = None
    abandoned: bool = False
    opted_out: bool = False
    unconfirmed: bool = False  # the Originate's own response was lost (connection dropped)

    def ids(self) -> set[str]:
        ids = set(self.channels)
        if self.uniqueid:
            ids.add(self.uniqueid)
        if self.linkedid:
            ids.add(self.linkedid)
        return ids


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended. Emitted exactly once per registered attempt."""

    call_id: str
    campaign_id: str
    tenant: str
    contact: str
    disposition: Disposition
    cause: int | None  # Q.850 hangup cause when known
    answered_at: float | None
    connected_at: float | None  # an agent took the call (AgentConnect)
    ended_at: float
    uniqueid: str | None
    abandoned: bool = False  # answered and no agent in time (counts for the abandon rate)
    originate_reason: int | None = None
    resolved_by: str = "hangup"  # hangup, originate-failure, originate-error, reconcile, sweep, astdb


@dataclass(frozen=True)
class OptOut:
    """The called person asked not to be called again (UserEvent DialerOptOut)."""

    call_id: str
    campaign_id: str
    tenant: str
    contact: str
    at: float
    digit: str | None
    uniqueid: str | None


Record = Outcome | OptOut


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def call_id_of(message: Message) -> str | None:
    """Our call id as the message carries it, if it does (ChanVariable, VarSet, UserEvent)."""
    name = message.fields[0][1]
    if name == "VarSet":
        if message.get("Variable") == CALL_ID_VARIABLE:
            return message.get("Value") or None
        return None
    if name == "UserEvent":
        value = message.get("CallID")
        if value:
            return value
    for key, value in message.fields:
        if key[:1] not in ("C", "c"):  # cheap skip: most keys are not ChanVariable
            continue
        lower = key.lower()
        if lower == "chanvariable":
            var, _, val = value.partition("=")
            if var == CALL_ID_VARIABLE and val:
                return val
        elif lower == _CHANVARIABLE_CALL_ID and value:
            return value
    return None


@dataclass(frozen=True)
class ReconcilePlan:
    alive: dict[str, list[Message]]  # call id -> its channels still up
    missing: list[str]  # call ids with no channel left


def plan_reconciliation(attempts: Iterable[Attempt], channels: Iterable[Message]) -> ReconcilePlan:
    """Split in-flight attempts by whether CoreShowChannels still lists one of their channels.

    Pure: the async half (client.event_list("CoreShowChannels")) lives in dialer.ami.reconcile.
    """
    attempts = list(attempts)
    by_call = {a.call_id: a for a in attempts}
    by_id: dict[str, str] = {}
    for attempt in attempts:
        for one in attempt.ids():
            by_id[one] = attempt.call_id
    alive: dict[str, list[Message]] = {}
    for channel in channels:
        call_id = call_id_of(channel)
        if call_id not in by_call:
            call_id = by_id.get(channel.get("Uniqueid") or "") or by_id.get(channel.get("Linkedid") or "")
        if call_id is not None:
            alive.setdefault(call_id, []).append(channel)
    missing = [a.call_id for a in attempts if a.call_id not in alive]
    return ReconcilePlan(alive, missing)


class CallTracker:
    """Map AMI messages of one Asterisk server to our attempts; emit outcomes exactly once.

    response_grace: how long an attempt whose call has hung up waits for a late
    OriginateResponse (or a failed one for its channel's Hangup) before `sweep` settles it.
    no_event_grace: beyond the ring timeout, how long an attempt may see nothing at all.
    max_call_seconds: no attempt stays in flight longer than this (then: unknown).
    """

    def __init__(
        self, *, response_grace: float = 5.0, no_event_grace: float = 15.0, max_call_seconds: float = 4 * 3600
    ) -> None:
        self.response_grace = response_grace
        self.no_event_grace = no_event_grace
        self.max_call_seconds = max_call_seconds
        self._attempts: dict[str, Attempt] = {}
        self._by_action: dict[str, Attempt] = {}
        self._by_uniqueid: dict[str, Attempt] = {}
        self._by_linkedid: dict[str, Attempt] = {}

    # -- attempts ---------------------------------------------------------------------
    def register(
        self,
        call_id: str,
        campaign_id: str,
        tenant: str,
        contact: str,
        now: float,
        *,
        action_id: str | None = None,
        ring_timeout: float = 30.0,
    ) -> Attempt:
        if call_id in self._attempts:
            raise ValueError(f"call {call_id} is already in flight")
        attempt = Attempt(call_id, campaign_id, tenant, contact, now, action_id or call_id, ring_timeout)
        self._attempts[call_id] = attempt
        self._by_action[attempt.action_id] = attempt
        return attempt

    def get(self, call_id: str) -> Attempt | None:
        return self._attempts.get(call_id)

    def in_flight(self) -> list[Attempt]:
        return list(self._attempts.values())

    def __len__(self) -> int:
        return len(self._attempts)

    def withdraw(self, call_id: str) -> None:
        """Forget an attempt whose Originate was never written (NotConnected): no call exists."""
        attempt = self._attempts.get(call_id)
        if attempt is not None:
            self._forget(attempt)

    def mark_unconfirmed(self, call_id: str) -> None:
        """The Originate was written but its response was lost: keep it until reconciliation."""
        attempt = self._attempts.get(call_id)
        if attempt is not None:
            attempt.unconfirmed = True

    def refused(self, call_id: str, now: float) -> Outcome | None:
        """Asterisk answered the Originate action itself with an Error: no call was placed."""
        attempt = self._attempts.get(call_id)
        if attempt is None:
            return None
        return self._finish(attempt, Disposition.FAILED, now, "originate-error")

    # -- messages ---------------------------------------------------------------------
    def feed(self, message: Message, now: float) -> list[Record]:
        first = message.fields[0] if message.fields else None
        if first is None or (first[0] != "Event" and first[0].lower() != "event"):
            return []
        name = first[1]
        if name == "OriginateResponse":
            return self._originate_response(message, now)
        if name not in _CHANNEL_EVENTS:
            return []
        if name == "VarSet" and message.get("Variable") != CALL_ID_VARIABLE:
            # VarSet is the most frequent event; only ours binds anything. Still, a VarSet on a
            # bound channel says nothing we use.
            return []
        attempt = self._match(message)
        if attempt is None:
            return []
        return self._channel_event(attempt, name, message, now)

    def _match(self, message: Message) -> Attempt | None:
        call_id = call_id_of(message)
        uniqueid = message.get("Uniqueid")
        linkedid = message.get("Linkedid")
        if call_id is not None:
            attempt = self._attempts.get(call_id)
            if attempt is None:
                return None  # another dialer's call, or one already settled
            if uniqueid and uniqueid != _UNKNOWN_ID:
                self._bind_channel(attempt, uniqueid, linkedid)
            return attempt
        attempt = self._by_uniqueid.get(uniqueid or "") or self._by_linkedid.get(linkedid or "")
        if attempt is not None:
            return attempt
        # AgentComplete and others may name our caller only in their Dest* fields.
        return self._by_uniqueid.get(message.get("DestUniqueid") or "") or self._by_linkedid.get(
            message.get("DestLinkedid") or ""
        )

    def _bind_channel(self, attempt: Attempt, uniqueid: str, linkedid: str | None) -> None:
        if uniqueid not in attempt.channels:
            attempt.channels.add(uniqueid)
            self._by_uniqueid[uniqueid] = attempt
        if linkedid and attempt.linkedid is None:
            attempt.linkedid = linkedid
            self._by_linkedid[linkedid] = attempt
            if attempt.uniqueid is None:
                attempt.uniqueid = linkedid  # the originated channel starts the linked group
                self._by_uniqueid.setdefault(linkedid, attempt)
        if linkedid and uniqueid == linkedid and attempt.uniqueid != uniqueid:
            attempt.uniqueid = uniqueid

    def _originate_response(self, message: Message, now: float) -> list[Record]:
        attempt = self._by_action.get(message.get("ActionID") or "")
        if attempt is None:
            return []
        attempt.response_at = now
        attempt.response_reason = _int(message.get("Reason"))
        attempt.response_ok = (message.get("Response") or "").lower() == "success"
        uniqueid = message.get("Uniqueid")
        if attempt.response_ok:
            if uniqueid and uniqueid != _UNKNOWN_ID:
                attempt.uniqueid = uniqueid
                attempt.channels.add(uniqueid)
                self._by_uniqueid[uniqueid] = attempt
            if attempt.answered_at is None:
                attempt.answered_at = now
        return self._settle(attempt, now)

    def _channel_event(self, attempt: Attempt, name: str, message: Message, now: float) -> list[Record]:
        uniqueid = message.get("Uniqueid")
        own = uniqueid is not None and uniqueid in attempt.channels
        primary = uniqueid is not None and uniqueid == attempt.uniqueid
        out: list[Record] = []
        if name == "Newstate":
            if primary and message.get("ChannelState") == _UP and attempt.answered_at is None:
                attempt.answered_at = now
        elif name == "Hangup":
            cause = _int(message.get("Cause"))
            if primary:
                attempt.hungup_at = now
                attempt.cause = cause
            elif own and cause and attempt.other_cause is None:
                attempt.other_cause = cause
            out += self._settle(attempt, now)
        elif name == "UserEvent":
            event = message.get("UserEvent")
            if attempt.answered_at is None:
                attempt.answered_at = now  # our dialplan only runs on an answered call
            disposition = from_user_event(event)
            if disposition is not None:
                attempt.user_disposition = stronger(attempt.user_disposition, disposition)
                if disposition is Disposition.ABANDONED:
                    attempt.abandoned = True
                elif disposition is Disposition.OPTED_OUT and not attempt.opted_out:
                    attempt.opted_out = True
                    out.append(
                        OptOut(
                            attempt.call_id,
                            attempt.campaign_id,
                            attempt.tenant,
                            attempt.contact,
                            now,
                            message.get("Digit"),
                            attempt.uniqueid,
                        )
                    )
            out += self._settle(attempt, now)
        elif name in ("AgentConnect", "AgentComplete"):
            # AgentComplete too: if AgentConnect was lost (a reconnect), the call still reached an agent.
            if attempt.connected_at is None:
                attempt.connected_at = now
        elif name == "DialEnd":
            # Our dialplan's Dial() to an AI endpoint (or app_queue's to an agent): our own channel is the caller
            # (Uniqueid), the one that answered is Dest. (The Originate's own DialEnd names our channel as Dest only.)
            if primary and message.get("DialStatus") == "ANSWER" and attempt.connected_at is None:
                attempt.connected_at = now
        elif name == "QueueCallerAbandon" and attempt.connected_at is None:
            attempt.abandoned = True
            attempt.user_disposition = stronger(attempt.user_disposition, Disposition.ABANDONED)
        return out

    # -- settling ---------------------------------------------------------------------
    def _settle(self, attempt: Attempt, now: float) -> list[Record]:
        """Finish the attempt if what we know is final; otherwise keep waiting."""
        if attempt.call_id not in self._attempts:
            return []
        if attempt.response_ok is False:
            # A failed originate: wait for the channel's Hangup (its cause is worth having)
            # unless no channel was ever seen (the request failed before any existed).
            if attempt.hungup_at is not None or attempt.uniqueid is None:
                return [self._finish(attempt, self._failure_disposition(attempt), now, "originate-failure")]
            return []
        if attempt.hungup_at is None:
            return []
        if attempt.answered_at is not None:
            return [self._finish(attempt, attempt.user_disposition or Disposition.ANSWERED, now, "hangup")]
        return []  # hung up unanswered before the OriginateResponse: wait for it (sweep settles)

    def _failure_disposition(self, attempt: Attempt) -> Disposition:
        disposition = from_originate_reason(attempt.response_reason)
        if disposition in (Disposition.FAILED, Disposition.UNKNOWN, Disposition.ANSWERED):
            by_cause = from_hangup_cause(attempt.cause or attempt.other_cause)
            if by_cause is not None and by_cause is not Disposition.ANSWERED:
                return by_cause
            if disposition is Disposition.ANSWERED:  # a Failure that claims answer: contradictory
                return Disposition.UNKNOWN
        return disposition

    def _forget(self, attempt: Attempt) -> None:
        del self._attempts[attempt.call_id]
        self._by_action.pop(attempt.action_id, None)
        for one in attempt.ids():
            if self._by_uniqueid.get(one) is attempt:
                del self._by_uniqueid[one]
            if self._by_linkedid.get(one) is attempt:
                del self._by_linkedid[one]

    def _finish(self, attempt: Attempt, disposition: Disposition, now: float, how: str) -> Outcome:
        self._forget(attempt)
        return Outcome(
            call_id=attempt.call_id,
            campaign_id=attempt.campaign_id,
            tenant=attempt.tenant,
            contact=attempt.contact,
            disposition=disposition,
            cause=attempt.cause or attempt.other_cause,
            answered_at=attempt.answered_at,
            connected_at=attempt.connected_at,
            ended_at=attempt.hungup_at if attempt.hungup_at is not None else now,
            uniqueid=attempt.uniqueid,
            abandoned=attempt.abandoned,
            originate_reason=attempt.response_reason,
            resolved_by=how,
        )

    def _settle_without_events(self, attempt: Attempt, now: float, how: str) -> Outcome:
        """Settle from whatever we have when no further event will come."""
        if attempt.response_ok is False:
            return self._finish(attempt, self._failure_disposition(attempt), now, how)
        if attempt.answered_at is not None and attempt.hungup_at is not None:
            return self._finish(attempt, attempt.user_disposition or Disposition.ANSWERED, now, how)
        if attempt.hungup_at is not None:
            by_cause = from_hangup_cause(attempt.cause or attempt.other_cause)
            if by_cause is None or by_cause is Disposition.ANSWERED:
                by_cause = Disposition.UNKNOWN
            return self._finish(attempt, by_cause, now, how)
        return self._finish(attempt, Disposition.UNKNOWN, now, how)

    def sweep(self, now: float) -> list[Outcome]:
        """Settle attempts that waited too long. Call it periodically while connected."""
        out = []
        for attempt in list(self._attempts.values()):
            waited_for_response = attempt.hungup_at is not None and now - attempt.hungup_at >= self.response_grace
            waited_for_hangup = (
                attempt.response_ok is False
                and attempt.response_at is not None
                and now - attempt.response_at >= self.response_grace
            )
            silent = (
                attempt.response_ok is None
                and not attempt.channels
                and now - attempt.sent_at >= attempt.ring_timeout + self.no_event_grace
            )
            too_long = now - attempt.sent_at >= self.max_call_seconds
            if waited_for_response or waited_for_hangup or silent or too_long:
                out.append(self._settle_without_events(attempt, now, "sweep"))
        return out

    def reconcile(self, channels: Iterable[Message], now: float, *, min_age: float = 0.0) -> list[Outcome]:
        """After a reconnect: keep attempts whose channels are still up, settle the others.

        An attempt with no channel left and no final event becomes `unknown`: it is never
        re-dialed automatically, because the call may well have reached the person.
        Attempts sent less than `min_age` seconds ago of which nothing was heard yet are left
        for the sweep (their channel may not exist yet).
        """
        plan = plan_reconciliation(self._attempts.values(), channels)
        for call_id, found in plan.alive.items():
            attempt = self._attempts[call_id]
            for channel in found:
                uniqueid = channel.get("Uniqueid")
                if uniqueid:
                    self._bind_channel(attempt, uniqueid, channel.get("Linkedid"))
                if uniqueid == attempt.uniqueid and channel.get("ChannelState") == _UP and attempt.answered_at is None:
                    attempt.answered_at = now  # answered while we were away: the instant is approximate
        out = []
        for call_id in plan.missing:
            attempt = self._attempts[call_id]
            if not attempt.channels and attempt.response_ok is None and now - attempt.sent_at < min_age:
                continue
            out.append(self._settle_without_events(attempt, now, "reconcile"))
        return out
