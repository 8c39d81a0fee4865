"""One raw phone cell -> a normalized number (E.164, validity, line type, time zones, jurisdiction) or a reason.

Pure: no I/O, no clock. phonenumbers does the parsing; what it does too leniently we refuse first
(letters, which it would read as a vanity keypad; an extension word it does not know, like "poste").
Country, subdivision and candidate zones follow rules.geo (the gate's conventions: ("US", "NY"),
("FR", "971"), every zone a number may be in). Zones are read from phonenumbers' prefix table directly
(the same longest-prefix lookup it does, without parsing the number a second time).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumberFormat, PhoneNumberType, timezone
from phonenumbers.phonemetadata import REGION_CODE_FOR_NON_GEO_ENTITY
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
    """_fast_split as a PhoneNumber (the tests compare it with phonenumbers.parse)."""
    split = _fast_split(digits, region)
    return None if split is None else phonenumbers.PhoneNumber(country_code=split[0], national_number=int(split[1]))


def _fast_split(digits: str, region: str) -> tuple[int, str] | None:
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
            return country_code, nsn
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
            return code, nsn
    return None


# phonenumbers' _number_type_helper order: the first type whose description matches wins.
_TYPE_ORDER = (
    (PhoneNumberType.PREMIUM_RATE, "premium_rate"), (PhoneNumberType.TOLL_FREE, "toll_free"),
    (PhoneNumberType.SHARED_COST, "shared_cost"), (PhoneNumberType.VOIP, "voip"),
    (PhoneNumberType.PERSONAL_NUMBER, "personal_number"), (PhoneNumberType.PAGER, "pager"),
    (PhoneNumberType.UAN, "uan"), (PhoneNumberType.VOICEMAIL, "voicemail"),
)
_Desc = tuple[tuple[int, ...], Callable[[str], object]] | None  # (possible lengths, pattern's fullmatch)


def _desc(desc: object) -> _Desc:
    """A PhoneNumberDesc as _is_number_matching_desc reads it; None: matches nothing."""
    pattern = getattr(desc, "national_number_pattern", None) if desc is not None else None
    if not pattern:
        return None
    return tuple(desc.possible_length or ()), re.compile(pattern).fullmatch  # type: ignore[attr-defined]


@lru_cache(maxsize=512)
def _type_table(region: str) -> tuple[_Desc, tuple[tuple[int, _Desc], ...], _Desc, _Desc, bool] | None:
    """A region's type descriptions, compiled once: (general, ordered special types, fixed line, mobile,
    same mobile and fixed pattern); None when phonenumbers has no metadata for it."""
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None:
        return None
    ordered = tuple((kind, d) for kind, name in _TYPE_ORDER if (d := _desc(getattr(meta, name))) is not None)
    return (_desc(meta.general_desc), ordered, _desc(meta.fixed_line), _desc(meta.mobile),
            bool(meta.same_mobile_and_fixed_line_pattern))


def _matches(nsn: str, desc: _Desc) -> bool:
    if desc is None:
        return False
    lengths, fullmatch = desc
    return (not lengths or len(nsn) in lengths) and fullmatch(nsn) is not None


def number_type(number: phonenumbers.PhoneNumber, region: str | None) -> int:
    """phonenumbers.number_type, same answer (tests/test_contacts_parsing.py compares them over generated
    numbers), without its per-call overhead: region_code_for_number is passed in (the caller needs it too),
    the descriptions are looked up and compiled once per region (a third of an import's CPU was here).
    Non-geographic numbers ("001") are left to phonenumbers (their metadata is keyed by calling code)."""
    if region == REGION_CODE_FOR_NON_GEO_ENTITY:
        return phonenumbers.number_type(number)
    nsn = phonenumbers.national_significant_number(number) if number.italian_leading_zero \
        else str(number.national_number)
    return _kind(nsn, region)


def _kind(nsn: str, region: str | None) -> int:
    """number_type of a national significant number in a geographic region."""
    table = _type_table(region) if region else None
    if table is None:
        return PhoneNumberType.UNKNOWN
    general, ordered, fixed, mobile, same = table
    if not _matches(nsn, general):
        return PhoneNumberType.UNKNOWN
    for kind, desc in ordered:
        if _matches(nsn, desc):
            return kind
    if _matches(nsn, fixed):
        if same or _matches(nsn, mobile):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return PhoneNumberType.FIXED_LINE
    if not same and _matches(nsn, mobile):
        return PhoneNumberType.MOBILE
    return PhoneNumberType.UNKNOWN


def region_of(number: phonenumbers.PhoneNumber) -> str | None:
    """phonenumbers.region_code_for_number, without its call for the one-region calling codes (most)."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(number.country_code)
    if regions is not None and len(regions) == 1:
        return regions[0]
    return phonenumbers.region_code_for_number(number)


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


def place(e164: str, number: phonenumbers.PhoneNumber, kind: int,
          region: str | None = None) -> tuple[str, str | None, tuple[str, ...]]:
    """(country, subdivision, zones) with the conventions and data of rules.geo (jurisdiction_for_number,
    zones_for_number), from the already parsed number: rules.geo parses again, which would double the
    cost of an import. tests/test_contacts_parsing.py checks both agree. `region`: region_of(number), when
    the caller has it already."""
    region = region if region is not None else region_of(number)
    return _place(e164, number.country_code, str(number.national_number), kind, region)


def _place(e164: str, country_code: int, national: str, kind: int,
           region: str | None) -> tuple[str, str | None, tuple[str, ...]]:
    """place() from the calling code and the national number's digits (the fast path builds no PhoneNumber)."""
    region = region or ""
    if timezone.is_number_type_geographical(kind, country_code):
        found = set(_geo_zones(e164[1:]))
    else:
        found = set(_country_zones(country_code))
    zones = found - {timezone.UNKNOWN_TIMEZONE}
    country, subdivision = region, None
    area = geo.nanp_area_codes().get(national[:3]) if country_code == 1 else None
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
    split = _fast_split(digits, region) if _SIMPLE.match(digits) else None
    if split is not None:
        code, nsn = split
        regions = COUNTRY_CODE_TO_REGION_CODE[code]
        where = regions[0] if len(regions) == 1 else \
            phonenumbers.region_code_for_number(phonenumbers.PhoneNumber(country_code=code, national_number=int(nsn)))
        kind = _kind(nsn, where)
        if kind != PhoneNumberType.UNKNOWN:
            # _fast_split never keeps a leading zero of the national number: E.164 is +CC and the number's digits
            e164 = f"+{code}{nsn}"
            country, subdivision, zones = _place(e164, code, nsn, kind, where)
            return Phone(e164, LINE_TYPES.get(kind, "other"), zones, country, subdivision)
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
    region_found = region_of(number)
    kind = number_type(number, region_found)
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
    return _phone(number, kind, extension, region=region_found)


def _phone(number: phonenumbers.PhoneNumber, kind: int, extension: str | None, e164: str = "",
           region: str | None = None) -> Phone:
    e164 = e164 or phonenumbers.format_number(number, PhoneNumberFormat.E164)
    country, subdivision, zones = place(e164, number, kind, region)
    return Phone(e164=e164, line_type=LINE_TYPES.get(kind, "other"), timezones=zones, country=country,
                 subdivision=subdivision, extension=extension)
