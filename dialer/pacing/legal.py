"""Legal campaigns: dialer campaigns the client declares to be one calling campaign in law, sharing one abandon window.

The abandon cap is measured per campaign (US TSR: 3% of calls answered by a person per campaign, over 30 days or the
campaign's life; UK: 3% of live calls per campaign per 24 h). What is one "campaign" in law is not what is one
campaign in the dialer: one seller's one offer is often split over several dialer campaigns (one per list, per
team, per week). When the client declares them one (`legal_campaign`: the same key on each; whether they are one in
law is for the client's counsel to say, docs/pacing.md "Legal campaigns"), their live answers and abandons are one
window, so a new list for an existing offer starts with the offer's room under the cap instead of the `cap-room`
hold of a brand-new window (about an hour of progressive for a small team: BENCHMARKS.md).

Two rules keep the shared window lawful whenever any member stops:

* **the window is the members' sum.** Every live answer is counted once, atomically, in its own dialer campaign's
  buckets (abandons.py); the legal campaign's window is the sum of its members' buckets, finished members included
  (their calls are still in the window). So a campaign that changes its key takes its calls with it.
* **the room is split.** The room under the cap (how many more abandons the window can take) is divided evenly
  between the members that may still dial (every status but completed and archived, drafts included, so a draft
  that starts takes nothing the others counted on). Each member paces on its part (`member_share`): a pair
  (answers, abandons) with the legal campaign's rate (rounded up) and 1/members of its room (rounded down), so the
  rules that keep one campaign under its cap (cap-reached, cap-room, the room bound on calls in flight) keep the sum
  of the members' overflows within the legal campaign's room, whatever process paces each. A member that joined
  (its configuration changed) less than SETTLE_SECONDS ago places only calls with an agent reserved, so every
  process has counted it before it uses its part.

Pure: campaigns and counts in, shares out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dialer.pacing.model import PolicyError

__all__ = ["DIALING", "LEGAL_JOIN", "SETTLE_SECONDS", "LegalGroup", "legal_groups", "legal_key", "member_share"]

# Statuses of a member that may still place calls: each takes a part of the room.
DIALING = ("draft", "scheduled", "running", "paused", "stopping")
# How long a member that just joined (or whose configuration just changed) waits before using its part of the room:
# well over the engine's campaign refresh (runtime.campaigns_seconds, 0.5 s) and its stats refresh (1 s), so every
# process counts it among the members first.
SETTLE_SECONDS = 10.0
LEGAL_JOIN = "legal-join"
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def legal_key(config: Mapping[str, Any]) -> str:
    """The campaign's `legal_campaign` key ('' when it is its own legal campaign). PolicyError when malformed."""
    value = config.get("legal_campaign")
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _KEY.match(value):
        raise PolicyError(f"legal_campaign: 1-64 letters, digits, '_' or '-', got {value!r}")
    return value


@dataclass(frozen=True)
class LegalGroup:
    """One legal campaign of a tenant: every member (any status: their calls stay in the window) and how many may
    still dial (the room is split between them)."""

    key: str
    members: tuple[str, ...]
    dialing: int


def legal_groups(campaigns: Iterable[tuple[str, str, Mapping[str, Any]]]) -> dict[str, LegalGroup]:
    """`campaigns`: (id, status, config) of one tenant's campaigns. A malformed key makes no group (the campaign's
    own pacing refuses it: policy error)."""
    members: dict[str, list[str]] = {}
    dialing: dict[str, int] = {}
    for ident, status, config in campaigns:
        try:
            key = legal_key(config)
        except PolicyError:
            continue
        if key:
            members.setdefault(key, []).append(ident)
            dialing[key] = dialing.get(key, 0) + (status in DIALING)
    return {k: LegalGroup(k, tuple(sorted(v)), dialing[k]) for k, v in members.items()}


def member_share(legal: tuple[int, int], members: int) -> tuple[int, int]:
    """The (live answers, abandons) one of `members` dialing members paces on, given the legal campaign's window
    `legal` (answers, abandons): the same rate or above (abandons rounded up, answers down), and at most 1/members of
    the room under any cap (cap x answers - abandons), so the members' rooms add up to at most the window's. One
    member: the window itself."""
    answers, abandons = legal
    if members <= 1:
        return answers, abandons
    # cap x floor(N/M) - ceil(A/M) <= (cap x N - A) / M: the parts of the room add up to at most the room
    return answers // members, math.ceil(abandons / members)
