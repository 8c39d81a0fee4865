"""Where a number or an address is: country, subdivision, candidate IANA time zones.

Pure lookups over shipped data (rules/data/*.csv), phonenumbers' own metadata and the tzdata
zone table. Everything is cached: these answers never change while the process runs.

Conventions:
- a jurisdiction is (country, subdivision | None): ("US", "FL"), ("CA", "QC"), ("FR", "57"), ("DE", None).
  French overseas departments dialled with their own country code (+590, +596, +594, +262) are France
  with the department as subdivision ("971" ...), as the law that applies there is French; likewise
  US territories in the NANP (Puerto Rico, US Virgin Islands, Guam...) are the US with the territory
  as subdivision.
- zones are IANA names, never offsets. When a place is ambiguous we return every zone it may be in:
  the gate allows a call only when it is lawful in all of them.
"""

from __future__ import annotations

import csv
import importlib.resources
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import phonenumbers
from phonenumbers import phonenumberutil as _pnu
from phonenumbers import timezone as pn_timezone
from phonenumbers.phonemetadata import PhoneMetadata

DATA = Path(__file__).with_name("data")
# Keep every compiled metadata pattern (phonenumbers' own option, in the pinned 9.0.43; older versions lack it):
# checking numbers of many regions otherwise recompiles patterns that fell out of the re module's small cache.
# Same answers, about a fifth less time per new number.
getattr(phonenumbers, "enable_pattern_cache", lambda: None)()

# Territories with their own calling code or region that are French departments.
FR_OVERSEAS = {"GP": "971", "MQ": "972", "GF": "973", "RE": "974", "YT": "976",
               "PM": "975", "BL": "977", "MF": "978"}
FR_DEPARTMENT_ZONES = {
    "971": "America/Guadeloupe", "972": "America/Martinique", "973": "America/Cayenne",
    "974": "Indian/Reunion", "975": "America/Miquelon", "976": "Indian/Mayotte",
    "977": "America/St_Barthelemy", "978": "America/Marigot",
}
# Countries whose subdivisions (states) have their own calling rules: where a number's state cannot be known and
# no address tells it, every subdivision's rules apply (the engine's "US-*").
STATE_LAW_COUNTRIES = ("US",)
# US territories have their own ISO codes and NANP area codes, but federal US law (TCPA, TSR) applies there.
US_TERRITORIES = ("PR", "VI", "GU", "AS", "MP")
# Canadian postal codes: the first letter names the province (X covers NT and NU).
CA_POSTAL_FIRST = {
    "A": "NL", "B": "NS", "C": "PE", "E": "NB", "G": "QC", "H": "QC", "J": "QC", "K": "ON", "L": "ON",
    "M": "ON", "N": "ON", "P": "ON", "R": "MB", "S": "SK", "T": "AB", "V": "BC", "X": "NT", "Y": "YT",
}


class InvalidNumber(ValueError):
    """The text is not a valid phone number (phonenumbers says so)."""


@dataclass(frozen=True)
class AreaCode:
    code: str
    country: str
    subdivision: str | None
    zones: tuple[str, ...]


# --- data tables ------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def nanp_area_codes() -> dict[str, AreaCode]:
    """NANP area code -> country, state/province and every zone its prefixes map to."""
    table = {}
    with (DATA / "nanp_area_codes.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            table[row["area_code"]] = AreaCode(row["area_code"], row["country"], row["subdivision"] or None,
                                               tuple(row["zones"].split()))
    return table


@lru_cache(maxsize=1)
def _zip3_states() -> dict[str, str]:
    table = {}
    with (DATA / "us_zip3_states.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            for n in range(int(row["zip3_from"]), int(row["zip3_to"]) + 1):
                table[f"{n:03d}"] = row["state"]
    return table


@lru_cache(maxsize=1)
def _subdivision_zones() -> dict[tuple[str, str], tuple[str, ...]]:
    """(country, state/province) -> the union of the zones of its area codes."""
    zones: dict[tuple[str, str], set[str]] = {}
    for area in nanp_area_codes().values():
        if area.subdivision:
            zones.setdefault((area.country, area.subdivision), set()).update(area.zones)
    return {key: tuple(sorted(value)) for key, value in zones.items()}


def subdivision_zones(country: str, subdivision: str) -> tuple[str, ...]:
    """The zones of a US state or Canadian province (the union of its area codes' zones); empty if unknown."""
    return _subdivision_zones().get((country.upper(), subdivision.upper()), ())


@lru_cache(maxsize=1)
def _country_zones() -> dict[str, tuple[str, ...]]:
    zones: dict[str, list[str]] = {}
    text = importlib.resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            fields = line.split("\t")
            zones.setdefault(fields[0], []).append(fields[2])
    return {k: tuple(sorted(v)) for k, v in zones.items()}


def country_zones(country: str) -> tuple[str, ...]:
    """Every IANA zone of a country (tzdata's zone.tab); empty if unknown."""
    return _country_zones().get(country.upper(), ())


# --- numbers ------------------------------------------------------------------------------------

def normalize(phone: str, country: str | None = None) -> str:
    """E.164 form of `phone` (national format accepted when `country` is given). Raises InvalidNumber."""
    e164, error = _normalize(phone, (country or "").upper() or None)
    if error is not None:
        raise InvalidNumber(error)
    return e164  # type: ignore[return-value]


@lru_cache(maxsize=65536)
def _normalize(phone: str, country: str | None) -> tuple[str | None, str | None]:
    # (e164, None) or (None, error): failures are cached too (an exception would not be)
    try:
        number = phonenumbers.parse(phone, country)
    except phonenumbers.NumberParseException as exc:
        return None, f"not a phone number: {exc}"
    parsed = _analyse(number)
    if not parsed.valid:
        return None, "not a valid phone number for its country"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if len(_PARSED) >= 4096:
        _PARSED.clear()
    _PARSED[e164] = parsed
    return e164, None


@dataclass(frozen=True)
class _Parsed:
    """A parsed number with its region and type, each worked out once. phonenumbers works them out again in every
    call that needs them (is_valid_number, region_code_for_number, time_zones_for_number: up to five matches of the
    number against its country's patterns for a +1 number, the costliest part of a new number); these are the same
    steps done once, with the same answers (phonenumbers 9.0: is_valid_number = is_valid_number_for_region(n,
    region_code_for_number(n)); number_type = the type helper on that region's metadata;
    tests/test_rules_geo.py compares them with the library's own functions)."""

    number: phonenumbers.PhoneNumber
    region: str | None
    type: int

    @property
    def valid(self) -> bool:
        if self.region is None or self.type == _UNKNOWN_TYPE:
            return False
        return (self.region == _NON_GEO or
                self.number.country_code == phonenumbers.country_code_for_valid_region(self.region))

    def time_zones(self) -> tuple[str, ...]:
        """pn_timezone.time_zones_for_number(number)."""
        if self.type == _UNKNOWN_TYPE:
            return tuple(pn_timezone._UNKNOWN_TIME_ZONE_LIST)
        if not phonenumbers.is_number_type_geographical(self.type, self.number.country_code):
            return tuple(pn_timezone._country_level_time_zones_for_number(self.number))
        return tuple(pn_timezone.time_zones_for_geographical_number(self.number))


_UNKNOWN_TYPE = phonenumbers.PhoneNumberType.UNKNOWN
_NON_GEO = phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY


def _analyse(number: phonenumbers.PhoneNumber) -> _Parsed:
    region = phonenumbers.region_code_for_number(number)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(number.country_code, region)
    if metadata is None:
        return _Parsed(number, region, _UNKNOWN_TYPE)
    nsn = phonenumbers.national_significant_number(number)
    return _Parsed(number, region, _pnu._number_type_helper(nsn, metadata))


# E.164 -> the number _normalize just parsed and validated: a new number's jurisdiction and zones come next, and
# parsing and validating it again from its E.164 form (the costliest part of a new number) would find the same.
_PARSED: dict[str, _Parsed] = {}


@lru_cache(maxsize=4096)
def _number(e164: str) -> _Parsed:
    """The parsed number of a valid E.164 string (raises InvalidNumber): parsed once for the jurisdiction and
    the zones, which a new number needs one after the other. Small: only that hand-over needs it."""
    parsed = _PARSED.pop(e164, None)
    return parsed if parsed is not None else _analyse(phonenumbers.parse(normalize(e164)))


@lru_cache(maxsize=65536)
def jurisdiction_for_number(e164: str) -> tuple[str, str | None]:
    """(country, subdivision | None) of a number: for +1 the state or province of its area code."""
    parsed = _number(e164)
    number = parsed.number
    region = parsed.region or ""
    if region in FR_OVERSEAS:
        return "FR", FR_OVERSEAS[region]
    if region in US_TERRITORIES:
        return "US", region
    if number.country_code == 1:
        area = nanp_area_codes().get(str(number.national_number)[:3])
        if area is not None:
            return area.country, area.subdivision
    return region, None


@lru_cache(maxsize=65536)
def zones_for_number(e164: str) -> tuple[str, ...]:
    """Candidate zones of a number: phonenumbers' zones for its prefix, plus, for +1, every zone its
    area code spans (a mobile keeps its number when its owner moves)."""
    parsed = _number(e164)
    number = parsed.number
    zones = set(parsed.time_zones()) - {"Etc/Unknown"}
    if number.country_code == 1:
        area = nanp_area_codes().get(str(number.national_number)[:3])
        if area is not None:
            zones.update(area.zones)
    if not zones:
        zones.update(country_zones(parsed.region or ""))
    return tuple(sorted(zones))


# --- addresses ------------------------------------------------------------------------------------

def fr_department(postal_code: str) -> str | None:
    """Department of a French postal code: "75011" -> "75", "97110" -> "971", "20000" -> "2A"."""
    code = postal_code.strip().replace(" ", "")
    if len(code) != 5 or not code.isdigit():
        return None
    if code.startswith("97") or code.startswith("98"):
        return code[:3]
    if code.startswith("20"):
        return "2A" if code[:3] in ("200", "201") else "2B"
    return code[:2]


def us_zip5(postal_code: str) -> str | None:
    """The 5-digit ZIP of a US postal code: "02134", "02134-1234" / "021341234" (ZIP+4), or a ZIP whose leading
    zero a spreadsheet dropped ("2134", "2134-1234": every ZIP under 10000 starts with 0, in New England, New
    Jersey, Puerto Rico...). Anything else is None: the gate does not guess a state from it."""
    code = postal_code.strip()
    head, _, plus4 = code.partition("-")
    if not plus4 and len(head) in (8, 9) and head.isdigit():  # ZIP+4 without its dash
        head, plus4 = head[:-4], head[-4:]
    if plus4 and not (len(plus4) == 4 and plus4.isdigit()):
        return None
    if not head.isdigit() or len(head) not in (4, 5):
        return None
    return head.zfill(5)


@lru_cache(maxsize=65536)
def address_jurisdiction(country: str, state: str | None = None, postal_code: str | None = None,
                         ) -> tuple[str, str | None]:
    """(country, subdivision | None) of an address. `state` wins; else derived from the postal code
    (US ZIP3 -> state, Canadian first letter -> province, French postal code -> department)."""
    country = country.upper()
    if country in US_TERRITORIES:
        return "US", country
    if country in FR_OVERSEAS:
        return "FR", FR_OVERSEAS[country]
    if state:
        return country, state.strip().upper()
    if postal_code:
        code = postal_code.strip().upper()
        if country == "US":
            zip5 = us_zip5(code)
            return country, _zip3_states().get(zip5[:3]) if zip5 else None
        if country == "CA" and code[:1] in CA_POSTAL_FIRST:
            return country, CA_POSTAL_FIRST[code[:1]]
        if country == "FR":
            return country, fr_department(code)
    return country, None


@lru_cache(maxsize=1)
def _known_subdivisions() -> dict[str, frozenset[str]]:
    """The subdivisions the gate can place an address in, for the countries whose rules depend on them."""
    areas = nanp_area_codes().values()
    us = {a.subdivision for a in areas if a.country == "US" and a.subdivision}
    ca = {a.subdivision for a in areas if a.country == "CA" and a.subdivision}
    fr = {f"{n:02d}" for n in range(1, 96) if n != 20} | {"2A", "2B"} | set(FR_OVERSEAS.values())
    return {
        "US": frozenset(us | set(_zip3_states().values()) | set(US_TERRITORIES)),
        "CA": frozenset(ca | set(CA_POSTAL_FIRST.values()) | {"NU"}),
        "FR": frozenset(fr),
    }


def known_subdivision(country: str, subdivision: str | None) -> bool:
    """Whether an address's subdivision is one the gate knows, in a country whose rules depend on it (US states,
    Canadian provinces, French departments). Other countries: always true (their packs have no state rules)."""
    known = _known_subdivisions().get(country.upper())
    return known is None or subdivision in known


@lru_cache(maxsize=65536)
def zones_for_address(country: str, state: str | None = None, postal_code: str | None = None,
                      ) -> tuple[str, ...]:
    """Candidate zones of an address; empty when the address does not narrow it below its country."""
    country, sub = address_jurisdiction(country, state, postal_code)
    if sub is None:
        return ()
    if country == "US" and sub in US_TERRITORIES:
        return country_zones(sub)
    if country in ("US", "CA"):
        return _subdivision_zones().get((country, sub), country_zones(country))
    if country == "FR":
        return (FR_DEPARTMENT_ZONES.get(sub, "Europe/Paris"),)
    zones = country_zones(country)
    return zones if len(zones) == 1 else ()
