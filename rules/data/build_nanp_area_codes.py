"""Rebuild rules/data/nanp_area_codes.csv from the phonenumbers package's own data.

Run by hand after upgrading phonenumbers: `python rules/data/build_nanp_area_codes.py`.
The gate reads only the CSV (data a reviewer can diff), never this script.

Columns: area_code, country (ISO 3166-1), subdivision (US state / CA province code, or empty),
zones (every IANA zone any prefix of the area code maps to, space separated). An area code that
spans two zones lists both: the gate uses the union, because a mobile number keeps its area code
when its owner moves within the area (and often beyond it).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import phonenumbers
from phonenumbers.geodata import GEOCODE_DATA
from phonenumbers.tzdata import TIMEZONE_DATA

US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA", "Colorado": "CO",
    "Connecticut": "CT", "Delaware": "DE", "Washington D.C.": "DC", "Washington DC": "DC", "Florida": "FL",
    "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO",
    "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ",
    "New Mexico": "NM", "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH",
    "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA",
    "Washington": "WA", "Washington State": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
}
CA_PROVINCES = {
    "Alberta": "AB", "British Columbia": "BC", "Manitoba": "MB", "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL", "Newfoundland": "NL", "Nova Scotia": "NS", "Ontario": "ON",
    "Prince Edward Island": "PE", "British Colombia": "BC", "Quebec": "QC", "Saskatchewan": "SK", "Yukon": "YT",
    "Northwest Territories": "NT", "Nunavut": "NU", "Yukon Territory": "YT",
    "Nova Scotia/Prince Edward Island": "NS", "Northwest Territories/Nunavut/Yukon": "NT",
    "Yukon/Northwest Territories/Nunavut": "NT",
}
ALL_CODES = set(US_STATES.values()) | set(CA_PROVINCES.values())


def subdivision(npa: str, country: str) -> str:
    names = US_STATES if country == "US" else CA_PROVINCES
    top = GEOCODE_DATA.get("1" + npa, {}).get("en", "")
    if top in names:
        return names[top]
    m = re.search(r",\s*([A-Z]{2})$", top)
    if m and m.group(1) in ALL_CODES:
        return m.group(1)
    votes: dict[str, int] = {}
    for key, desc in GEOCODE_DATA.items():
        if key.startswith("1" + npa) and len(key) > 4:
            m = re.search(r",\s*([A-Z]{2})$", desc.get("en", ""))
            code = m.group(1) if m else names.get(desc.get("en", ""))
            if code in ALL_CODES:
                votes[code] = votes.get(code, 0) + 1
    return max(votes, key=lambda c: votes[c]) if votes else ""


def main() -> None:
    rows = []
    for npa in range(200, 1000):
        code = str(npa)
        zones = sorted({z for key, zs in TIMEZONE_DATA.items() if key.startswith("1" + code) for z in zs}
                       - {"Etc/Unknown"})
        region = None
        for line in ("2345678", "5550100", "3456789", "7654321"):
            number = phonenumbers.parse("+1" + code + line)
            if phonenumbers.is_valid_number(number):
                region = phonenumbers.region_code_for_number(number)
                break
        if region is None or not zones:
            continue
        sub = subdivision(code, region) if region in ("US", "CA") else ""
        rows.append((code, region, sub, " ".join(zones)))
    out = Path(__file__).with_name("nanp_area_codes.csv")
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("area_code", "country", "subdivision", "zones"))
        writer.writerows(rows)
    print(f"{len(rows)} area codes -> {out}")


if __name__ == "__main__":
    main()
