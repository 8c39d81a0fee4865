"""When to try a failed delivery again: exponential backoff with full jitter, for at least a day. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 5.0  # seconds before the 2nd attempt (before jitter)
    max_delay: float = 3600.0  # the wait never grows past an hour
    retry_for: float = 26 * 3600.0  # give up (dead letter) once the first attempt is this old: > 24 h
    timeout: float = 10.0  # seconds for one attempt: connect, send and read the answer

    def delay(self, attempts: int, jitter: float) -> float:
        """Wait after the `attempts`-th failed attempt; `jitter` in [0, 1) (random, passed in)."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** max(0, attempts - 1))
        return ceiling / 2 + ceiling / 2 * jitter  # half fixed, half random: spread out, never zero

    def gives_up(self, first_attempt_at: float, now: float) -> bool:
        return now - first_attempt_at >= self.retry_for
