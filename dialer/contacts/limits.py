"""How much one import may write to the shared Redis, and when an import is hopeless.

Redis is shared by the gate, the engine and every tenant: a file of two million bad rows must not
become two million error entries. An import keeps the first ERRORS_KEPT entries of its error report
(row errors and duplicates together) and counts the others by reason code; its summary and the CSV
report say how many were not listed. An import whose share of rejected rows is above `max_bad_share`
once EARLY_STOP_ROWS rows have been read is stopped (`too_many_bad_rows`, nothing imported): such a
file is the wrong file, the wrong region or the wrong mapping, and reading it to its end would only
spend the workers' time. The numbers are data, so an operator changes them here or by setting.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

ERRORS_KEPT = 10_000  # entries of an import's error report kept in Redis
EARLY_STOP_ROWS = 10_000  # rows read before the bad share is judged
DEFAULT_MAX_BAD_SHARE = 0.5  # setting imports.max_bad_share


@dataclass(frozen=True)
class BadShare:
    """The running count of rows read and rejected across every chunk of an import."""

    read: int
    rejected: int

    def hopeless(self, max_share: float, min_rows: int = EARLY_STOP_ROWS) -> bool:
        return self.read >= min_rows and self.rejected > max_share * self.read


def hopeless_message(share: BadShare, max_share: float, by_reason: Counter[str], examples: list[str]) -> str:
    """One paragraph for people: how far the import went, why it stopped, and what the bad rows look like."""
    reasons = ", ".join(f"{reason}: {count}" for reason, count in by_reason.most_common(5))
    text = (f"stopped after {share.read} rows: {share.rejected} were rejected ({share.rejected / share.read:.0%}, "
            f"above the limit of {max_share:.0%}); nothing was imported. Rejected rows by reason: {reasons}.")
    if examples:
        text += " For example: " + "; ".join(examples[:3]) + "."
    return text + " Check the file, its region and its column mapping."


def split_kept(entries: list[tuple[str, str]], listed_before: int, cap: int = ERRORS_KEPT
               ) -> tuple[list[str], Counter[str]]:
    """(entries to store, counts by reason of the ones not stored) given how many were listed before."""
    room = max(0, cap - listed_before)
    kept = [doc for _, doc in entries[:room]]
    return kept, Counter(reason for reason, _ in entries[room:])
