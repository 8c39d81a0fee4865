"""A campaign's live figures: the dashboard's gauges and pacing reason (written to Redis each stats_seconds,
dialer/livestats.py), the progress line an operator tailing the log reads once a minute, and the summary of why
every contact left when a campaign completes (`final_summary`).

Plain composition: the engine hands `LiveFigures` what it reads (its calls in flight, the AMI pool's trackers, the
agent board, the shared pacer, the abandon counters); nothing here decides a call.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import redis

from dialer.ami.calls import CallTracker
from dialer.livestats import queue_gauges, queue_pacing
from dialer.pacing import DEFAULT_ABANDON_CAP, PolicyError, RedisAbandonCounter, control_abandon_rate, window_for
from dialer.pacing.legal import SETTLE_SECONDS, LegalGroup, legal_key, member_share
from dialer.runtime.agents import AgentBoard
from dialer.runtime.policy import pacing_policy
from dialer.runtime.runner import CampaignRunner, Flight
from dialer.runtime.shared import SharedPacer

# The engine's logger: these lines were the engine's before the split, and operators and tests filter on its name.
log = logging.getLogger("dialer.runtime.engine")

PROGRESS_EVERY = 60.0  # seconds between a campaign's progress lines in the log (only when something changed)


class LiveFigures:
    def __init__(self, client: redis.Redis, trackers: dict[str, CallTracker], board: AgentBoard, shared: SharedPacer,
                 flights: dict[str, Flight], abandon_counter: Callable[[str], RedisAbandonCounter]) -> None:
        self.redis = client
        # tenant -> its legal campaigns (dialer/pacing/legal.py), as the engine's last campaign listing found them
        self.legal: dict[str, dict[str, LegalGroup]] = {}
        self.trackers = trackers  # the AMI pool's, per server name
        self.board = board
        self.shared = shared
        self.flights = flights  # the engine's own dict: read, never written
        self.abandon_counter = abandon_counter

    def log_progress(self, r: CampaignRunner, counts: dict[str, int], gauges: dict[str, float]) -> None:
        """One line per campaign per minute while something changes: what an operator tailing the log needs to see
        that a campaign is moving (or why it is not: gate denials by reason)."""
        wall = time.time()
        if r.progress_at == 0.0:
            r.progress_at = wall  # the first line after a minute of work, not at start
            return
        if wall - r.progress_at < PROGRESS_EVERY:
            return
        seen = (counts["ready"], counts["waiting"], counts["inflight"], counts["final"])
        if seen == r.progress_seen and not r.placed and not r.denied:
            return
        denied = ", ".join(f"{code} {n}" for code, n in r.denied.most_common())
        log.info("campaign %s/%s: %d calls placed in %.0f s, %d in flight, %d connected; queue ready %d, waiting %d, "
                 "final %d; agents free %d busy %d%s", r.tenant, r.campaign, r.placed, wall - r.progress_at,
                 counts["inflight"], gauges.get("connected", 0), counts["ready"], counts["waiting"], counts["final"],
                 gauges.get("agents_free", 0), gauges.get("agents_busy", 0),
                 f"; gate denials {denied}" if denied else "")
        r.progress_at, r.progress_seen, r.placed = wall, seen, 0
        r.denied.clear()

    def live_gauges(self, r: CampaignRunner) -> dict[str, float]:
        """The in-memory gauges of one campaign (on the loop: flights and trackers change there)."""
        mine = [f for f in self.flights.values() if f.tenant == r.tenant and f.campaign == r.campaign]
        connected = sum(1 for f in mine if f.connected)
        ringing = 0
        for f in mine:
            tracker = self.trackers.get(f.server)
            attempt = tracker.get(f.claim.call_id) if tracker is not None else None
            if attempt is not None and attempt.answered_at is None:
                ringing += 1
        wall = time.time()
        r.minute = [t for t in r.minute if wall - t < 60]
        view = self.board.view(str(r.stored.config.get("queue") or ""), time.monotonic())
        shared = self.shared.gauges(f"{r.tenant}/{r.campaign}", r.stored.config, time.monotonic(), None)
        return {"dialing": len(mine) - connected, "ringing": ringing, "connected": connected,
                "agents_free": view.free, "agents_busy": len(view.busy_elapsed), "calls_per_minute": len(r.minute),
                **shared}

    def write_stats(self, r: CampaignRunner, now: datetime, gauges: dict[str, float]) -> dict[str, int]:
        counts = r.queue.counts(now.timestamp())
        counter = self.abandon_counter(r.tenant)
        stats = counter.stats(r.campaign, now.timestamp())
        # Every window the countries this campaign dials need (US: 30 days; GB and others: 24 h); pacing backs off
        # on the one whose rate is nearest the cap, so a day's spike cannot hide in a month of a mixed campaign.
        windows = sorted({window_for(c) for c in list(r.countries)} or {window_for("")})
        try:
            cap = pacing_policy(r.stored.config).abandon_cap  # a malformed legal_campaign too: not dialed
            key = legal_key(r.stored.config)
        except PolicyError:
            cap, key = DEFAULT_ABANDON_CAP, ""
        group = self.legal.get(r.tenant, {}).get(key) if key else None
        legal: dict[str, float] = {}
        if group is None:
            pairs = [counter.totals(r.campaign, now.timestamp(), w) for w in windows]
            r.abandon_totals = max(pairs, key=lambda p: control_abandon_rate(p[1], p[0], cap))
            # a key the last campaign listing did not know yet: the members are unknown, so it waits (legal-join)
            r.legal_label, r.legal_joining = "legal window", key
        else:
            # One window for every member (the sum of their buckets), and this campaign paces on its part of the
            # room (dialer/pacing/legal.py): lawful whichever members stop, whatever process paces each.
            members = sorted({*group.members, r.campaign})
            pairs = [counter.totals_of(members, now.timestamp(), w) for w in windows]
            whole = max(pairs, key=lambda p: control_abandon_rate(p[1], p[0], cap))
            r.abandon_totals = member_share(whole, max(1, group.dialing))
            r.legal_label = f"legal campaign {key}'s window (this campaign's part of its room)"
            r.legal_joining = key if time.time() - _epoch(r.stored.updated_at) < SETTLE_SECONDS else ""
            both = counter.stats_of(members, now.timestamp())
            legal = {"legal_members": float(len(members)), "legal_abandon_rate_24h": both.rate_24h or 0.0,
                     "legal_abandon_rate_30d": both.rate_30d or 0.0}
        values = {**gauges, "queue_depth": counts["ready"] + counts["due"],
                  "abandon_rate_24h": stats.rate_24h or 0.0, "abandon_rate_30d": stats.rate_30d or 0.0, **legal}
        pipe = self.redis.pipeline(transaction=False)
        key = f"{r.tenant}/{r.campaign}"
        reason, why = self.shared.reason(key)
        if r.hold_text:  # a kill-switch (dialer/holds.py): the dashboard says who held it and why
            reason, why = "held", r.hold_text
        elif r.queue_verdict is not None and r.queue_verdict.code:  # not dialed: no such queue (pbx_queues.py)
            reason, why = r.queue_verdict.code, r.queue_verdict.text
        # Campaigns not on shared agents (agentless): the reason of their own last decision.
        queue_pacing(pipe, r.tenant, r.campaign, reason or r.last_reason or "", why, self.shared.limited_by(key))
        queue_gauges(pipe, r.tenant, r.campaign, values, now)
        pipe.execute()
        return counts


def _epoch(stamp: str) -> float:
    """A campaign's updated_at (ISO) as UNIX time; unreadable: now (the member settles again: the safe side)."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return time.time()


def final_summary(tally: dict[str, int]) -> str:
    """'13 contacts final: answered 8, max_attempts 3, gate_denied NATIONAL_REGISTRY 1, opted_out 1' (gate denials by
    their reason codes: the first thing an operator asks about a campaign that ended early), from the queue's
    tally (dialer/runtime/queues.py: r:<reason> and d:<code> counters)."""
    reasons: Counter[str] = Counter()
    for key, n in tally.items():
        if key.startswith("r:") and key != "r:gate_denied" and n:
            reasons[key[2:]] += n
        elif key.startswith("d:") and n:
            reasons[f"gate_denied {key[2:] or '?'}"] += n
    parts = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{sum(reasons.values())} contacts final" + (f": {parts}" if parts else "")
