"""The record this process keeps contacts in (issue 18): set once from the settings, opened on first use.

Contacts live in the record, not in Redis: the import's commit writes them there, and exports, scrub, subject
requests, offboarding, member counts and the engine's windows read them there. Those callers run deep inside RQ
jobs, the gateway and the CLI, so, like the RQ queues' Redis (dialer.jobs.configure) and the secret key
(dialer.suppression.configure), the record is a per-process setting: `dialer.cli.main` and `gateway.app.make_app`
call `configure(config)`; `use(record)` sets an open one (tests, `dialer demo`).

The first use migrates the schema (idempotent; an embedded SQLite file is created then), so a single machine
needs nothing installed. A record that cannot be reached raises RecordUnavailable (API: 503; CLI: one line).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dialer.record.store import Record, RecordUnavailable

_lock = threading.Lock()
_config: Any = None
_factory: Callable[[], Record] | None = None
_record: Record | None = None
_owned = False  # opened here (closed here when replaced), not given by use()
_migrated = False


def _set(config: Any, factory: Callable[[], Record] | None, record: Record | None, migrated: bool) -> None:
    global _config, _factory, _record, _owned, _migrated
    with _lock:
        if _record is not None and _owned:
            _record.close()
        _config, _factory, _record, _migrated = config, factory, record, migrated
        _owned = record is None


def configure(config: Any) -> None:
    """Use the record named by these settings (`record.url`, default SQLite in the data directory)."""
    _set(config, None, None, False)


def use_lazy(factory: Callable[[], Record]) -> None:
    """Open the record with `factory` on first use (tests: an embedded file made only when a test needs it)."""
    _set(None, factory, None, False)


def use(record: Record | None, *, migrated: bool = True) -> None:
    """Use this open record (not closed here: its owner closes it); None forgets it."""
    _set(None, None, record, migrated)


def contact_record() -> Record:
    """The process's record, migrated. Raises RecordUnavailable when none is set or it cannot be reached."""
    global _config, _record, _owned, _migrated
    with _lock:
        if _record is None:
            if _factory is not None:
                _record = _factory()
            elif _config is not None:
                _record = Record.from_config(_config)
            else:  # a process that never read its settings (an RQ worker started by hand): read them now
                from dialer.config import ConfigError, load_config

                try:
                    _config = load_config(None)
                except ConfigError as exc:
                    raise RecordUnavailable(f"the record's settings cannot be read: {exc}") from None
                _record = Record.from_config(_config)
                _owned = True
        record = _record
        if not _migrated:
            record.migrate()
            _migrated = True
        return record


def configured() -> bool:
    return _record is not None or _config is not None or _factory is not None
