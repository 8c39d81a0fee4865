"""One campaign's runtime figures for the gateway, the demo and reports: queue, final reasons, abandons."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from dialer.pacing import RedisAbandonCounter
from dialer.runtime.queues import ContactQueue


def campaign_summary(client: Any, tenant: str, campaign: str, at: datetime) -> dict[str, Any]:
    """{queue: ready/waiting/due/inflight/final, final_reasons: {reason: n}, attempts: calls placed,
    abandons: answers/abandons/rates over 24 h and 30 days}. Reads only; `at` is the campaign clock's now."""
    queue = ContactQueue(client, tenant, campaign)
    finals = queue.final_states()
    reasons = Counter(f["reason"] for f in finals.values())
    attempts = sum(int(v) for v in client.hvals(queue.keys["attempts"]))
    return {
        "queue": queue.counts(at.timestamp()),
        "final_reasons": dict(sorted(reasons.items())),
        "attempts": attempts,
        "abandons": RedisAbandonCounter(client, tenant).stats(campaign, at.timestamp()).as_dict(),
    }
