"""Kill-switches: holds that stop every dialer process from originating for a tenant or a campaign at once.

  t:{T}:hold:operator        JSON {code, reason, by, at}: the operator suspended the tenant (`dialer tenant suspend`)
  t:{T}:hold:budget          JSON {code, reason, by, at, until}: a budget with hard_stop reached 100 %; expires by
                             itself when the budget's period ends (dialer/usage/budgets.py)
  t:{T}:campaign:{C}:hold    JSON {code, reason, by, at}: the tenant's admin suspended the campaign
                             (POST /v1/campaigns/{id}/suspend)

How it stops dialing at once: the gate's reserve script (dialer/gate.py _RESERVE), the same atomic step that
makes an opt-out binding the instant it is written, checks these keys for every reservation, and the engine
reserves immediately before each Originate. So once a hold is written no process places a call for it, whatever
it read before; calls already up are not touched and finish normally. The engine also reads the holds each tick
and claims nothing for a held campaign (no churn of denials), showing the hold's reason as the campaign's pacing
text on the dashboard. The check has no switch: no setting, campaign field, API field or environment variable
is read on that path (tests/test_holds.py scans for one).

Every suspension and resumption is audited (kind `hold`: who, why, what) in the same transaction as the write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from dialer.audit import AuditEvent, AuditLog
from dialer.livestats import channel
from dialer.webhooks.events import queue_event

TENANT_SUSPENDED = "TENANT_SUSPENDED"
BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
CAMPAIGN_SUSPENDED = "CAMPAIGN_SUSPENDED"
CODES = {
    TENANT_SUSPENDED: "the operator suspended this tenant",
    BUDGET_EXHAUSTED: "a usage budget with a hard stop is used up",
    CAMPAIGN_SUSPENDED: "the tenant's admin suspended this campaign",
}
MAX_REASON = 500

# Lua used inside the gate's reserve script (p = "t:{T}:"): 0 when the reservation may go, else which hold.
HOLD_LUA = r"""
local function hold_of(p, campaign)
  if redis.call('EXISTS', p .. 'hold:operator') == 1 then return -2 end
  if redis.call('EXISTS', p .. 'hold:budget') == 1 then return -4 end
  if campaign and redis.call('EXISTS', p .. 'campaign:' .. campaign .. ':hold') == 1 then return -3 end
  return 0
end
"""
STATUS_CODES = {-2: TENANT_SUSPENDED, -4: BUDGET_EXHAUSTED, -3: CAMPAIGN_SUSPENDED}


class HoldError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Hold:
    code: str
    reason: str
    by: str
    at: str
    until: str | None = None
    campaign: str | None = None

    def text(self) -> str:
        """One line for people: what, why, who, since when."""
        what = CODES.get(self.code, self.code)
        until = f" until {self.until}" if self.until else ""
        return f"{what}: {self.reason} (by {self.by}, {self.at}{until})"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "reason": self.reason, "by": self.by, "at": self.at,
                               "text": self.text()}
        if self.until:
            out["until"] = self.until
        if self.campaign:
            out["campaign"] = self.campaign
        return out


def operator_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:hold:operator"


def budget_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:hold:budget"


def campaign_hold_key(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:hold"


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_hold(raw: Any, campaign: str | None = None) -> Hold | None:
    if raw is None:
        return None
    data = json.loads(raw)
    return Hold(data.get("code", ""), data.get("reason", ""), data.get("by", ""), data.get("at", ""),
                data.get("until"), campaign)


def _reason(reason: str) -> str:
    text = " ".join(str(reason or "").split())
    if not text:
        raise HoldError("reason_required", "reason: say why (it is shown to the tenant and kept in the audit trail)")
    if len(text) > MAX_REASON:
        raise HoldError("reason_too_long", f"reason: at most {MAX_REASON} characters")
    return text


def _write(client: Any, key: str, tenant: str, hold: dict[str, Any] | None, event: AuditEvent,
           campaign: str | None = None, *, notify_tenant: bool = False) -> None:
    """The hold (or its removal) and its audit entry in one transaction; for a campaign also its
    campaign.state_changed webhook and a nudge to open dashboards; for the operator's suspension
    (notify_tenant) the tenant.state_changed webhook."""
    pipe = client.pipeline(transaction=True)
    if hold is None:
        pipe.delete(key)
    else:
        pipe.set(key, json.dumps(hold, sort_keys=True))
    AuditLog(client).queue(pipe, tenant, [event])
    if notify_tenant:
        queue_event(pipe, tenant, "tenant.state_changed", "tenant",
                    {"action": "suspend" if hold is not None else "resume", "code": TENANT_SUSPENDED,
                     "by": event.actor, "reason": event.payload.get("reason", "")}, event.at)
    if campaign is not None:
        action = "suspend" if hold is not None else "unsuspend"
        queue_event(pipe, tenant, "campaign.state_changed", f"campaign:{campaign}",
                    {"campaign": campaign, "action": action, "by": event.actor,
                     "reason": event.payload.get("reason", "")}, event.at)
        pipe.publish(channel(tenant, campaign), "1")
    pipe.execute()


def suspend_tenant(client: Any, tenant: str, *, reason: str, by: str, at: datetime) -> Hold:
    """Operator's kill-switch: no call is originated for the tenant from now on (every process)."""
    hold = {"code": TENANT_SUSPENDED, "reason": _reason(reason), "by": by, "at": _stamp(at)}
    _write(client, operator_key(tenant), tenant, hold,
           AuditEvent("hold", by, {"action": "suspend", "scope": "tenant", **hold}, at), notify_tenant=True)
    return Hold(**hold)


def resume_tenant(client: Any, tenant: str, *, reason: str, by: str, at: datetime) -> bool:
    """Lift the operator's suspension; False when there was none (nothing written)."""
    if not client.exists(operator_key(tenant)):
        return False
    _write(client, operator_key(tenant), tenant, None,
           AuditEvent("hold", by, {"action": "resume", "scope": "tenant", "reason": _reason(reason)}, at),
           notify_tenant=True)
    return True


def suspend_campaign(client: Any, tenant: str, campaign: str, *, reason: str, by: str, at: datetime) -> Hold:
    hold = {"code": CAMPAIGN_SUSPENDED, "reason": _reason(reason), "by": by, "at": _stamp(at)}
    _write(client, campaign_hold_key(tenant, campaign), tenant, hold,
           AuditEvent("hold", by, {"action": "suspend", "scope": "campaign", "campaign": campaign, **hold}, at),
           campaign)
    return Hold(**hold, campaign=campaign)


def resume_campaign(client: Any, tenant: str, campaign: str, *, reason: str, by: str, at: datetime) -> bool:
    if not client.exists(campaign_hold_key(tenant, campaign)):
        return False
    _write(client, campaign_hold_key(tenant, campaign), tenant, None,
           AuditEvent("hold", by, {"action": "resume", "scope": "campaign", "campaign": campaign,
                                   "reason": _reason(reason)}, at), campaign)
    return True


def hold_for_budget(client: Any, tenant: str, *, reason: str, until: datetime, at: datetime) -> bool:
    """The hard stop: hold the tenant until `until` (the budget period's end). False when already held."""
    hold = {"code": BUDGET_EXHAUSTED, "reason": reason, "by": "budget", "at": _stamp(at), "until": _stamp(until)}
    key = budget_key(tenant)
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)  # one hold and one audit entry, however many processes reach 100 % at once
                if pipe.exists(key):
                    pipe.unwatch()
                    return False
                pipe.multi()
                # for the rest of the period as the caller's clock measures it (not an absolute instant: the
                # runtime's clock is the law's clock, offset to Redis's, and tests run it in the past)
                pipe.set(key, json.dumps(hold, sort_keys=True), ex=max(1, int((until - at).total_seconds())))
                AuditLog(client).queue(pipe, tenant, [AuditEvent("hold", "budget", {"action": "suspend",
                                                                                      "scope": "tenant", **hold}, at)])
                pipe.execute()
                return True
            except redis.WatchError:
                continue


def lift_budget_hold(client: Any, tenant: str, *, reason: str, by: str, at: datetime) -> bool:
    """An operator lifts a budget hold early (the limit was raised: PUT /v1/usage/plan lifts it too)."""
    if not client.exists(budget_key(tenant)):
        return False
    _write(client, budget_key(tenant), tenant, None,
           AuditEvent("hold", by, {"action": "resume", "scope": "budget", "reason": _reason(reason)}, at))
    return True


def tenant_holds(client: Any, tenant: str) -> list[Hold]:
    """The tenant-wide holds in force (operator first)."""
    raws = client.mget([operator_key(tenant), budget_key(tenant)])
    return [h for h in (parse_hold(r) for r in raws) if h is not None]


def campaign_hold(client: Any, tenant: str, campaign: str) -> Hold | None:
    return parse_hold(client.get(campaign_hold_key(tenant, campaign)), campaign)


def holds_for(client: Any, tenant: str, campaign: str) -> list[Hold]:
    """Every hold that stops this campaign's dialing, in one round trip."""
    raws = client.mget([operator_key(tenant), budget_key(tenant), campaign_hold_key(tenant, campaign)])
    return [h for h in (parse_hold(raws[0]), parse_hold(raws[1]), parse_hold(raws[2], campaign)) if h is not None]
