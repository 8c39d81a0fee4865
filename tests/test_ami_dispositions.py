"""The disposition tables: Q.850 causes, OriginateResponse reasons and our UserEvents."""

from __future__ import annotations

import pytest

from dialer.ami.dispositions import (
    Disposition,
    from_hangup_cause,
    from_originate_reason,
    from_user_event,
    stronger,
)


def test_values_are_the_contract():
    assert {d.value for d in Disposition} == {
        "answered",
        "busy",
        "no_answer",
        "congestion",
        "failed",
        "abandoned",
        "machine",
        "opted_out",
        "unknown",
    }


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (16, "answered"),
        ("17", "busy"),
        (18, "no_answer"),
        (19, "no_answer"),
        (20, "no_answer"),
        (21, "busy"),
        (34, "congestion"),
        (38, "congestion"),
        (41, "congestion"),
        (42, "congestion"),
        (1, "failed"),
        (3, "failed"),
        (28, "failed"),
        (27, "failed"),
        (127, "unknown"),  # unlisted: never guessed
        ("x", None),
        (0, None),  # cause 0 carries no information
        (None, None),
    ],
)
def test_hangup_causes(cause, expected):
    result = from_hangup_cause(cause)
    assert (result.value if result else None) == expected


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (0, "failed"),
        ("1", "failed"),
        (3, "no_answer"),
        (4, "answered"),
        (5, "busy"),
        (8, "congestion"),
        (2, "unknown"),
        (None, "unknown"),
        ("junk", "unknown"),
    ],
)
def test_originate_reasons(reason, expected):
    assert from_originate_reason(reason).value == expected


def test_user_events_and_priority():
    assert from_user_event("DialerAbandon") is Disposition.ABANDONED
    assert from_user_event("DialerOptOut") is Disposition.OPTED_OUT
    assert from_user_event("DialerMachine") is Disposition.MACHINE
    assert from_user_event("DialerConnected") is None
    assert from_user_event(None) is None
    # an opt-out is never hidden behind an abandon, whatever the order
    assert stronger(Disposition.ABANDONED, Disposition.OPTED_OUT) is Disposition.OPTED_OUT
    assert stronger(Disposition.OPTED_OUT, Disposition.ABANDONED) is Disposition.OPTED_OUT
    assert stronger(None, Disposition.ABANDONED) is Disposition.ABANDONED
