"""How far a campaign has got through its contacts, for the console's campaign list (one row per campaign).

  done            left the queue after being dealt with: answered, opted out, out of attempts, not retried
  remaining       still to call: ready, waiting for a retry or an allowed time, in flight, and contacts of the
                  campaign in the record (its lists' members, its own) not in its window yet; a record that
                  cannot be read leaves those out and sets `members_unknown`
  never_callable  left the queue without a call possible: no valid number, a duplicate number, denied by the gate
                  for good (registry, opt-out, no consent...), refused by the PBX as invalid, erased on request

Which final reasons count as "never callable" is data (NEVER_CALLABLE; final reasons: docs/runtime.md).
Final reasons come from the queue's tally (counters kept when finals move to the record); a finished campaign's
progress (which cannot change any more) is kept in `t:{T}:campaign:{C}:progress` the first time it is read
(FINISHED statuses).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from dialer import livestats
from dialer.record.contacts import campaign_count
from dialer.record.current import contact_record
from dialer.record.store import RecordUnavailable
from dialer.runtime.queues import ContactQueue

NEVER_CALLABLE = ("no_valid_number", "duplicate_number", "gate_denied", "originate_invalid", "erased")
FINISHED = ("completed", "archived")


def progress_key(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:progress"


def summarise(counts: dict[str, int], reasons: Counter[str], list_members: int, known: int,
              dispositions: dict[str, float], denials: dict[str, float]) -> dict[str, Any]:
    """The progress figures from what Redis holds (pure)."""
    never = sum(n for reason, n in reasons.items() if reason in NEVER_CALLABLE)
    done = sum(reasons.values()) - never
    unloaded = max(0, list_members - known)  # list members the engine has not queued yet
    answered = int(dispositions.get("answered", 0))
    abandoned = int(dispositions.get("abandoned", 0))
    live = answered + abandoned  # people who picked up: with an agent, or abandoned
    top = sorted(denials.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "done": done,
        "remaining": counts["ready"] + counts["waiting"] + counts["inflight"] + unloaded,
        "never_callable": never,
        "final_reasons": dict(sorted(reasons.items())),
        "attempts": int(sum(dispositions.values())),
        "answered": answered,
        "abandoned": abandoned,
        "abandon_rate": abandoned / live if live else 0.0,
        "denials": int(sum(denials.values())),
        "top_denials": [{"reason": r, "count": int(n)} for r, n in top[:3]],
    }


def campaign_progress(client: Any, tenant: str, campaign: str, status: str, lists: list[str]) -> dict[str, Any]:
    """One campaign's progress (synchronous client with decode_responses=True)."""
    key = progress_key(tenant, campaign)
    if status in FINISHED:
        kept = client.get(key)
        if kept:
            return json.loads(kept)
    queue = ContactQueue(client, tenant, campaign)
    counts = queue.counts()
    reasons = Counter(queue.final_reasons())
    pipe = client.pipeline(transaction=False)
    pipe.hget(queue.keys["tally"], "taken")
    pipe.hgetall(livestats.dispositions_key(tenant, campaign))
    pipe.hgetall(livestats.denials_key(tenant, campaign))
    raw = pipe.execute()
    known = int(raw[0] or 0)
    try:  # the campaign's contacts are in the record (docs/record.md): its lists' members and its own contacts
        members = campaign_count(contact_record(), tenant, campaign, lists)
        unknown = False
    except RecordUnavailable:  # the console still shows what Redis knows, and says the rest is unknown
        members, unknown = known, True
    figures = summarise(counts, reasons, members, known, _numbers(raw[-2]), _numbers(raw[-1]))
    if unknown:
        figures["members_unknown"] = True
        return figures  # never kept: the record's count is missing
    if status in FINISHED:
        client.set(key, json.dumps(figures, sort_keys=True))
    return figures


def _numbers(raw: dict[Any, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in raw.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            continue
    return out
