"""Place one call: the Originate action of CONTRACTS.md, and what to do when it goes wrong.

The rule that matters: an Originate that was written to the socket is never sent again.
If its response is lost (the connection dropped, or no response in time), the call may be
ringing a person right now; the attempt stays in flight, marked unconfirmed, until the
events or the reconciliation after the reconnect (dialer.ami.reconcile) settle it. Only
`NotConnected` (nothing was written) lets the caller try again, here or on another server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from dialer.ami.calls import CallTracker, Outcome
from dialer.ami.client import ActionTimeout, AMIClient, ConnectionLost, NotConnected
from dialer.ami.protocol import Message, variables

MIN_RING_MS = 15_000  # the minimum ring time: 15 s
OPTOUT_DIGITS = frozenset("0123456789*#")


@dataclass(frozen=True)
class OriginateRequest:
    """Everything one Originate needs. `channel` is the dial string (see dial_string)."""

    call_id: str
    campaign_id: str
    tenant: str
    contact: str  # E.164
    channel: str
    caller_id: str
    timeout_ms: int = 30_000
    agent_kind: Literal["queue", "ai"] = "queue"
    queue: str = ""
    ai_endpoint: str = ""
    ai_disclosure: bool = False
    recording_notice: bool = False
    optout_digit: str = "9"
    info_message: str = ""
    amd: bool = False
    connect_timeout: int = 2  # seconds from answer to an agent before the abandon path
    context: str = "dialer-outbound"
    exten: str = "s"
    priority: int = 1
    extra_variables: Mapping[str, str] = field(default_factory=dict)


def dial_string(template: str, e164: str) -> str:
    """The Channel for a number: `{number}` is the E.164 form, `{digits}` the same without '+'."""
    return template.format(number=e164, digits=e164.lstrip("+"))


def dial_template_error(template: str) -> str | None:
    """Why a dial template cannot be used (None: it can): it must name the number, and nothing else in braces
    (write a literal brace as {{ or }})."""
    if "{number}" not in template and "{digits}" not in template:
        return "must contain {number} or {digits}"
    try:
        dial_string(template, "+33145678901")
    except (KeyError, IndexError, ValueError) as exc:
        return f"only {{number}} and {{digits}} may appear in braces ({type(exc).__name__}: {exc})"
    return None


def caller_id_field(number: str, name: str = "") -> str:
    """The Originate's CallerID for a campaign: `"Seller" <+33162000000>`, or the bare number without a name (an
    empty number stays empty: the gate denies masked calls where the law forbids them). The name loses the
    characters Asterisk's caller-ID parser treats as syntax."""
    number = number.strip()
    clean = " ".join("".join(ch if ch.isprintable() else " " for ch in name if ch not in '"<>\\').split())
    return f'"{clean}" <{number}>' if clean and number else number


def campaign_caller_id(config: Mapping[str, object]) -> str:
    """The CallerID of a campaign's Originates: its `caller_id` (the number the gate judged), named after its
    seller (`seller_name`, what the called person's phone may show)."""
    return caller_id_field(str(config.get("caller_id") or ""), str(config.get("seller_name") or ""))


def _flag(value: bool) -> str:
    return "1" if value else "0"


def originate_fields(request: OriginateRequest) -> list[tuple[str, object]]:
    """The Originate fields per CONTRACTS.md. Raises ValueError on a request that breaks it."""
    if request.timeout_ms < MIN_RING_MS:
        raise ValueError(f"Originate timeout {request.timeout_ms} ms is below the minimum ring of {MIN_RING_MS} ms")
    if request.agent_kind not in ("queue", "ai"):
        raise ValueError(f"agent kind must be queue or ai, not {request.agent_kind!r}")
    if request.optout_digit not in OPTOUT_DIGITS:
        raise ValueError(f"opt-out digit must be one DTMF key, not {request.optout_digit!r}")
    if not request.call_id or not request.channel:
        raise ValueError("an Originate needs a call id and a channel")
    values = {
        "DIALER_CALL_ID": request.call_id,
        "DIALER_CAMPAIGN_ID": request.campaign_id,
        "DIALER_TENANT_ID": request.tenant,
        "DIALER_AGENT_KIND": request.agent_kind,
        "DIALER_QUEUE": request.queue,
        "DIALER_AI_ENDPOINT": request.ai_endpoint,
        "DIALER_AI_DISCLOSURE": _flag(request.ai_disclosure),
        "DIALER_RECORDING_NOTICE": _flag(request.recording_notice),
        "DIALER_OPTOUT_DIGIT": request.optout_digit,
        "DIALER_INFO_MESSAGE": request.info_message,
        "DIALER_AMD": _flag(request.amd),
        "DIALER_CONNECT_TIMEOUT": str(request.connect_timeout),
        **request.extra_variables,
    }
    return [
        ("Channel", request.channel),
        ("Context", request.context),
        ("Exten", request.exten),
        ("Priority", request.priority),
        ("Timeout", request.timeout_ms),
        ("CallerID", request.caller_id),
        ("Async", "true"),
        ("Variable", variables(values)),
    ]


@dataclass(frozen=True)
class OriginateResult:
    """queued: Asterisk accepted it (events will follow); refused: it answered `Response: Error` to the
    action itself, before any channel existed (shutting down, not fully booted, permission denied,
    no such extension...): no call, no outcome, `detail` is Asterisk's message, and the caller gives
    the contact back as never dialed; unconfirmed: the response was lost, the attempt stays in flight
    until events or reconciliation settle it. Never re-send in any case. (A call that existed and
    failed is an OriginateResponse `Failure` event: an outcome like any other, counted.)"""

    call_id: str
    status: Literal["queued", "refused", "unconfirmed"]
    response: Message | None = None
    outcome: Outcome | None = None
    detail: str = ""


async def originate(
    client: AMIClient,
    tracker: CallTracker,
    request: OriginateRequest,
    *,
    clock: Callable[[], float] = time.time,
    timeout: float | None = None,
) -> OriginateResult:
    """Register the attempt, send the Originate (ActionID = call id), return on its response.

    Raises NotConnected (nothing sent, attempt withdrawn: safe to try elsewhere) and
    ValueError (a request that breaks the contract).
    """
    fields = originate_fields(request)
    tracker.register(
        request.call_id,
        request.campaign_id,
        request.tenant,
        request.contact,
        clock(),
        ring_timeout=request.timeout_ms / 1000,
    )
    try:
        response = await client.action("Originate", fields, action_id=request.call_id, timeout=timeout, check=False)
    except NotConnected:
        tracker.withdraw(request.call_id)
        raise
    except (ConnectionLost, ActionTimeout) as exc:
        tracker.mark_unconfirmed(request.call_id)
        return OriginateResult(request.call_id, "unconfirmed", detail=str(exc))
    if (response.name or "").lower() == "error":
        tracker.withdraw(request.call_id)  # no channel was created: nothing to track, nothing to record
        return OriginateResult(request.call_id, "refused", response, None, response.get("Message") or "")
    return OriginateResult(request.call_id, "queued", response)
