"""An agent's disposition of a call: what the called person said, reported by a human agent or an AI platform.

Used by the gateway (`POST /v1/calls/{call_id}/disposition`) and the CLI (`dialer calls disposition`). The call
is found through the gate's call index (`t:{T}:call:{call_id}` -> number, 7 days), so only the tenant that placed
the call can dispose of it. Then:

  * the outcome goes through Gate.record_outcome, which keeps the strongest report of the call
    (dialer.facts.OUTCOME_PRECEDENCE): an agent's `refused` or `opted_out` survives the `answered` the AMI path
    records at hangup, whichever comes first, and counts in later decisions (`refused`: the French 60-day
    cool-off, REFUSAL_COOLOFF);
  * `opted_out` is also recorded durably with FactStore.add_optout(source="agent") (company-wide by default, or
    the call's campaign), audited in the same transaction. The DNC entry is written first: if the outcome write
    then fails, the caller retries and the opt-out is not written twice (same call id).

The agent's words map to the gate's outcomes (rules.model.OUTCOMES) in AGENT_OUTCOMES, as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialer.facts import OPTOUT_SCOPES, FactStore, OptOut
from dialer.gate import Gate

# What an agent may report -> the outcome the gate's history records. A campaign-scope opt-out is recorded as
# `refused` (the person declined this campaign's calls; where the law has a refusal cool-off it applies), not as
# `opted_out`, which the engine reads as a company-wide opt-out. `callback` and `wrong_number` reached someone:
# `answered` (the agent's word is kept in the attempt record).
AGENT_OUTCOMES: dict[str, str] = {
    "answered": "answered",
    "refused": "refused",
    "opted_out": "opted_out",
    "callback": "answered",
    "wrong_number": "answered",
}
NOTE_MAX = 1000
KEYWORD_MAX = 100


class UnknownCall(LookupError):
    """No call with this id in this tenant (never placed, released, older than 7 days, or another tenant's)."""


@dataclass(frozen=True)
class Disposition:
    call_id: str
    outcome: str  # the agent's word
    recorded: str  # the outcome the call now has (the stronger of this and earlier reports)
    e164: str
    campaign: str
    optout: OptOut | None


def gate_outcome(outcome: str, scope: str) -> str:
    if outcome not in AGENT_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(AGENT_OUTCOMES)}")
    if scope not in OPTOUT_SCOPES:
        raise ValueError(f"scope must be one of {', '.join(OPTOUT_SCOPES)}")
    if outcome == "opted_out" and scope == "campaign":
        return "refused"
    return AGENT_OUTCOMES[outcome]


def record_disposition(
    gate: Gate, facts: FactStore, tenant: str, call_id: str, outcome: str, *, at: datetime, actor: str,
    scope: str = "company", keyword: str | None = None, note: str | None = None,
) -> Disposition:
    """Record an agent's disposition (see the module docstring). Raises UnknownCall, ValueError (bad outcome or
    scope), or the Redis error (nothing half-done that a retry would duplicate)."""
    recorded_as = gate_outcome(outcome, scope)
    e164 = gate.number_of(tenant, call_id)
    if e164 is None:
        raise UnknownCall(call_id)
    attempt = facts.attempt_record(tenant, e164, call_id) or {}
    campaign = str(attempt.get("campaign") or "")
    optout = None
    if outcome == "opted_out":
        if scope == "campaign" and not campaign:
            raise ValueError("this call's campaign is unknown: record a company-wide opt-out")
        optout = facts.add_optout(tenant, e164, at=at, source="agent", scope=scope, campaign=campaign or None,
                                  call_id=call_id, keyword=keyword[:KEYWORD_MAX] if keyword else None, actor=actor)
    details: dict[str, Any] = {"agent_outcome": outcome, "agent": actor}
    if note:
        details["agent_note"] = note[:NOTE_MAX]
    recorded = gate.record_outcome(tenant, call_id, recorded_as, at, e164=e164, actor=actor, details=details)
    return Disposition(call_id, outcome, recorded, e164, campaign, optout)
