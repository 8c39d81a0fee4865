"""Regenerate nanp_area_codes.csv from the phonenumbers geocoder (run by hand when phonenumbers updates).

    python rules/data/make_nanp_area_codes.py > rules/data/nanp_area_codes.csv

The CSV is the data the rules read (`rules/geo.py`); review its diff like any rule change: a lawyer
may need to know that an area code moved. Rows whose geocoder description names several provinces
(867: Northwest Territories/Nunavut/Yukon; 902/782: Nova Scotia/Prince Edward Island) get an empty
subdivision and list the candidates, so callers apply the country-level (strictest) rules.
"""

from __future__ import annotations

import csv
import sys

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers.geodata import GEOCODE_DATA

US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California", "CO": "Colorado",
    "CT": "Connecticut", "DE": "Delaware", "DC": "Washington D.C.", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas",
    "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts",
    "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri", "MT": "Montana",
    "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico",
    "NY": "New York", "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
    "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington State", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
}
CA_PROVINCES = {
    "AB": "Alberta", "BC": "British Columbia", "MB": "Manitoba", "NB": "New Brunswick",
    "NL": "Newfoundland and Labrador", "NS": "Nova Scotia", "NT": "Northwest Territories", "NU": "Nunavut",
    "ON": "Ontario", "PE": "Prince Edward Island", "QC": "Quebec", "SK": "Saskatchewan", "YT": "Yukon",
}
ALIASES = {"British Colombia": "CA-BC"}  # a spelling found in the geocoder data
# US territories have their own phonenumbers regions; for US law they are US subdivisions.
US_TERRITORIES = {"PR": "US-PR", "GU": "US-GU", "VI": "US-VI", "AS": "US-AS", "MP": "US-MP"}


def subdivisions(description: str) -> list[str]:
    by_name = {name: f"US-{code}" for code, name in US_STATES.items()}
    by_name.update({name: f"CA-{code}" for code, name in CA_PROVINCES.items()})
    by_name.update(ALIASES)
    if ", " in description:  # "New York, NY", "Toronto, ON"
        code = description.rsplit(", ", 1)[1]
        if code in US_STATES:
            return [f"US-{code}"]
        if code in CA_PROVINCES:
            return [f"CA-{code}"]
    return [by_name[part] for part in description.split("/") if part in by_name]


def rows() -> list[tuple[str, str, str, str]]:
    out = []
    leading = {}
    for region in phonenumbers.region_codes_for_country_code(1):
        pattern = PhoneMetadata.metadata_for_region(region).leading_digits
        for alternative in (pattern or "").split("|"):
            if alternative.isdigit() and len(alternative) == 3:
                leading[alternative] = region
    for npa in range(200, 1000):
        key = f"1{npa}"
        npa_s = str(npa)
        if npa_s in leading:
            region = leading[npa_s]
            if region in US_TERRITORIES:
                out.append((npa_s, "US", US_TERRITORIES[region], region))
            else:
                out.append((npa_s, region, "", region))
            continue
        description = GEOCODE_DATA.get(key, {}).get("en")
        if not description:
            continue
        subs = subdivisions(description)
        if not subs:
            continue
        country = subs[0][:2]
        out.append((npa_s, country, subs[0] if len(subs) == 1 else "", " ".join(subs)))
    return out


def main() -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["area_code", "country", "subdivision", "candidates"])
    writer.writerows(rows())


if __name__ == "__main__":
    main()
