"""The call record of one attempt, as the engine hands it to the gate's outcome entry (pure).

It rides in the `call_outcome` audit entry (payload key `call`), written as today, so the archiver
(dialer/record/archiver.py) turns it into a call_records row: no personal data here (the entry carries the
person's keyed reference and the masked number already).
"""

from __future__ import annotations

from typing import Any


def call_figures(outcome: Any, *, campaign: str, contact_id: str, sent_wall: float, ai: bool, server: str,
                 queue: str | None, wrapup_seconds: float) -> dict[str, Any]:
    """Ring, talk and wrap-up seconds, hangup cause and who took the call. `outcome` is a dialer.ami.calls.Outcome
    (wall-clock instants); `sent_wall` when the Originate was sent."""
    answered = outcome.answered_at
    ended = outcome.ended_at
    ring = max(0.0, (answered if answered is not None else ended) - sent_wall)
    talk = max(0.0, ended - answered) if answered is not None else 0.0
    connected = outcome.connected_at is not None
    disposition = str(outcome.disposition)
    if ai:
        endpoint = f"ai:{server}"
    elif connected and queue:
        endpoint = f"queue:{queue}"
    else:
        endpoint = None
    return {
        "campaign": campaign, "contact_id": contact_id, "ring_s": round(ring, 3), "talk_s": round(talk, 3),
        "wrapup_s": round(wrapup_seconds, 3) if connected and not ai else 0.0,
        "cause": outcome.cause, "endpoint": endpoint, "server": server,
        "live": answered is not None and disposition in ("answered", "abandoned", "opted_out"),
        "abandoned": bool(outcome.abandoned), "disposition": disposition,
    }
