"""`dialer lists ...` and `dialer worker` against a real redis-server."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from dialer.cli import main
from dialer.contacts.store import import_status

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    return redis_url


def test_import_inline_then_errors_status_and_export(env: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "l.csv"
    path.write_text("téléphone;nom\n06 12 34 56 78;=cmd\n06 12 AB;x\n")
    assert main(["lists", "import", str(path), "--list", "leads", "--tenant", "acme", "--inline"]) == 0
    out = capsys.readouterr().out
    assert "rows read: 2, valid: 1, invalid: 1" in out and "invalid (phone_has_letters): 1" in out
    import_id = out.split("dialer lists errors ")[1].split()[0]
    report = tmp_path / "errors.csv"
    assert main(["lists", "errors", import_id, "--tenant", "acme", "-o", str(report)]) == 0
    rows = list(csv.DictReader(report.open()))
    assert [(r["row"], r["reason"]) for r in rows] == [("3", "phone_has_letters")]
    assert main(["lists", "status", import_id, "--tenant", "acme", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "committed"
    assert main(["lists", "export", "contacts", "--tenant", "acme", "--list", "leads"]) == 0
    exported = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert (exported[0]["phone"], exported[0]["last_name"]) == ("'+33612345678", "'=cmd")
    # The same file again: answered with the first import, nothing duplicated.
    assert main(["lists", "import", str(path), "--list", "leads", "--tenant", "acme", "--inline"]) == 0
    assert f"already imported into list leads: import {import_id}" in capsys.readouterr().out


def test_user_errors_are_one_line(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lists", "import", str(tmp_path / "missing.csv"), "--list", "l", "--tenant", "t", "--inline"]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "map.json"
    bad.write_text("{not json")
    (tmp_path / "x.csv").write_text("phone\n0612345678\n")
    assert main(["lists", "import", str(tmp_path / "x.csv"), "--list", "l", "--tenant", "t", "--mapping", str(bad),
                 "--inline"]) == 1
    assert "[bad_mapping]" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert main(["lists", "import", str(empty), "--list", "l", "--tenant", "t", "--inline"]) == 1
    assert "[empty_file]" in capsys.readouterr().out
    assert main(["lists", "import", str(tmp_path / "x.csv"), "--list", "bad name", "--tenant", "t"]) == 1
    assert "[bad_list]" in capsys.readouterr().err


def test_enqueued_import_is_run_by_dialer_worker(env: str, redis_client: redis.Redis, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "q.csv"
    path.write_text("phone\n" + "".join(f"+3361234{i:04d}\n" for i in range(500)))
    assert main(["lists", "import", str(path), "--list", "q", "--tenant", "acme", "--no-wait"]) == 0
    import_id = capsys.readouterr().out.strip()
    assert import_status(redis_client, "acme", import_id)["status"] == "queued"
    done = subprocess.run([sys.executable, "-m", "dialer", "worker", "--burst", "--queues", "imports,exports"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    status = import_status(redis_client, "acme", import_id)
    assert status["status"] == "committed" and status["summary"]["contacts_added"] == 500


def test_worker_refuses_unknown_queues(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--queues", "imports,nope", "--burst"]) == 1
    assert "unknown queue nope" in capsys.readouterr().err


def test_scrub_command_uses_the_gate(env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.csv"
    path.write_text("phone,pays\n01 45 67 89 01,FR\n")
    assert main(["lists", "import", str(path), "--list", "leads", "--tenant", "acme", "--inline"]) == 0
    capsys.readouterr()
    args = ["lists", "scrub", "--list", "leads", "--tenant", "acme", "--campaign", "spring",
            "--at", "2026-03-03T10:30:00+01:00", "-o", str(tmp_path / "scrub.csv")]
    monkeypatch.delenv("DIALER_SECRET_KEY", raising=False)
    assert main(args) == 1
    assert "security.secret_key" in capsys.readouterr().err
    monkeypatch.setenv("DIALER_SECRET_KEY", "test-key")
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    # No Bloctel copy loaded: the gate fails closed, and the report says why.
    assert (summary["now"], summary["never"]) == (0, 1) and summary["never_by_reason"]
    rows = list(csv.DictReader((tmp_path / "scrub.csv").open()))
    assert rows[0]["verdict"] == "never" and rows[0]["reasons"]


def test_worker_processes_stop_with_their_parent(env: str) -> None:
    import signal
    import time

    parent = subprocess.Popen([sys.executable, "-m", "dialer", "worker", "--processes", "2", "--queues", "imports"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        client = redis.Redis.from_url(env)
        deadline = time.monotonic() + 60
        while len(client.smembers("rq:workers")) < 2:  # both RQ workers registered
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.1)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(60) == 0
        assert client.smembers("rq:workers") == set()  # the children left cleanly (warm shutdown)
    finally:
        if parent.poll() is None:
            parent.kill()
