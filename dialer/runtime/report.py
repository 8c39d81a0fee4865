"""One campaign's runtime figures for the gateway, the demo and reports: queue, final reasons, abandons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dialer.campaigns import CampaignStore
from dialer.livestats import stats_key
from dialer.pacing import PolicyError, RedisAbandonCounter
from dialer.pacing.legal import legal_groups, legal_key
from dialer.runtime.queues import ContactQueue


def campaign_summary(client: Any, tenant: str, campaign: str, at: datetime) -> dict[str, Any]:
    """{queue: ready/waiting/due/inflight/final, final_reasons: {reason: n}, attempts: calls placed,
    abandons: answers/abandons/rates over 24 h and 30 days, refused: why the engine does not dial it, or None;
    legal_campaign: its legal campaign's members and their window together, only for a member of one}.
    Reads only; `at` is the campaign clock's now."""
    queue = ContactQueue(client, tenant, campaign)
    tally = queue.tally()
    reasons = {k[2:]: n for k, n in tally.items() if k.startswith("r:") and n}
    attempts = tally.get("attempts", 0)
    code, text, since = client.hmget(stats_key(tenant, campaign), "refused_code", "refused_text", "refused_since")
    return {
        **_legal(client, tenant, campaign, at),
        "queue": queue.counts(at.timestamp()),
        "final_reasons": dict(sorted(reasons.items())),
        "attempts": attempts,
        "abandons": RedisAbandonCounter(client, tenant).stats(campaign, at.timestamp()).as_dict(),
        # why the engine places no call for it (e.g. QUEUE_MISSING: dialer/runtime/pbx_queues.py), None when it may
        "refused": {"code": _s(code), "text": _s(text), "since": _s(since)} if code else None,
    }


def _legal(client: Any, tenant: str, campaign: str, at: datetime) -> dict[str, Any]:
    """A member of a legal campaign (dialer/pacing/legal.py): `legal_campaign` {key, members, abandons over the
    members' window together: what the cap applies to}. Nothing for a campaign that is its own."""
    stored = CampaignStore(client).get(tenant, campaign)
    try:
        key = legal_key(stored.config) if stored is not None else ""
    except PolicyError:
        key = ""
    if not key:
        return {}
    group = legal_groups((c.id, c.status, c.config) for c in CampaignStore(client).list(tenant))[key]
    return {"legal_campaign": {"key": key, "members": list(group.members), "dialing": group.dialing,
                               "abandons": RedisAbandonCounter(client, tenant).stats_of(
                                   group.members, at.timestamp()).as_dict()}}


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
