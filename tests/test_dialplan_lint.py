"""CI check of the dialplan we ship: asterisklint (syntax, apps, goto targets) plus our contract checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dialer.sandbox.dialplan_check import check

DIALPLAN = Path(__file__).resolve().parents[1] / "asterisk" / "extensions_dialer.conf"
# An included file has no [general]/[globals] of its own: those hints do not apply.
IGNORED = "H_DP_GENERAL_MISPLACED,H_DP_GLOBALS_MISPLACED"
# asterisklint 0.4.3's application list lacks app_amd's AMD() (a standard Asterisk module).
KNOWN_GAPS = ("E_APP_MISSING: app 'AMD' does not exist",)


def asterisklint(path: Path) -> list[str]:
    exe = shutil.which("asterisklint") or str(Path(sys.executable).with_name("asterisklint"))
    if not Path(exe).exists():
        pytest.fail("asterisklint is not installed: pip install asterisklint (test dependency in pyproject.toml)")
    proc = subprocess.run([exe, "dialplan-check", str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ALINT_IGNORE": IGNORED})  # fmt: skip
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return [line for line in lines if not any(gap in line for gap in KNOWN_GAPS)]


def test_asterisklint_finds_nothing_in_our_dialplan() -> None:
    assert asterisklint(DIALPLAN) == []


def test_asterisklint_catches_a_broken_copy(tmp_path: Path) -> None:
    text = DIALPLAN.read_text()
    broken = text.replace("?amd)", "?nolabel)").replace("Set(DIALER_STAGE=info)", "Set(DIALER_STAGE=info")
    path = tmp_path / "extensions_dialer.conf"
    path.write_text(broken)
    report = "\n".join(asterisklint(path))
    assert "W_APP_BALANCE" in report and "W_DP_GOTO_CONTEXT_NOEXTEN" in report


def test_contract_checks_pass_on_our_dialplan() -> None:
    assert check(DIALPLAN.read_text(), str(DIALPLAN)) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("CampaignID: ${DIALER_CAMPAIGN_ID},Reason: no-agent", "Reason: no-agent", "DialerAbandon lacks CampaignID"),
        ("Set(DIALER_STAGE=notice)", "Set(DIALER_STAGE=nowhere)", "goto target dialer-outbound,s,nowhere"),
        ("${DIALER_QUEUE}", "${DIALER_QUEUEE}", "variable DIALER_QUEUEE"),
        ("UserEvent(DialerMachine", "UserEvent(DialerRobot", "'DialerRobot' is not in the event contract"),
        ("AMD()", "AMDD()", "unknown application 'AMDD'"),
        ("same => n(done),Hangup()", "same => n(done),Hangup())", "unbalanced"),
        ("Set(DB(dialer_optout/", "Set(DB(dialer_optouts/", "AstDB family 'dialer_optouts' is not in the event"),
        ("Set(DB(dialer_optout/", "Set(NOT_DB(dialer_optout/", "DialerOptOut is not preceded by its AstDB write"),
        ("${EPOCH},${DIALER_CAMPAIGN_ID},${DIALER_TENANT_ID}", "${EPOCH}", "must be written as dialer_optout/"),
    ],
)
def test_contract_checks_catch_mistakes(old: str, new: str, expected: str) -> None:
    text = DIALPLAN.read_text()
    assert old in text
    problems = check(text.replace(old, new, 1), "dp")
    assert any(expected in p for p in problems), problems
