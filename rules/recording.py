"""Where a recorded call must be announced: the jurisdiction half of the dialplan's recording notice.

The table is data (rules/data/recording_notice.toml) a lawyer can change; this module only reads it. A campaign
plays the notice when it records AND the contact's jurisdictions require it (`notice_required`). Unknown
jurisdictions fail closed: the notice is played.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("data") / "recording_notice.toml"


class RecordingTableError(ValueError):
    """The recording-notice table is malformed (names the entry)."""


def load_table(path: str | Path = TABLE) -> dict[str, dict[str, Any]]:
    """Jurisdiction code -> {source, unconfirmed}; every entry must name its legal source."""
    with Path(path).open("rb") as fh:
        doc = tomllib.load(fh)
    table: dict[str, dict[str, Any]] = {}
    for code, entry in doc.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("source"), str) or not entry["source"].strip():
            raise RecordingTableError(f"{path}: [{code}]: expected a table with a non-empty source")
        unknown = set(entry) - {"source", "unconfirmed", "note"}
        if unknown:
            raise RecordingTableError(f"{path}: [{code}].{sorted(unknown)[0]}: unknown field")
        if code != code.upper() or not code.replace("-", "").isalnum():
            raise RecordingTableError(f"{path}: [{code}]: expected a jurisdiction code such as US-CA or GB")
        table[code] = dict(entry)
    return table


@lru_cache(maxsize=1)
def _codes() -> frozenset[str]:
    return frozenset(load_table())


def notice_required(jurisdictions: Iterable[str], table: Iterable[str] | None = None) -> bool:
    """Must a recorded call to a contact in these jurisdictions ("US", "US-CA", ...) be announced?
    True when any of them (or its country) is listed, when none is known, and for "US-*" (state unknown) when any
    state is listed (fail closed)."""
    codes = frozenset(table) if table is not None else _codes()
    known = [j for j in jurisdictions if j]
    if not known:
        return True
    for j in known:
        if j in codes or j.split("-", 1)[0] in codes:
            return True
        # "US-*": a number whose state nobody can tell may be in any state, an all-party one included
        # (California Penal Code 632.7): the notice is played when any subdivision of the country is listed
        if j.endswith("-*") and any(c.startswith(j[:-1]) for c in codes):
            return True
    return False


def recording_notice(campaign_records: bool, jurisdictions: Iterable[str]) -> bool:
    """The DIALER_RECORDING_NOTICE flag of one call: the campaign records and the jurisdiction requires it."""
    return bool(campaign_records) and notice_required(jurisdictions)
