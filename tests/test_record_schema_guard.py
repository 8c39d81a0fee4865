"""The embedded SQLite record is the owner's file alone (0600), and a record that a newer dialer migrated is refused
in one line naming what to do, not with Alembic's traceback (seen when two versions shared a data directory)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dialer.record.store import Record, RecordTooNew
from dialer.record.url import parse_record_url

ROOT = Path(__file__).resolve().parents[1]


def test_the_sqlite_record_is_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "record.db"
    with Record(parse_record_url(f"sqlite:///{path}", str(tmp_path))) as record:
        record.migrate()
        record.query("SELECT 1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for extra in tmp_path.glob("record.db-*"):  # SQLite gives its -wal and -shm files the database's mode
        assert stat.S_IMODE(os.stat(extra).st_mode) == 0o600, extra


def test_a_record_migrated_by_a_newer_dialer_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "record.db"
    with Record(parse_record_url(f"sqlite:///{path}", str(tmp_path))) as record:
        record.migrate()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    with Record(parse_record_url(f"sqlite:///{path}", str(tmp_path))) as record, \
            pytest.raises(RecordTooNew, match=r"revision this dialer does not know.*0999.*newer dialer"):
        record.migrate()
    done = subprocess.run([sys.executable, "-m", "dialer", "record", "migrate"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), "DIALER_CONFIG": "",
                                                      "DIALER_RECORD_URL": f"sqlite:///{path}"})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "newer dialer" in done.stderr
