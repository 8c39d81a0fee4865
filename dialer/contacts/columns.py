"""Which column is what: header auto-mapping (English and French), mapping files, header-less files.

The alias table is data (edit HEADER_ALIASES, documented in docs/contacts.md). Header names are
compared folded: lower case, accents removed, anything but letters and digits dropped, so
"Téléphone portable", "TELEPHONE_PORTABLE" and "telephone-portable" are the same name.
Unmapped columns are dropped (data minimization) unless the mapping file lists them in "keep".
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from dialer.contacts.sniff import FileError

# Canonical field -> folded header names. Several phone columns may exist in one file; each is a
# phone of the contact, in column order (the first valid one is the primary number).
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "phone": (
        "phone", "phonenumber", "phone1", "phone2", "phone3", "telephone", "telephone1", "telephone2", "tel",
        "tel1", "tel2", "telfixe", "telephonefixe", "fixe", "mobile", "mobilephone", "mobilenumber", "cell",
        "cellphone", "portable", "telportable", "telephoneportable", "gsm", "numero", "numerodetelephone",
        "numerotelephone", "msisdn", "homephone", "workphone", "businessphone", "telephonemobile", "telmobile",
    ),
    "first_name": ("firstname", "first", "givenname", "forename", "prenom"),
    "last_name": ("lastname", "last", "surname", "familyname", "nom", "nomdefamille"),
    "full_name": ("name", "fullname", "nomcomplet", "contact", "contactname"),
    "email": ("email", "emailaddress", "mail", "courriel", "adressemail", "adresseemail", "email1"),
    "postal_code": ("postalcode", "postcode", "zip", "zipcode", "codepostal", "cp"),
    "city": ("city", "town", "ville", "commune", "localite"),
    "country": ("country", "pays", "countrycode", "codepays"),
    "state": ("state", "region", "province", "stateprovince", "departement"),
    "external_id": ("id", "externalid", "customerid", "clientid", "reference", "ref", "crmid", "idclient"),
    "consent_given_at": ("consentgivenat", "consentdate", "dateconsentement", "consentementle"),
    "consent_source": ("consentsource", "sourceconsentement", "sourceduconsentement"),
    "consent_evidence": ("consentevidence", "consentreference", "preuveconsentement", "preuveduconsentement"),
    "consent_purpose": ("consentpurpose", "finaliteconsentement", "finalite"),
    "consent_written": ("consentwritten", "writtenconsent", "consentementecrit"),
}
FIELDS = frozenset(HEADER_ALIASES)
_BY_ALIAS = {alias: name for name, aliases in HEADER_ALIASES.items() for alias in aliases}
_PHONE_LIKE = re.compile(r"^\s*'?\+?[\d\s().\-/]{6,}\s*$")
_KEEP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def fold(name: str) -> str:
    text = unicodedata.normalize("NFKD", name.strip().lstrip("\ufeff")).lower()
    return "".join(c for c in text if c.isalnum() and not unicodedata.combining(c))


@dataclass(frozen=True)
class Column:
    index: int  # 0-based position in the record
    name: str  # header text, or "#3" (1-based position) in header-less files
    field: str  # canonical field, or "keep:<name>" for a kept column


@dataclass(frozen=True)
class ColumnPlan:
    has_header: bool
    width: int  # columns in the header (or in the first row of a header-less file)
    columns: tuple[Column, ...]
    dropped: tuple[str, ...] = ()  # header names not imported (data minimization)

    @property
    def phone_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.field == "phone")


@dataclass
class Mapping:
    """A mapping file. {"columns": {"Header or #N": "field" | "ignore"}, "keep": [...], "header": bool,
    "auto": bool (default true: auto-map the columns not named in "columns")}."""

    columns: dict[str, str] = field(default_factory=dict)
    keep: list[str] = field(default_factory=list)
    header: bool | None = None
    auto: bool = True

    def to_json(self) -> str:
        return json.dumps(
            {"columns": self.columns, "keep": self.keep, "header": self.header, "auto": self.auto}, sort_keys=True
        )


def parse_mapping(doc: object, where: str = "mapping") -> Mapping:
    if not isinstance(doc, dict):
        raise FileError("bad_mapping", f"{where}: expected a JSON object")
    unknown = set(doc) - {"columns", "keep", "header", "auto"}
    if unknown:
        raise FileError("bad_mapping", f"{where}: unknown key {sorted(unknown)[0]!r}")
    columns = doc.get("columns", {})
    if not isinstance(columns, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
        raise FileError("bad_mapping", f"{where}: \"columns\" must map column names to field names")
    for name, target in columns.items():
        if target not in FIELDS and target != "ignore" and not target.startswith("keep:"):
            raise FileError("bad_mapping", f"{where}: column {name!r} -> {target!r}: unknown field")
        if target.startswith("keep:") and not target[5:].strip():
            raise FileError("bad_mapping", f"{where}: column {name!r} -> {target!r}: name the kept column "
                            "(\"keep:segment\"), or list it in \"keep\"")
    keep = doc.get("keep", [])
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise FileError("bad_mapping", f"{where}: \"keep\" must be a list of column names")
    header = doc.get("header")
    if header is not None and not isinstance(header, bool):
        raise FileError("bad_mapping", f"{where}: \"header\" must be true or false")
    auto = doc.get("auto", True)
    if not isinstance(auto, bool):
        raise FileError("bad_mapping", f"{where}: \"auto\" must be true or false")
    return Mapping(columns=dict(columns), keep=list(keep), header=header, auto=auto)


def load_mapping(path: str | Path) -> Mapping:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FileError("bad_mapping", f"mapping file {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileError("bad_mapping", f"mapping file {path}: invalid JSON ({exc})") from None
    return parse_mapping(doc, f"mapping file {path}")


def looks_like_data(record: list[str]) -> bool:
    """A first row is data, not a header, when a cell looks like a phone number and none is a known name."""
    if any(fold(cell) in _BY_ALIAS for cell in record):
        return False
    return any(_PHONE_LIKE.match(cell) and sum(c.isdigit() for c in cell) >= 6 for cell in record)


def _kept_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", fold(name) if not _KEEP_NAME.match(name) else name)
    return cleaned[:64] or "column"


def plan_columns(first: list[str], mapping: Mapping | None, sample: list[list[str]] | None = None) -> ColumnPlan:
    """Decide which column is which from the first record (header or data) and the mapping."""
    mapping = mapping or Mapping()
    has_header = mapping.header if mapping.header is not None else not looks_like_data(first)
    if has_header:
        names = [cell.strip().lstrip("\ufeff") for cell in first]
    else:
        names = [f"#{i + 1}" for i in range(len(first))]
    explicit: dict[int, str] = {}
    for key, target in mapping.columns.items():
        positions = [i for i, n in enumerate(names) if n == key or fold(n) == fold(key)] if has_header else []
        if not positions and re.fullmatch(r"#?\d+", key.strip()):
            index = int(key.strip().lstrip("#")) - 1
            positions = [index] if 0 <= index < len(names) else []
        if not positions:
            raise FileError("bad_mapping", f"mapping names column {key!r}, which the file does not have")
        if len(positions) > 1:
            raise FileError(
                "duplicate_header", f"column {key!r} appears {len(positions)} times (positions "
                f"{', '.join(str(p + 1) for p in positions)}): map it by position, e.g. \"#{positions[0] + 1}\""
            )
        explicit[positions[0]] = target
    keep_keys = {fold(k) for k in mapping.keep}
    columns: list[Column] = []
    dropped: list[str] = []
    for index, name in enumerate(names):
        if index in explicit:
            target = explicit[index]
        elif has_header and (fold(name) in keep_keys or name in mapping.keep):
            target = f"keep:{_kept_name(name)}"
        elif not has_header and (name in mapping.keep):
            target = f"keep:col{index + 1}"
        elif mapping.auto and has_header:
            target = _BY_ALIAS.get(fold(name), "ignore")
        else:
            target = "ignore"
        if target == "ignore":
            dropped.append(name)
            continue
        columns.append(Column(index, name, target))
    if not has_header and mapping.auto and not any(c.field == "phone" for c in columns):
        # Header-less: the columns whose first-row cells look like phone numbers are the phones.
        rows = [first, *(sample or [])]
        for index, _ in enumerate(names):
            if index in explicit:
                continue
            cells = [r[index] for r in rows if index < len(r) and r[index].strip()]
            if cells and sum(bool(_PHONE_LIKE.match(c)) for c in cells) >= 0.8 * len(cells):
                columns.append(Column(index, names[index], "phone"))
                if f"#{index + 1}" in dropped:
                    dropped.remove(f"#{index + 1}")
        columns.sort(key=lambda c: c.index)
    # Duplicate header names: refused when the name is imported (which one would be the phone?).
    if has_header:
        used = {fold(c.name) for c in columns if c.index not in explicit}
        for name in used:
            positions = [i for i, n in enumerate(names) if fold(n) == name]
            if len(positions) > 1:
                raise FileError(
                    "duplicate_header", f"column {names[positions[0]]!r} appears {len(positions)} times (positions "
                    f"{', '.join(str(p + 1) for p in positions)}): rename one, or map them by position in a "
                    f"mapping file (\"#{positions[0] + 1}\": \"phone\")",
                )
    targets = [c.field for c in columns if c.field != "phone"]
    for target in set(targets):
        if targets.count(target) > 1:
            which = ", ".join(c.name for c in columns if c.field == target)
            raise FileError("duplicate_header", f"columns {which} all map to {target!r}: keep one (mapping file)")
    if not any(c.field == "phone" for c in columns):
        raise FileError(
            "no_phone_column", "no phone column found: name one phone/mobile/téléphone/portable, or map it "
            "in a mapping file ({\"columns\": {\"Your header\": \"phone\"}})",
        )
    return ColumnPlan(has_header, len(first), tuple(columns), tuple(dropped))
