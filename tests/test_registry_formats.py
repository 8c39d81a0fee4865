"""Importer line formats: each registry's accepted forms, the errors, and agreement with phonenumbers."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.registry.formats import (
    ADD,
    DELETE,
    FORMATS,
    FR_OVERSEAS,
    FRANCE,
    NANP,
    UK,
    HeaderError,
    LineError,
    format_for,
    overseas_alias,
)
from dialer.registry.numbers import e164_to_int, int_to_e164


def parse(fmt: str, line: bytes, delta: bool = False, country: str | None = None):
    return FORMATS[fmt].make_parser(country).parse(line, delta)


@pytest.mark.parametrize(
    "fmt,line,expected",
    [
        ("us_dnc", b"2125551234", 12125551234),
        ("us_dnc", b"212,5551234", 12125551234),
        ("us_dnc", b" 2125551234\r", 12125551234),
        ("us_dnc", b"12125551234", 12125551234),
        ("us_dnc", b"(212) 555-1234", 12125551234),
        ("us_dnc", b"212.555.1234", 12125551234),
        ("us_dnc", b"+1 212 555 1234", 12125551234),
        ("dncl", b"4165551234", 14165551234),
        ("dncl", b"416,5551234", 14165551234),
        ("bloctel", b"0145678901", 33145678901),
        ("bloctel", b"01 45 67 89 01", 33145678901),
        ("bloctel", b"+33145678901", 33145678901),
        ("bloctel", b"+33 1 45 67 89 01", 33145678901),
        ("bloctel", b"0033145678901", 33145678901),
        ("bloctel", b"+33 (0)1 45 67 89 01", 33145678901),
        ("bloctel", b"0612345678", 33612345678),
        ("bloctel", b"0262123456", 262262123456),
        ("bloctel", b"+262262123456", 262262123456),
        ("bloctel", b"0696123456", 596696123456),
        ("tps", b"02079460018", 442079460018),
        ("tps", b"020 7946 0018", 442079460018),
        ("tps", b"+44 20 7946 0018", 442079460018),
        ("ctps", b"01632960001", 441632960001),
        ("tps", b"0169772345", 44169772345),
        # TPS/CTPS subscriber files: 12-character fixed-width records ending in CR LF, "with spaces" (dialling
        # code left-justified in 5, remainder right-justified in 7) or "without spaces" (padded at the end).
        ("tps", b"0207 3787244\r", 442073787244),
        ("tps", b"01635 506160\r", 441635506160),
        ("ctps", b"07860 338653\r", 447860338653),
        ("tps", b"0191  565715\r", 44191565715),
        ("tps", b"02073787244 \r", 442073787244),
        # DNCL flat text file: NPA,NUMBER with a line feed.
        ("dncl", b"416,2345678", 14162345678),
    ],
)
def test_national_forms_normalise_to_e164(fmt: str, line: bytes, expected: int) -> None:
    assert parse(fmt, line) == (ADD, expected)


@pytest.mark.parametrize(
    "fmt,line,why",
    [
        ("us_dnc", b"212555123", "10 digits"),
        ("us_dnc", b"21255512345", "10 digits"),
        ("us_dnc", b"1125551234", "2-9"),
        ("us_dnc", b"2121551234", "2-9"),
        ("us_dnc", b"212-555-12a4", "unexpected characters"),
        ("us_dnc", b"1-800-FLOWERS", "unexpected characters"),
        ("us_dnc", b"21,25551234", "area-code form"),
        ("us_dnc", b"212,555,1234", "fields"),
        ("us_dnc", b"+44 20 7946 0018", "country"),
        ("bloctel", b"1145678901", "start with 0"),
        ("bloctel", b"014567890", "9 digits"),
        ("bloctel", b"0045678901", "country"),
        ("bloctel", b"+44145678901", "country"),
        ("bloctel", "01 45 67 89 0\u00e9".encode(), "unexpected characters"),
        ("tps", b"020794600", "9 or 10 digits"),
        ("tps", b"+33145678901", "country"),
        ("tps", b"2079460018", "start with 0"),
    ],
)
def test_malformed_lines_say_why(fmt: str, line: bytes, why: str) -> None:
    with pytest.raises(LineError, match=why):
        parse(fmt, line)


def test_errors_never_echo_the_number() -> None:
    with pytest.raises(LineError) as info:
        parse("us_dnc", b"1125551234")
    assert "1125551234" not in str(info.value) and "555" not in str(info.value)


def test_blank_comment_and_bom_lines() -> None:
    assert parse("us_dnc", b"") is None
    assert parse("us_dnc", b"   \r") is None
    assert parse("us_dnc", b"# FTC list 2026-11-23") is None
    assert parse("us_dnc", b"\xef\xbb\xbf2125551234") == (ADD, 12125551234)


@pytest.mark.parametrize(
    "line,expected",
    [
        (b"A,2125551234", (ADD, 12125551234)),
        (b"D,2125551234", (DELETE, 12125551234)),
        (b"add;2125551234", (ADD, 12125551234)),
        (b"2125551234,delete", (DELETE, 12125551234)),
        (b"212,5551234,A", (ADD, 12125551234)),
        (b"212,5551234,2026-11-23,D", (DELETE, 12125551234)),
        (b"D\t212\t5551234\t11/23/2026", (DELETE, 12125551234)),
        (b"a|2125551234", (ADD, 12125551234)),
        (b"A 2125551234", (ADD, 12125551234)),
        (b"212 555 1234 D", (DELETE, 12125551234)),
        (b"(212) 555-1234 d", (DELETE, 12125551234)),
        # The date at the end, after the action (an FTC-style "NPA,NUMBER,ACTION,DATE" record), or first.
        (b"212,5551234,A,2026-11-23", (ADD, 12125551234)),
        (b"212,5551234,D,11/23/2026", (DELETE, 12125551234)),
        (b"2125551234,A,20261123", (ADD, 12125551234)),
        (b"2026-11-23,D,212,5551234", (DELETE, 12125551234)),
        (b"20261123;A;2125551234", (ADD, 12125551234)),
    ],
)
def test_change_lines(line: bytes, expected: tuple[bool, int]) -> None:
    assert parse("us_dnc", line, delta=True) == expected


def test_change_line_needs_an_action() -> None:
    with pytest.raises(LineError, match="action"):
        parse("us_dnc", b"2125551234", delta=True)
    with pytest.raises(LineError, match="action"):
        parse("bloctel", b"0145678901,X", delta=True)
    assert parse("bloctel", b"D,+33145678901", delta=True) == (DELETE, 33145678901)
    with pytest.raises(LineError, match="action"):  # a date is not an action
        parse("us_dnc", b"212,5551234,2026-11-23", delta=True)
    with pytest.raises(LineError):  # only one date field is ignored
        parse("us_dnc", b"A,2026-11-23,2026-11-24,2125551234", delta=True)


def test_csv_with_phone_country_and_action() -> None:
    parser = FORMATS["csv"].make_parser("FR")
    assert parser.parse(b"Name,Phone,Country", False) is None
    assert parser.parse(b"Ann,0145678901,", False) == (ADD, 33145678901)  # default country
    assert parser.parse(b"Bob,2125551234,US", False) == (ADD, 12125551234)
    assert parser.parse(b"Cy,+4915112345678,", False) == (ADD, 4915112345678)
    assert parser.parse(b'"Dee, Jr",030 1234567,DE', False) == (ADD, 49301234567)
    with pytest.raises(LineError, match="fields"):
        parser.parse(b"x,y", False)
    with pytest.raises(LineError, match="country"):
        parser.parse(b"Eve,0145678901,ZZ", False)
    with pytest.raises(LineError, match="phone number"):
        parser.parse(b"Fay,+491,", False)

    no_default = FORMATS["csv"].make_parser(None)
    no_default.parse(b"phone", False)
    with pytest.raises(LineError, match="without a country"):
        no_default.parse(b"0145678901", False)

    changes = FORMATS["csv"].make_parser(None)
    assert changes.parse(b"phone,action", True) is None
    assert changes.parse(b"+33145678901,D", True) == (DELETE, 33145678901)


def test_csv_header_must_name_phone() -> None:
    with pytest.raises(HeaderError):
        FORMATS["csv"].make_parser(None).parse(b"number,country", False)
    with pytest.raises(HeaderError, match="action"):
        FORMATS["csv"].make_parser(None).parse(b"phone", True)


def test_format_for_registry_names() -> None:
    assert format_for("us_dnc").key == "us_dnc"
    assert format_for("tps").key == "tps"
    assert format_for("acme_list").key == "csv"
    assert format_for("acme_list", "bloctel").key == "bloctel"
    with pytest.raises(KeyError):
        format_for("x", "nope")


def test_e164_integers_round_trip() -> None:
    assert e164_to_int("+33145678901") == 33145678901
    assert int_to_e164(33145678901) == "+33145678901"
    for bad in ("33145678901", "+", "+0145", "+33 1 45", "+1234567890123456", "", "+３３"):
        with pytest.raises(ValueError):
            e164_to_int(bad)


def _e164(text: str, region: str) -> int:
    return int(phonenumbers.format_number(phonenumbers.parse(text, region), phonenumbers.PhoneNumberFormat.E164)[1:])


def _possible(text: str, region: str) -> bool:
    number = phonenumbers.parse(text, region)
    return phonenumbers.is_possible_number_with_reason(number) == phonenumbers.ValidationResult.IS_POSSIBLE


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_nanp_plain_digits_agree_with_phonenumbers(digits: str) -> None:
    # Our decoder adds the NANP rule (area code and exchange start with 2-9) to phonenumbers' length check.
    nanp_ok = digits[0] >= "2" and digits[3] >= "2"
    if nanp_ok:
        assert NANP.number(digits.encode()) == _e164(digits, "US")
        assert _possible(digits, "US")
    else:
        with pytest.raises(LineError):
            NANP.number(digits.encode())


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_french_national_numbers_agree_with_phonenumbers(nsn: str) -> None:
    line = ("0" + nsn).encode()
    if nsn[0] == "0":
        with pytest.raises(LineError):
            FRANCE.number(line)
        return
    overseas = FR_OVERSEAS.get(nsn[:3].encode())
    expected = overseas * 10**9 + int(nsn) if overseas else _e164("0" + nsn, "FR")
    assert FRANCE.number(line) == expected
    assert FRANCE.number(b"+33" + nsn.encode()) == expected


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789", min_size=9, max_size=10).filter(lambda s: s[0] != "0"))
def test_uk_national_numbers_agree_with_phonenumbers(nsn: str) -> None:
    assert UK.number(("0" + nsn).encode()) == _e164("0" + nsn, "GB")


def test_overseas_prefixes_belong_to_their_country_code() -> None:
    # Each prefix of the data table has numbers that phonenumbers says are valid in a region of that code.
    for prefix, cc in FR_OVERSEAS.items():
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]
        valid = any(
            phonenumbers.is_valid_number(phonenumbers.parse(f"0{prefix.decode()}{i:02d}1234", region))
            for region in regions for i in range(100)
        )
        assert valid, (prefix, cc)


def test_overseas_alias_links_both_spellings() -> None:
    assert overseas_alias(33262123456) == 262262123456
    assert overseas_alias(262262123456) == 33262123456
    assert overseas_alias(33696123456) == 596696123456
    assert overseas_alias(590690123456) == 33690123456
    assert overseas_alias(33145678901) is None
    assert overseas_alias(262145678901) is None  # +262 with a metropolitan prefix: no alias
    assert overseas_alias(590262123456) is None  # prefix of another department
    assert overseas_alias(12125551234) is None
