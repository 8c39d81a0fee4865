"""Input formats of the registry importers: one line of a file -> (action, E.164 integer) or LineError.

Pure code, no I/O. Every importer reads text lines; blank lines and lines starting with `#` are skipped.
Inside a number, spaces, dots, dashes, parentheses and tabs are ignored ("01 45.67-89 01").

National formats (`us_dnc`, `dncl`, `bloctel`, `tps`, `ctps`): one number per line, in the national form
of the registry's country or in international form ("+33...", "0033..."):
  - NANP (us_dnc, dncl; +1): 10 digits "2125551234", "1" + 10 digits, or the FTC's area-code form
    "212,5551234". Area code and exchange must start with 2-9.
  - France (bloctel; +33): "0" + 9 digits, "+33" + 9 digits. The overseas departments' national
    prefixes (0262, 0590, 0694 ...) map to their own country codes (+262, +590, +594, +596).
  - UK (tps, ctps; +44): "0" + 9 or 10 digits, or "+44" + 9 or 10 digits.
  The plain forms are decoded directly (10 million lines in seconds); any other form made only of digits,
  "+", spaces and punctuation is handed to phonenumbers for the registry's country, and the result must
  pass the same checks.
Change files (`--delta`): each line carries an action field, first or last, separated by "," ";" tab,
"|" or a space: `A` / `ADD` adds the number, `D` / `DEL` / `DELETE` removes it ("A,2125551234",
"212,5551234,D"). One optional date field (2026-11-23, 11/23/2026 or 20261123) is accepted and ignored.
When a number appears several times in one change file, its last line wins.
Generic CSV (`csv`): a header row with a `phone` column, an optional `country` column (ISO 3166 alpha-2,
e.g. FR) and, for change files, an `action` column (values as above). A number in international form
needs no country; a national one takes the row's country, else the importer's default country.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers

ADD = True
DELETE = False

# Prefixes of French national numbers (after the trunk 0) that belong to overseas departments with their
# own country code. Data, not logic: ARCEP's plan; checked against phonenumbers in the tests.
FR_OVERSEAS: dict[bytes, int] = {
    b"262": 262, b"263": 262, b"269": 262, b"639": 262, b"692": 262, b"693": 262,  # Réunion, Mayotte
    b"590": 590, b"690": 590, b"691": 590,  # Guadeloupe, Saint-Martin, Saint-Barthélemy
    b"594": 594, b"694": 594,  # Guyane
    b"596": 596, b"696": 596, b"697": 596,  # Martinique
}

_OVERSEAS_BY_PREFIX: dict[int, int] = {int(prefix): cc for prefix, cc in FR_OVERSEAS.items()}


def overseas_alias(number: int) -> int | None:
    """The other E.164 spelling of a French overseas number, else None.

    Bloctel numbers such as 0262 12 34 56 are stored as +262262123456 (their real country code), but a
    contact normalised with region FR reads +33262123456. Lookups try both, so either spelling is found."""
    if 33_000_000_000 <= number < 34_000_000_000:
        nsn = number - 33_000_000_000
        cc = _OVERSEAS_BY_PREFIX.get(nsn // 1_000_000)
        return cc * 1_000_000_000 + nsn if cc else None
    cc, nsn = divmod(number, 1_000_000_000)
    if cc in (262, 590, 594, 596) and _OVERSEAS_BY_PREFIX.get(nsn // 1_000_000) == cc:
        return 33_000_000_000 + nsn
    return None


_IGNORED_IN_NUMBER = b" .-()\t"
_FIELD_SPLIT = re.compile(rb"[,;\t|]")
_MARKERS: dict[bytes, bool] = {b"a": ADD, b"add": ADD, b"d": DELETE, b"del": DELETE, b"delete": DELETE}
_DATE = re.compile(rb"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4}|\d{8}")
_NUMBER_CHARS = re.compile(r"^[0-9+ .\-()/\t]+$")
_BOM = b"\xef\xbb\xbf"


class LineError(ValueError):
    """A malformed line. str() says what is wrong without echoing the number."""


@dataclass(frozen=True)
class NumberingPlan:
    """How one country's numbers look: decodes a number field to its E.164 integer."""

    region: str  # ISO code given to phonenumbers
    country_codes: tuple[int, ...]  # accepted in international form (first is the main one)
    trunk: bytes  # national prefix ("0"), or b"" when none
    check: Callable[[int, bytes], int]  # (country code, national significant number) -> E.164 integer

    def number(self, field: bytes) -> int:
        try:
            return self._plain(field)
        except LineError:
            stripped = field.strip()
            if stripped.lstrip(b"+").isdigit():
                raise
            # A punctuated form the plain decoder does not know ("+33 (0)1 45 ..."): phonenumbers decides.
            try:
                return self._with_phonenumbers(field)
            except LineError:
                pass
            raise

    def _plain(self, field: bytes) -> int:
        digits = field.strip().translate(None, _IGNORED_IN_NUMBER)
        if not digits:
            raise LineError("no number")
        if digits[:1] == b"+" and digits[1:].isdigit():
            return self._international(digits[1:], field)
        if digits.isdigit():
            if digits[:2] == b"00" and self.trunk == b"0":
                return self._international(digits[2:], field)
            if self.trunk and digits[: len(self.trunk)] == self.trunk:
                return self.check(self.country_codes[0], digits[len(self.trunk):])
            if not self.trunk:
                return self.check(self.country_codes[0], digits)
            raise LineError(f"national number must start with {self.trunk.decode()}")
        return self._with_phonenumbers(field)

    def _international(self, digits: bytes, field: bytes) -> int:
        for cc in self.country_codes:
            prefix = str(cc).encode()
            if digits.startswith(prefix):
                return self.check(cc, digits[len(prefix):])
        raise LineError(f"not a number of this registry's country (+{self.country_codes[0]})")

    def _with_phonenumbers(self, field: bytes) -> int:
        try:
            text = field.decode("ascii").strip()
        except UnicodeDecodeError:
            raise LineError("unexpected characters in number") from None
        if not _NUMBER_CHARS.match(text):
            raise LineError("unexpected characters in number")
        return phonenumbers_to_int(text, self.region, self)


def phonenumbers_to_int(text: str, region: str | None, plan: NumberingPlan | None = None) -> int:
    """Parse with phonenumbers; the number must be possible (full length) and pass its plan's checks."""
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise LineError("not a phone number") from None
    if phonenumbers.is_possible_number_with_reason(parsed) != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise LineError("wrong length for a phone number of its country")
    cc = parsed.country_code
    nsn = phonenumbers.national_significant_number(parsed).encode()
    if plan is not None and cc not in plan.country_codes:
        raise LineError(f"not a number of this registry's country (+{plan.country_codes[0]})")
    plan = plan or PLAN_BY_COUNTRY_CODE.get(cc)
    if plan is not None:
        return plan.check(cc, nsn)
    return int(str(cc).encode() + nsn)


def _nanp(cc: int, nsn: bytes) -> int:
    if len(nsn) != 10 or not nsn.isdigit():
        raise LineError(f"expected 10 digits (area code + number), got {len(nsn)}")
    if nsn[0] < 0x32 or nsn[3] < 0x32:  # NANP: NXX-NXX-XXXX, N = 2..9
        raise LineError("area code and exchange must start with 2-9")
    return 10_000_000_000 + int(nsn)


def _france(cc: int, nsn: bytes) -> int:
    if len(nsn) != 9 or not nsn.isdigit():
        raise LineError(f"expected 9 digits after 0 or +33, got {len(nsn)}")
    if nsn[0] == 0x30:
        raise LineError("French number cannot start with 00")
    overseas = FR_OVERSEAS.get(nsn[:3])
    if cc == 33:
        cc = overseas or 33
    elif cc != overseas:
        raise LineError(f"number is not in the +{cc} numbering plan")
    return cc * 1_000_000_000 + int(nsn)


def _uk(cc: int, nsn: bytes) -> int:
    if len(nsn) not in (9, 10) or not nsn.isdigit():
        raise LineError(f"expected 9 or 10 digits after 0 or +44, got {len(nsn)}")
    if nsn[0] == 0x30:
        raise LineError("UK number cannot start with 00")
    return 44 * 10 ** len(nsn) + int(nsn)


class _NanpPlan(NumberingPlan):
    """NANP numbers are 10 digits; the trunk "1" is optional (an 11-digit line starting with 1)."""

    def _plain(self, field: bytes) -> int:
        digits = field.strip().translate(None, _IGNORED_IN_NUMBER)
        if digits.isdigit():
            if len(digits) == 11 and digits[:1] == b"1":
                digits = digits[1:]
            return _nanp(1, digits)
        return super()._plain(field)


NANP = _NanpPlan("US", (1,), b"1", _nanp)
FRANCE = NumberingPlan("FR", (33, 262, 590, 594, 596), b"0", _france)
UK = NumberingPlan("GB", (44,), b"0", _uk)

PLAN_BY_COUNTRY_CODE: dict[int, NumberingPlan] = {1: NANP, 33: FRANCE, 44: UK}
PLAN_BY_REGION: dict[str, NumberingPlan] = {"US": NANP, "CA": NANP, "FR": FRANCE, "GB": UK, "UK": UK}


def _split_action(fields: list[bytes], delta: bool) -> tuple[bool, list[bytes]]:
    if not delta:
        return ADD, fields
    if len(fields) == 1:  # "A 2125551234", "0145678901 D": the action may also be separated by a space
        head, _, tail = fields[0].strip().partition(b" ")
        rest, _, last = fields[0].strip().rpartition(b" ")
        if tail and head.lower() in _MARKERS:
            fields = [head, tail]
        elif rest and last.lower() in _MARKERS:
            fields = [rest, last]
    if len(fields) >= 2:
        dated = False
        if len(fields) >= 3:  # "212,5551234,A,2026-11-23", "20261123,D,2125551234": drop the date at an end first
            if _DATE.fullmatch(fields[-1].strip()):
                fields, dated = fields[:-1], True
            elif _DATE.fullmatch(fields[0].strip()):
                fields, dated = fields[1:], True
        first, last = fields[0].strip().lower(), fields[-1].strip().lower()
        if first in _MARKERS:
            fields = fields[1:]
            action = _MARKERS[first]
        elif last in _MARKERS:
            fields = fields[:-1]
            action = _MARKERS[last]
        else:
            raise LineError("change line needs an action field A or D (first or last)")
        dates = [] if dated else [f for f in fields if _DATE.fullmatch(f.strip())]
        if dates and len(fields) > 1:
            fields = [f for f in fields if f is not dates[-1]]
        return action, fields
    raise LineError("change line needs an action field A or D (first or last)")


class NationalLineParser:
    """Lines of a national registry file (see the module docstring)."""

    def __init__(self, plan: NumberingPlan, area_code_form: bool = False) -> None:
        self.plan = plan
        self.area_code_form = area_code_form  # FTC "NPA,NUMBER"

    def parse(self, raw: bytes, delta: bool) -> tuple[bool, int] | None:
        line = raw.strip()
        if line[:3] == _BOM:
            line = line[3:].strip()
        if not line or line[:1] == b"#":
            return None
        if not delta and line.isdigit() and len(line) == 10 and self.plan is NANP:
            return ADD, _nanp(1, line)  # the hot path of a 250-million-line FTC file
        fields = _FIELD_SPLIT.split(line) if _FIELD_SPLIT.search(line) else [line]
        action, fields = _split_action(fields, delta)
        if len(fields) == 1:
            return action, self.plan.number(fields[0])
        if len(fields) == 2 and self.area_code_form:
            npa, rest = fields[0].strip(), fields[1].strip()
            if len(npa) == 3 and npa.isdigit() and len(rest) == 7 and rest.isdigit():
                return action, self.plan.number(npa + rest)
            raise LineError("area-code form must be NPA (3 digits), NUMBER (7 digits)")
        raise LineError(f"expected one number per line, got {len(fields)} fields")


class CsvLineParser:
    """A CSV file with a header row: `phone`, optional `country`, optional `action` (change files)."""

    def __init__(self, default_region: str | None = None) -> None:
        self.default_region = default_region.upper() if default_region else None
        self.columns: dict[str, int] | None = None

    def parse(self, raw: bytes, delta: bool) -> tuple[bool, int] | None:
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise LineError("not UTF-8 text") from None
        text = text.lstrip("\ufeff")
        if not text or text.startswith("#"):
            return None
        try:
            row = next(csv.reader([text]))
        except (csv.Error, StopIteration):
            raise LineError("not a CSV row") from None
        if self.columns is None:
            names = [name.strip().lower() for name in row]
            if "phone" not in names:
                raise HeaderError("CSV header must name a `phone` column")
            if delta and "action" not in names:
                raise HeaderError("a CSV change file needs an `action` column (A or D)")
            self.columns = {name: i for i, name in enumerate(names)}
            return None
        cols = self.columns
        if len(row) != len(cols):
            raise LineError(f"expected {len(cols)} fields, got {len(row)}")
        action = ADD
        if delta:
            marker = row[cols["action"]].strip().lower().encode()
            if marker not in _MARKERS:
                raise LineError("action must be A (add) or D (delete)")
            action = _MARKERS[marker]
        phone = row[cols["phone"]].strip()
        region = row[cols["country"]].strip().upper() if "country" in cols else ""
        region = region or self.default_region or ""
        if not phone:
            raise LineError("empty phone")
        if not _NUMBER_CHARS.match(phone):
            raise LineError("unexpected characters in phone")
        if phone.startswith("+"):
            return action, phonenumbers_to_int(phone, None)
        if not region:
            raise LineError("national number without a country (add a country column or --country)")
        plan = PLAN_BY_REGION.get(region)
        if plan is not None:
            return action, plan.number(phone.encode())
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise LineError("unknown country code (expected ISO 3166 alpha-2)")
        return action, phonenumbers_to_int(phone, region)


class HeaderError(Exception):
    """The file as a whole is unusable (e.g. a CSV without a phone column): the load is refused."""


@dataclass(frozen=True)
class RegistryFormat:
    key: str
    description: str
    make_parser: Callable[[str | None], NationalLineParser | CsvLineParser]


FORMATS: dict[str, RegistryFormat] = {
    "us_dnc": RegistryFormat(
        "us_dnc", "US National DNC: 10-digit numbers or NPA,NUMBER; +1", lambda _c: NationalLineParser(NANP, True)
    ),
    "dncl": RegistryFormat(
        "dncl", "Canada DNCL: 10-digit numbers or NPA,NUMBER; +1", lambda _c: NationalLineParser(NANP, True)
    ),
    "bloctel": RegistryFormat(
        "bloctel", "France Bloctel: 0XXXXXXXXX or +33; one a line", lambda _c: NationalLineParser(FRANCE)
    ),
    "tps": RegistryFormat("tps", "UK TPS: 0 + 9/10 digits or +44; one a line", lambda _c: NationalLineParser(UK)),
    "ctps": RegistryFormat("ctps", "UK CTPS: 0 + 9/10 digits or +44; one a line", lambda _c: NationalLineParser(UK)),
    "csv": RegistryFormat("csv", "generic CSV: phone[,country][,action] header", CsvLineParser),
}


def format_for(registry: str, explicit: str | None = None) -> RegistryFormat:
    """The importer format: the explicit one, else the registry's own (us_dnc, bloctel ...), else CSV."""
    key = explicit or (registry if registry in FORMATS else "csv")
    if key not in FORMATS:
        raise KeyError(f"unknown format {key!r} (known: {', '.join(FORMATS)})")
    return FORMATS[key]
