"""What the engine keeps about each call it waits on (`Flight`) and each campaign it holds (`CampaignRunner`).

Plain data shared by the engine (dialer/runtime/engine.py) and the parts split out of it (leases.py, outcomes.py,
agent_feed.py, figures.py): they live here so those modules need not import the engine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dialer.campaigns import StoredCampaign
from dialer.pacing import CampaignEstimators
from dialer.runtime.pbx_queues import QueueVerdict
from dialer.runtime.queues import Claim, ContactQueue

ACTOR = "engine"  # who the engine is in audit entries and campaign control history

@dataclass
class Flight:
    """A call this process placed (or took over) and waits on."""

    claim: Claim
    tenant: str
    campaign: str
    server: str
    sent_wall: float
    connected: bool = False
    # the contact's jurisdiction codes from the gate's decision ("US", "US-CA" ...): the recording notice
    # depends on them; empty (unknown, e.g. a call taken over) fails closed to playing the notice
    jurisdictions: tuple[str, ...] = ()
    ai: bool = False  # an agentless call: it holds one of its server's AI sessions until its outcome
    taken_over: bool = False  # placed by a process that died: its outcome is read back from AstDB


@dataclass
class CampaignRunner:
    """What this process keeps about one campaign it holds."""

    tenant: str
    campaign: str
    queue: ContactQueue
    estimators: CampaignEstimators
    stored: StoredCampaign
    claims: dict[str, Claim] = field(default_factory=dict)  # contact id -> held claim (claimed, not settled)
    loaded_at: float = -1e18
    window_at: float = -1e18
    recovered_at: float = -1e18
    stats_at: float = -1e18
    saved_at: float = -1e18
    last_reason: str = ""
    minute: list[float] = field(default_factory=list)  # wall times of this minute's originates (calls per minute)
    countries: set[str] = field(default_factory=set)  # countries of the numbers dialed (abandon windows)
    abandon_totals: tuple[int, int] = (0, 0)  # live answers, abandons over the campaign's window
    # a member of a legal campaign (dialer/pacing/legal.py): abandon_totals is its share of that campaign's window
    legal_label: str = "legal window"  # the window named in the dashboard's pacing_why
    legal_joining: str = ""  # the legal campaign it joined moments ago (places only calls with an agent reserved)
    prefixes: set[str] = field(default_factory=set)
    denied: Counter[str] = field(default_factory=Counter)  # gate denials by reason code since the last progress line
    placed: int = 0  # calls placed since the last progress line
    progress_at: float = 0.0  # wall time of the last progress line (0: none yet)
    progress_seen: tuple[int, ...] = ()  # the queue counts at that line
    held: bool = False
    completed: bool = False
    hold_text: str = ""  # why a kill-switch holds the campaign's dialing (dialer/holds.py); "" when none
    unconfirmed: str = ""  # why the last batch's reservations were not confirmed on the Redis replicas (replicas.py)
    unconfirmed_at: float = 0.0  # wall time that was logged
    queue_verdict: QueueVerdict | None = None  # the last verdict on its Asterisk queue (dialer/runtime/pbx_queues.py)
    queue_refusal: str = ""  # the refusal code said (logged, audited) and not yet lifted
