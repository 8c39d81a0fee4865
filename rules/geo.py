"""Where a phone number is: its country and, for the North American Numbering Plan, its state or province.

`jurisdiction_for_number("+12125550100") -> ("US", "US-NY")`. Subdivisions are ISO 3166-2 codes.
For +1 the area code decides, from the data file rules/data/nanp_area_codes.csv (generated from the
phonenumbers geocoder, reviewed like any rule); US territories (PR, GU, VI, AS, MP) are country "US"
with their subdivision because US federal rules apply there. Elsewhere only the country is known
(subdivision None). An area code shared by several provinces (867, 902, 782) gives subdivision None:
callers apply the country-level rules. An unparseable number raises ValueError: never guess.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import phonenumbers

NANP_FILE = Path(__file__).with_name("data") / "nanp_area_codes.csv"


@lru_cache(maxsize=1)
def nanp_area_codes() -> dict[str, tuple[str, str | None]]:
    """area code (3 digits) -> (country, subdivision or None)."""
    table: dict[str, tuple[str, str | None]] = {}
    with NANP_FILE.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            table[row["area_code"]] = (row["country"], row["subdivision"] or None)
    return table




def jurisdiction_for_number(e164: str) -> tuple[str, str | None]:
    """(ISO country, ISO 3166-2 subdivision or None) for an E.164 number. ValueError if not E.164."""
    if not e164.startswith("+") or not e164[1:].isdigit():
        raise ValueError(f"not an E.164 number: {e164[:4]}…")
    if e164.startswith("+1") and len(e164) == 12:
        known = nanp_area_codes().get(e164[2:5])
        if known is not None:
            return known
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not an E.164 number: {exc}") from None
    region = phonenumbers.region_code_for_number(number)
    if region is None or region == "001":
        # Invalid number or non-geographic (satellite, international freephone): the calling code's main region.
        region = phonenumbers.region_code_for_country_code(number.country_code)
    if region in ("ZZ", "001", None):
        raise ValueError("no country for this calling code")
    return region, None
