"""Numbers and addresses -> jurisdiction and candidate zones."""

from __future__ import annotations

import pytest

from rules import geo


@pytest.mark.parametrize("e164,expected", [
    ("+13055550123", ("US", "FL")),
    ("+12125550123", ("US", "NY")),
    ("+14105550123", ("US", "MD")),
    ("+14055550123", ("US", "OK")),
    ("+14165550123", ("CA", "ON")),
    ("+15145550123", ("CA", "QC")),
    ("+33145678901", ("FR", None)),
    ("+590590123456", ("FR", "971")),  # Guadeloupe dialled with its own code: French law
    ("+262262123456", ("FR", "974")),  # La Réunion
    ("+442079460000", ("GB", None)),
    ("+49301234567", ("DE", None)),
    ("+17875550123", ("US", "PR")),  # Puerto Rico: federal US law
])
def test_jurisdiction_for_number(e164, expected):
    assert geo.jurisdiction_for_number(e164) == expected


def test_invalid_numbers_raise():
    for bad in ("", "hello", "+1555", "+33 1"):
        with pytest.raises(geo.InvalidNumber):
            geo.normalize(bad)
    assert geo.normalize("01 45 67 89 01", "FR") == "+33145678901"
    assert geo.normalize("(212) 555-0123", "US") == "+12125550123"


def test_nanp_table_covers_the_states_with_packs():
    states = {a.subdivision for a in geo.nanp_area_codes().values() if a.country == "US"}
    assert {"FL", "OK", "MD", "AL", "LA", "MS", "KY", "MA", "CT"} <= states
    assert set(geo.nanp_area_codes()["850"].zones) == {"America/Chicago", "America/New_York"}  # FL panhandle


@pytest.mark.parametrize("country,state,postal,expected", [
    ("US", None, "33101", ("US", "FL")),
    ("US", None, "30301", ("US", "GA")),
    ("US", None, "02108", ("US", "MA")),  # leading zero
    ("US", "ga", "33101", ("US", "GA")),  # an explicit state wins
    ("CA", None, "H2X 1Y4", ("CA", "QC")),
    ("FR", None, "67000", ("FR", "67")),
    ("FR", None, "97110", ("FR", "971")),
    ("FR", None, "20000", ("FR", "2A")),
    ("DE", None, "10115", ("DE", None)),
])
def test_address_jurisdiction(country, state, postal, expected):
    assert geo.address_jurisdiction(country, state, postal) == expected


def test_address_zones():
    assert geo.zones_for_address("FR", None, "97110") == ("America/Guadeloupe",)
    assert geo.zones_for_address("FR", None, "75011") == ("Europe/Paris",)
    assert set(geo.zones_for_address("US", None, "32501")) == {"America/Chicago", "America/New_York"}  # Florida
    assert geo.zones_for_address("US", None, None) == ()  # a bare country does not narrow anything
    assert geo.zones_for_address("PR", None, "00901") == ("America/Puerto_Rico",)
    assert geo.zones_for_address("US", None, "00901") == ("America/Puerto_Rico",)  # ZIP3 006-009
    assert geo.zones_for_address("DE", None, "10115") == ()  # no postal table: the number and country decide


def test_a_number_analysed_once_answers_as_phonenumbers_does():
    """rules/geo.py works out a new number's region and type once (issue 13, `dialer gate check` speed) where
    phonenumbers' is_valid_number, region_code_for_number and time_zones_for_number each work them out again: the
    answers must be the library's, for valid and invalid numbers, single- and multi-region calling codes (+1 US/CA
    and the Caribbean, +44 with the Crown dependencies, +262/+590 overseas France, +7, +61), toll-free and mobiles."""
    import random

    import phonenumbers
    from phonenumbers import timezone as pn_timezone

    from rules.geo import _analyse

    rng = random.Random(5)
    prefixes = ["+1212", "+1416", "+1800", "+1876", "+1340", "+1671", "+1500", "+1", "+447", "+44207", "+441481",
                "+441624", "+441534", "+331", "+336", "+339", "+262262", "+262692", "+590590", "+594", "+596", "+687",
                "+49", "+4930", "+7", "+7495", "+61", "+612", "+800", "+882", "+32", "+39", "+34", "+41", "+81"]
    checked = valid = 0
    for _ in range(3000):
        prefix = rng.choice(prefixes)
        text = prefix + "".join(rng.choice("0123456789") for _ in range(rng.randint(5, 11)))
        try:
            number = phonenumbers.parse(text)
        except phonenumbers.NumberParseException:
            continue
        parsed = _analyse(number)
        assert parsed.region == phonenumbers.region_code_for_number(number), text
        assert parsed.valid == phonenumbers.is_valid_number(number), text
        assert parsed.time_zones() == tuple(pn_timezone.time_zones_for_number(number)), text
        checked += 1
        valid += parsed.valid
    assert checked > 2500 and 200 < valid < checked
