"""One campaign's runtime figures for the gateway, the demo and reports: queue, final reasons, abandons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dialer.livestats import stats_key
from dialer.pacing import RedisAbandonCounter
from dialer.runtime.queues import ContactQueue


def campaign_summary(client: Any, tenant: str, campaign: str, at: datetime) -> dict[str, Any]:
    """{queue: ready/waiting/due/inflight/final, final_reasons: {reason: n}, attempts: calls placed,
    abandons: answers/abandons/rates over 24 h and 30 days, refused: why the engine does not dial it, or None}.
    Reads only; `at` is the campaign clock's now."""
    queue = ContactQueue(client, tenant, campaign)
    tally = queue.tally()
    reasons = {k[2:]: n for k, n in tally.items() if k.startswith("r:") and n}
    attempts = tally.get("attempts", 0)
    code, text, since = client.hmget(stats_key(tenant, campaign), "refused_code", "refused_text", "refused_since")
    return {
        "queue": queue.counts(at.timestamp()),
        "final_reasons": dict(sorted(reasons.items())),
        "attempts": attempts,
        "abandons": RedisAbandonCounter(client, tenant).stats(campaign, at.timestamp()).as_dict(),
        # why the engine places no call for it (e.g. QUEUE_MISSING: dialer/runtime/pbx_queues.py), None when it may
        "refused": {"code": _s(code), "text": _s(text), "since": _s(since)} if code else None,
    }


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
