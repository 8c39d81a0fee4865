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
