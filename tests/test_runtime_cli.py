"""`dialer run` refuses bad input with one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environ.pop("DIALER_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "dialer", "run", *args], capture_output=True, text=True, env=environ,
                          cwd=str(ROOT), timeout=60)


def test_bad_sandbox_address():
    done = run(["--sandbox", "nowhere"], DIALER_SECRET_KEY="k")
    assert done.returncode == 1 and "--sandbox: expected HOST:PORT" in done.stderr and "Traceback" not in done.stderr


def test_no_server_configured():
    done = run([], DIALER_SECRET_KEY="k")
    assert done.returncode == 1 and "no [[asterisk]] server" in done.stderr


def test_secret_key_required():
    done = run(["--sandbox", "127.0.0.1:5038"], DIALER_SECRET_KEY="")
    assert done.returncode == 1 and "security.secret_key" in done.stderr


def test_bad_clock_start():
    done = run(["--sandbox", "127.0.0.1:5038", "--clock-start", "tuesday"], DIALER_SECRET_KEY="k")
    assert done.returncode == 1 and "--clock-start" in done.stderr and "Traceback" not in done.stderr


def test_clock_start_needs_an_offset():
    done = run(["--sandbox", "127.0.0.1:5038", "--clock-start", "2026-03-03T10:00:00"], DIALER_SECRET_KEY="k")
    assert done.returncode == 1 and "time zone" in done.stderr


def test_dial_template_with_unknown_fields():
    done = run(["--sandbox", "127.0.0.1:5038", "--dial-template", "PJSIP/{number}@{trunk}"], DIALER_SECRET_KEY="k")
    assert done.returncode == 1 and "--dial-template: only {number} and {digits}" in done.stderr
    assert "Traceback" not in done.stderr
