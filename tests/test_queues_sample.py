"""The queues.conf we ship keeps the 2-second rule on a real Asterisk (retry cycle) and the opt-out key while
waiting; the check catches the settings that would break them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.sandbox.queues_check import check_queues, parse_queues

SAMPLE = Path(__file__).resolve().parents[1] / "asterisk" / "queues.conf.sample"
REFERENCE = Path(__file__).parent / "data" / "queues.conf"


def test_the_shipped_queue_sample_passes() -> None:
    assert check_queues(SAMPLE.read_text(), str(SAMPLE)) == []
    assert parse_queues(SAMPLE.read_text())["dialer"]["retry"] == ["1"]


def test_the_reference_asterisk_used_a_one_second_retry_too() -> None:
    # The reference transcript's queue (the real Asterisk 22 run) had retry = 1: callers waited in 1 s steps.
    if not REFERENCE.exists():
        pytest.skip("reference queues.conf not copied into tests/data")
    assert parse_queues(REFERENCE.read_text())["sim-agents"]["retry"] == ["1"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("retry = 1 ", "retry = 0 ", "retry = 0: must be 1"),
        ("retry = 1 ", "retry = 5 ", "retry = 5: must be 1"),
        ("retry = 1 ", "; retry = 1 ", "retry = (unset)"),
        ("autofill = yes", "autofill = no", "autofill must be yes"),
        ("autofill = yes", "; autofill = yes", "autofill must be yes"),
        ("timeoutpriority = app", "timeoutpriority = conf", "timeoutpriority must be app"),
        ("context = dialer-outbound", "context = default", "context must be dialer-outbound"),
        ("leavewhenempty = no", "leavewhenempty = yes", "leavewhenempty must be no"),
    ],
)
def test_the_check_catches_settings_that_break_the_rules(old: str, new: str, expected: str) -> None:
    text = SAMPLE.read_text()
    assert old in text
    problems = check_queues(text.replace(old, new, 1), "q")
    assert any(expected in p and "[dialer]" in p for p in problems), problems
