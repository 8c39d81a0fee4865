"""rules.geo: country and NANP state/province of an E.164 number."""

import pytest

from rules.geo import jurisdiction_for_number, nanp_area_codes


@pytest.mark.parametrize(
    ("e164", "expected"),
    [
        ("+12125550100", ("US", "US-NY")),
        ("+13055550100", ("US", "US-FL")),
        ("+14165550100", ("CA", "CA-ON")),
        ("+15145550100", ("CA", "CA-QC")),
        ("+17875550100", ("US", "US-PR")),  # Puerto Rico: US law applies
        ("+18765550100", ("JM", None)),
        ("+19025550100", ("CA", None)),  # Nova Scotia or Prince Edward Island: ambiguous
        ("+33145678901", ("FR", None)),
        ("+442079460000", ("GB", None)),
        ("+447911123456", ("GG", None)),  # a Guernsey mobile range: not GB
        ("+18005550100", ("US", None)),  # toll free, no area
    ],
)
def test_jurisdiction(e164: str, expected: tuple[str, str | None]) -> None:
    assert jurisdiction_for_number(e164) == expected


@pytest.mark.parametrize("bad", ["0145678901", "+33 1 45", "", "+", "+999123"])
def test_not_e164_raises(bad: str) -> None:
    with pytest.raises(ValueError):
        jurisdiction_for_number(bad)


def test_every_us_state_and_canadian_province_has_an_area_code() -> None:
    subs = {sub for _, sub in nanp_area_codes().values() if sub}
    assert len({s for s in subs if s.startswith("US-")}) >= 51  # 50 states + DC (+ territories)
    assert {"CA-ON", "CA-QC", "CA-BC", "CA-AB", "CA-MB", "CA-SK", "CA-NB", "CA-NL"} <= subs
