"""One raw phone cell -> a normalized number (E.164, validity, line type, time zones, jurisdiction) or a reason.

Pure: no I/O, no clock. phonenumbers does the parsing; what it does too leniently we refuse first
(letters, which it would read as a vanity keypad; an extension word it does not know, like "poste").
Country, subdivision and candidate zones follow rules.geo (the gate's conventions: ("US", "NY"),
("FR", "971"), every zone a number may be in). Zones are read from phonenumbers' prefix table directly
(the same longest-prefix lookup it does, without parsing the number a second time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumberFormat, PhoneNumberType, timezone
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from rules import geo

LINE_TYPES = {
    PhoneNumberType.FIXED_LINE: "fixed",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

# "06 12 34 56 78 poste 12", "+1 212 555 0100 ext. 7", "... x12", "... #12": the extension is kept apart.
_EXTENSION = re.compile(r"(?i)\s*(?:ext\.?|extension|poste|x|#)\s*(\d{1,7})\s*$")
_ALLOWED = re.compile(r"^[+\d\s().\-/]*$")
_SEPARATORS = str.maketrans("", "", " .-/()\t\xa0")
_SIMPLE = re.compile(r"^\+?\d{5,17}$")


@lru_cache(maxsize=512)
def _simple_prefixes(region: str) -> tuple[int, str, str] | None:
    """(country code, national prefix, international prefix) when both prefixes are plain digits and the
    region rewrites nothing on parsing; None otherwise (then phonenumbers.parse does all the work)."""
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.national_prefix_transform_rule:
        return None
    national = meta.national_prefix_for_parsing or meta.national_prefix or ""
    if national != (meta.national_prefix or "") or not (national.isdigit() or national == ""):
        return None
    international = meta.international_prefix or ""
    if not international.isdigit():
        return None
    return meta.country_code, national, international


def _fast_parse(digits: str, region: str) -> phonenumbers.PhoneNumber | None:
    """The common clean cases without phonenumbers.parse (+CC..., 00CC..., 0NSN in the default region).
    Returns None whenever parse could do something more (a national prefix after the country code, a
    leading zero, a region with parsing rules); tests check both paths agree."""
    if digits.startswith("+"):
        rest = digits[1:]
    else:
        simple = _simple_prefixes(region)
        if simple is None:
            return None
        country_code, national, international = simple
        if international and digits.startswith(international):
            rest = digits[len(international):]
        elif national and digits.startswith(national):
            nsn = digits[len(national):]
            if nsn.startswith("0") or (national and nsn.startswith(national)):
                return None
            return phonenumbers.PhoneNumber(country_code=country_code, national_number=int(nsn))
        else:
            return None
    for length in (1, 2, 3):
        code = int(rest[:length] or 0)
        if code in COUNTRY_CODE_TO_REGION_CODE:
            nsn = rest[length:]
            target = COUNTRY_CODE_TO_REGION_CODE[code][0]
            simple = _simple_prefixes(target) if target != "001" else None
            if not nsn or nsn.startswith("0") or simple is None or (simple[1] and nsn.startswith(simple[1])):
                return None
            return phonenumbers.PhoneNumber(country_code=code, national_number=int(nsn))
    return None


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str
    line_type: str
    timezones: tuple[str, ...]
    country: str
    subdivision: str | None
    extension: str | None = None


@dataclass(frozen=True, slots=True)
class PhoneError:
    reason: str  # a code from docs/contacts.md "Error codes"
    message: str


def _geo_zones(digits: str) -> tuple[str, ...]:
    """phonenumbers' time_zones_for_geographical_number without parsing again: the longest prefix of
    the E.164 digits (at most TIMEZONE_LONGEST_PREFIX long) found in its table."""
    for length in range(min(len(digits), TIMEZONE_LONGEST_PREFIX), 0, -1):
        zones = TIMEZONE_DATA.get(digits[:length])
        if zones is not None:
            return tuple(zones)
    return (timezone.UNKNOWN_TIMEZONE,)


@lru_cache(maxsize=1024)
def _country_zones(country_code: int) -> tuple[str, ...]:
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=0)
    return tuple(timezone._country_level_time_zones_for_number(number))


def _pn_zones(e164: str, number: phonenumbers.PhoneNumber, kind: int) -> tuple[str, ...]:
    """Exactly phonenumbers' time_zones_for_number, from the number already parsed."""
    if not timezone.is_number_type_geographical(kind, number.country_code):
        return _country_zones(number.country_code)
    return _geo_zones(e164[1:])


def place(e164: str, number: phonenumbers.PhoneNumber, kind: int) -> tuple[str, str | None, tuple[str, ...]]:
    """(country, subdivision, zones) with the conventions and data of rules.geo (jurisdiction_for_number,
    zones_for_number), from the already parsed number: rules.geo parses again, which would double the
    cost of an import. tests/test_contacts_phones.py checks both agree."""
    region = phonenumbers.region_code_for_number(number) or ""
    zones = set(_pn_zones(e164, number, kind)) - {timezone.UNKNOWN_TIMEZONE}
    country, subdivision = region, None
    area = geo.nanp_area_codes().get(str(number.national_number)[:3]) if number.country_code == 1 else None
    if region in geo.FR_OVERSEAS:
        country, subdivision = "FR", geo.FR_OVERSEAS[region]
    elif area is not None:
        country, subdivision = area.country, area.subdivision
    if area is not None:
        zones.update(area.zones)
    if not zones:
        zones.update(geo.country_zones(region))
    return country, subdivision, tuple(sorted(zones))


def normalize(raw: str, region: str) -> Phone | PhoneError:
    """Normalize one phone cell with the list's default region (ISO code, e.g. "FR")."""
    text = raw.strip().lstrip("'")  # a leading apostrophe is how our exports (and Excel) mark text
    if not text:
        return PhoneError("missing_phone", "no phone number")
    digits = text.translate(_SEPARATORS)
    number = _fast_parse(digits, region) if _SIMPLE.match(digits) else None
    if number is not None:
        kind = phonenumbers.number_type(number)
        if kind != PhoneNumberType.UNKNOWN:
            # _fast_parse never keeps a leading zero of the national number: E.164 is +CC and the number's digits
            return _phone(number, kind, None, f"+{number.country_code}{number.national_number}")
    return _slow(text, region)


def _slow(text: str, region: str) -> Phone | PhoneError:
    extension = None
    found = _EXTENSION.search(text)
    if found and any(c.isdigit() for c in text[: found.start()]):
        extension = found.group(1)
        text = text[: found.start()]
    if not _ALLOWED.match(text):
        if any(c.isalpha() for c in text):
            return PhoneError("phone_has_letters", "letters in a phone number")
        return PhoneError("phone_unparseable", "unexpected characters in a phone number")
    digits = sum(c.isdigit() for c in text)
    if digits < 5:
        return PhoneError("phone_too_short", "too few digits for a phone number")
    if digits > 17:
        return PhoneError("phone_too_long", "too many digits for a phone number")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return PhoneError("invalid_country_code", "unknown country calling code (or no default region)")
        return PhoneError("phone_unparseable", str(exc.args[0] if exc.args else exc))
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:  # same test as is_valid_number, done once
        # Name the country the number was read in: a US number in a French list is otherwise a mystery.
        where = phonenumbers.region_code_for_country_code(number.country_code)
        where = f"{where} (+{number.country_code})" if where != "001" else f"+{number.country_code}"
        source = phonenumbers.parse(text, region, keep_raw_input=True).country_code_source  # error path only
        national = source == phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY
        hint = f"; read as a national number of the list's region {region}: write other countries' numbers " \
            "with + and their code" if national else ""
        if not phonenumbers.is_possible_number(number):
            return PhoneError("invalid_length", f"wrong number of digits for {where}{hint}")
        return PhoneError("invalid_number", f"not a number in use in the numbering plan of {where}{hint}")
    return _phone(number, kind, extension)


def _phone(number: phonenumbers.PhoneNumber, kind: int, extension: str | None, e164: str = "") -> Phone:
    e164 = e164 or phonenumbers.format_number(number, PhoneNumberFormat.E164)
    country, subdivision, zones = place(e164, number, kind)
    return Phone(e164=e164, line_type=LINE_TYPES.get(kind, "other"), timezones=zones, country=country,
                 subdivision=subdivision, extension=extension)
