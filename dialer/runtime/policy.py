"""What happens to a contact after a call or a gate denial, and when a campaign's own schedule is open.

Pure: every function takes the instant it decides at. The values come from the campaign configuration
(dialer/campaigns.py: max_attempts, retry_rules in minutes per disposition, schedule_windows, pacing_mode ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dialer.pacing import PacingPolicy
from dialer.pacing.legal import legal_key
from rules.model import Decision

# Dispositions (dialer/ami/dispositions.py) -> the attempt outcomes the gate's history knows (rules.model.OUTCOMES).
GATE_OUTCOME = {
    "answered": "answered", "no_answer": "no_answer", "busy": "busy", "congestion": "congestion", "failed": "failed",
    "machine": "machine", "abandoned": "abandoned", "opted_out": "opted_out", "unknown": "unknown",
}
FINAL_DISPOSITIONS = ("answered", "opted_out")  # the person was reached, or asked not to be called
# Gate denials that say nothing about the person: try again shortly (no attempt counted).
TRANSIENT_DENIALS = {"CONTENTION": 2.0, "STATE_UNAVAILABLE": 15.0, "DUPLICATE_CALL_ID": 1.0,
                     # the campaign's caller ID is unlawful there: the contacts wait (an hour) for a fixed caller ID
                     # rather than leave the campaign for a mistake in its configuration
                     "CALLER_ID_NOT_ALLOWED": 3600.0,
                     # kill-switch holds (dialer/holds.py): the contact waits, it does not leave the campaign
                     "TENANT_SUSPENDED": 60.0, "CAMPAIGN_SUSPENDED": 60.0, "BUDGET_EXHAUSTED": 300.0}
# A call whose outcome is unknown may have reached the person: not called again for as long as after an answered
# call (a day), never sooner (runtime.unknown_cooloff_minutes sets it; a campaign's retry_rules.unknown lengthens it).
UNKNOWN_COOLOFF = timedelta(hours=24)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Step:
    """retry (at `at`), or final (leave the queue) with a reason code."""

    action: str  # retry | final
    reason: str
    at: datetime | None = None
    count_attempt: bool = True
    detail: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """max_attempts per contact; delays per disposition (absent: not retried); unknown outcomes cool off."""

    max_attempts: int = 3
    delays: Mapping[str, timedelta] = field(default_factory=dict)
    unknown_cooloff: timedelta = UNKNOWN_COOLOFF

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, unknown_cooloff: timedelta = UNKNOWN_COOLOFF,
                    ) -> RetryPolicy:
        """`retry_rules.unknown` can only lengthen the runtime's unknown cool-off: a call whose outcome is unknown
        may have been answered, and an answered person is not called again within a day."""
        rules = config.get("retry_rules") or {}
        delays = {d: timedelta(minutes=int(m)) for d, m in rules.items()}
        return cls(int(config.get("max_attempts", 3)), delays, max(delays.get("unknown", unknown_cooloff),
                                                                    unknown_cooloff))

    def after_call(self, disposition: str, attempts_made: int, at: datetime) -> Step:
        """`attempts_made` includes the call that just ended."""
        if disposition in FINAL_DISPOSITIONS:
            return Step("final", disposition)
        if attempts_made >= self.max_attempts:
            return Step("final", "max_attempts", detail=f"last outcome {disposition}")
        if disposition == "unknown":  # the call may have reached the person: cool off, it counted
            return Step("retry", "unknown_cooloff", at + self.unknown_cooloff)
        delay = self.delays.get(disposition)
        if delay is None:
            return Step("final", "not_retried", detail=f"no retry rule for {disposition}")
        return Step("retry", f"retry_{disposition}", at + delay)


def after_denial(decision: Decision, at: datetime) -> Step:
    """A gate denial: wait for next_allowed_at, retry shortly when the state was unavailable, or leave for good."""
    codes = [r.code for r in decision.reasons]
    transient = [TRANSIENT_DENIALS[c] for c in codes if c in TRANSIENT_DENIALS]
    text = ",".join(codes) or "DENIED"
    if transient and len(transient) == len(codes):
        return Step("retry", f"gate:{text}", at + timedelta(seconds=max(transient)), count_attempt=False)
    if decision.next_allowed_at is not None:
        return Step("retry", f"gate:{text}", max(decision.next_allowed_at, at), count_attempt=False)
    return Step("final", "gate_denied", count_attempt=False, detail=text)


# --- the campaign's own schedule (on top of the legal windows the gate enforces) --------------------------

@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int


def windows_from_config(raw: Sequence[Mapping[str, Any]] | None) -> tuple[Window, ...]:
    def minutes(text: str) -> int:
        h, m = text.split(":")
        return int(h) * 60 + int(m)

    return tuple(Window(frozenset(DAYS.index(d) for d in w["days"]), minutes(w["start"]), minutes(w["end"]))
                 for w in raw or ())


def _open_in(windows: Sequence[Window], local: datetime) -> bool:
    minute = local.hour * 60 + local.minute
    return any(local.weekday() in w.days and w.start <= minute < w.end for w in windows)


def _next_open_in(windows: Sequence[Window], zone: ZoneInfo, at: datetime) -> datetime | None:
    local = at.astimezone(zone)
    if _open_in(windows, local):
        return at
    best: datetime | None = None
    for day in range(0, 8):
        date = (local + timedelta(days=day)).date()
        for w in windows:
            if date.weekday() not in w.days:
                continue
            start = datetime(date.year, date.month, date.day, w.start // 60, w.start % 60, tzinfo=zone)
            if start > at and (best is None or start < best):
                best = start
        if best is not None:
            return best
    return None


def schedule_opens_at(windows: Sequence[Window], zones: Sequence[str], at: datetime) -> datetime | None:
    """None when the campaign may call now in every candidate zone of the contact; else when it next may (a
    contact whose zone is unknown is judged in UTC). No windows: always open."""
    if not windows:
        return None
    tz = [ZoneInfo(z) for z in zones] or [ZoneInfo("UTC")]
    candidate = at
    for _ in range(10):  # the zones' windows must overlap: move to the latest next opening until they all agree
        if all(_open_in(windows, candidate.astimezone(z)) for z in tz):
            return None if candidate == at else candidate
        nexts = [_next_open_in(windows, z, candidate) for z in tz]
        if any(n is None for n in nexts):
            break
        later = max(n for n in nexts if n is not None)
        candidate = later if later > candidate else candidate + timedelta(minutes=1)
    return at + timedelta(days=1)  # no common window found: look again tomorrow rather than never


# --- pacing settings from the campaign --------------------------------------------------------------------

def pacing_policy(config: Mapping[str, Any]) -> PacingPolicy:
    """The campaign's pacing settings (PacingPolicy.from_campaign: pacing_mode, pacing_ratio, abandon_cap,
    agent_kind; AI-agent campaigns are agentless). `pacing`, a table of PacingPolicy fields, overrides them.
    Raises PolicyError (naming the field) for settings that cannot be paced, a malformed legal_campaign included
    (which window its abandons count in would be unknown)."""
    legal_key(config)
    if isinstance(config.get("pacing"), Mapping):
        return PacingPolicy.from_mapping(config["pacing"])
    return PacingPolicy.from_campaign(config)
