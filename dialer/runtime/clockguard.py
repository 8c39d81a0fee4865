"""Whether this machine's clock can be trusted for the law: its offset to Redis's clock, measured at each heartbeat.

Legal calling hours, holidays and cool-offs are decided at an instant. A dialing machine whose clock is 3 hours
fast would call people at 07:00 believing it is 10:00. Every dialer process and the gateway share one Redis, so
its clock (`TIME`) is the reference: the engine decides on its own clock plus the measured offset (Redis's time),
warns when the offset passes `runtime.clock_skew_warn_ms` (250 ms: NTP keeps a healthy machine within a few ms)
and stops dialing beyond `runtime.clock_skew_stop_ms` (2 s): a machine that far off has a broken time service,
and the offset we correct by may itself be wrong. Dialing resumes by itself once the clocks agree again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

OK, WARN, STOP = "ok", "warn", "stop"


@dataclass(frozen=True)
class SkewLimits:
    warn_seconds: float = 0.25
    stop_seconds: float = 2.0


def assess(skew: float, round_trip: float, limits: SkewLimits) -> str:
    """ok, warn or stop for an offset measured with this round trip (the offset is known to +-round_trip/2: only
    what is certainly beyond a limit counts)."""
    certain = abs(skew) - max(0.0, round_trip) / 2
    if certain > limits.stop_seconds:
        return STOP
    if certain > limits.warn_seconds:
        return WARN
    return OK


def describe(skew: float) -> str:
    # skew is Redis's clock minus ours: negative when this machine runs ahead. Large offsets in h/min/s: digit runs
    # of 7 or more would be masked as phone numbers in the log (dialer/logs.py).
    direction = "ahead of" if skew < 0 else "behind"
    seconds = abs(skew)
    if seconds < 60:
        amount = f"{seconds:.3f} s"
    else:
        hours, rest = divmod(round(seconds), 3600)
        minutes, secs = divmod(rest, 60)
        amount = " ".join(f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min"), (secs, "s")) if n)
    return f"this machine's clock is {amount} {direction} Redis's clock"


class ClockGuard:
    """The last assessment, logged once per change of level (one line, not one per heartbeat)."""

    def __init__(self, limits: SkewLimits) -> None:
        self.limits = limits
        self.level = OK
        self.skew = 0.0

    @property
    def stopped(self) -> str | None:
        """Why dialing is stopped by the clock (None: it is not)."""
        if self.level != STOP:
            return None
        return f"{describe(self.skew)} (limit {self.limits.stop_seconds:g} s)"

    def observe(self, skew: float, round_trip: float) -> str:
        level = assess(skew, round_trip, self.limits)
        previous, self.level, self.skew = self.level, level, skew
        if level == previous:
            return level
        if level == STOP:
            log.critical("DIALING STOPPED: %s (limit %g s, runtime.clock_skew_stop_ms): legal calling hours cannot "
                         "be trusted; fix the machine's time service (NTP). Dialing resumes when the clocks agree",
                         describe(skew), self.limits.stop_seconds)
        elif level == WARN:
            log.warning("%s (warning above %g s, runtime.clock_skew_warn_ms); decisions use Redis's clock%s",
                        describe(skew), self.limits.warn_seconds,
                        "; dialing resumes" if previous == STOP else "")
        elif previous == STOP:
            log.warning("%s: back within the limits, dialing resumes", describe(skew))
        else:
            log.info("%s: back within %g s", describe(skew), self.limits.warn_seconds)
        return level
