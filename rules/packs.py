"""Rule packs: one TOML file per jurisdiction, loaded and validated at start.

A pack is data a lawyer can read and change: every rule names its kind (from the fixed vocabulary the
engine implements, KINDS below), its parameters, its legal source and the period it is in force.
A malformed pack raises PackError naming the file and the field, e.g.
`rules/packs/fr.toml: rules[3].windows.mon[0]: expected "HH:MM-HH:MM"`.

Effective dates (`from` inclusive, `until` exclusive) may be TOML dates, read as local midnight in the
pack's `timezone` (the law's own clock), or TOML date-times with an offset.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from rules.caller_id import NUMBER_TYPES
from rules.model import AUDIENCES, DIALING_MODES, OUTCOMES, PURPOSES, VOICES, PackRef
from rules.time_windows import WEEKDAYS, parse_window, weekly_days

BUILTIN_DIR = Path(__file__).with_name("packs")
_JURISDICTION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
_E164_PREFIX = re.compile(r"^\+[1-9][0-9]{0,14}$")
_DURATION = re.compile(r"^(\d+)([dhm])$")
SCOPES = ("tenant", "campaign")


class PackError(ValueError):
    """A pack file is malformed. str(error) names the file and the field."""


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    source: str
    pack: str
    params: dict[str, Any]
    start: datetime | None = None  # `from`, inclusive
    end: datetime | None = None  # `until`, exclusive
    purposes: frozenset[str] | None = None  # None: every purpose
    audiences: frozenset[str] | None = None
    voices: frozenset[str] | None = None
    dialing: frozenset[str] | None = None  # dialing modes; a campaign whose mode is unknown (None) matches
    unconfirmed: bool = False
    configurable: bool = False

    def in_force(self, at: datetime) -> bool:
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)

    def applies_to(self, purpose: str, audience: str, voice: str, dialing: str | None = None) -> bool:
        return ((self.purposes is None or purpose in self.purposes)
                and (self.audiences is None or audience in self.audiences)
                and (self.voices is None or voice in self.voices)
                and (self.dialing is None or dialing is None or dialing in self.dialing))


@dataclass(frozen=True)
class Pack:
    id: str
    version: str
    jurisdiction: str  # "US", "US-FL", "FR" ...
    name: str
    timezone: str
    rules: tuple[Rule, ...]
    path: str = ""
    start: datetime | None = None
    end: datetime | None = None

    @property
    def ref(self) -> PackRef:
        return PackRef(self.id, self.version)

    def in_force(self, at: datetime) -> bool:
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)


@dataclass(frozen=True)
class PackSet:
    """All loaded packs, indexed by jurisdiction code ("US", "US-FL", "FR" ...)."""

    packs: tuple[Pack, ...]
    by_jurisdiction: dict[str, tuple[Pack, ...]] = field(default_factory=dict)
    _selection: dict[tuple, tuple[tuple[Pack, Rule], ...]] = field(default_factory=dict, compare=False, repr=False)
    # the engine's per-(place, campaign kind) evaluation plans for this pack set (rules.engine._plan)
    _plans: dict[tuple, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, packs: Iterable[Pack]) -> PackSet:
        ordered = tuple(sorted(packs, key=lambda p: (len(p.jurisdiction), p.jurisdiction, p.id)))
        index: dict[str, list[Pack]] = {}
        for pack in ordered:
            index.setdefault(pack.jurisdiction, []).append(pack)
        return cls(ordered, {k: tuple(v) for k, v in index.items()})

    @cached_property
    def _countries(self) -> frozenset[str]:
        return frozenset(code[:2] for code in self.by_jurisdiction)

    def countries(self) -> frozenset[str]:
        """Countries with at least one pack (others are UNSUPPORTED_JURISDICTION)."""
        return self._countries

    def for_jurisdictions(self, codes: Iterable[str]) -> tuple[Pack, ...]:
        """The packs of these codes. "US-*" (a US number whose state nobody can tell) stands for every
        subdivision of the country: all their packs apply (fail closed)."""
        found: list[Pack] = []
        for code in codes:
            if code.endswith("-*"):
                prefix = code[:-1]
                found.extend(p for p in self.packs if p.jurisdiction.startswith(prefix))
            else:
                found.extend(self.by_jurisdiction.get(code, ()))
        seen: set[int] = set()  # a pack once, even when "US-*" and "US-FL" both name it (packs are unhashable)
        return tuple(p for p in found if not (id(p) in seen or seen.add(id(p))))

    def select(self, codes: tuple[str, ...], purpose: str, audience: str, voice: str, dialing: str | None = None,
               ) -> tuple[tuple[Pack, Rule], ...]:
        """Every (pack, rule) of these jurisdictions that applies to such a campaign, whatever the date
        (memoized: the engine then keeps those in force at the instant)."""
        key = (codes, purpose, audience, voice, dialing)
        found = self._selection.get(key)
        if found is None:
            found = tuple((p, r) for p in self.for_jurisdictions(codes) for r in p.rules
                          if r.applies_to(purpose, audience, voice, dialing))
            if len(self._selection) < 100_000:
                self._selection[key] = found
        return found

    def in_force(self, at: datetime, jurisdictions: Iterable[str] | None = None) -> tuple[tuple[Pack, Rule], ...]:
        """Every (pack, rule) in force at `at`, for the given jurisdictions (all when None)."""
        packs = self.packs if jurisdictions is None else self.for_jurisdictions(jurisdictions)
        return tuple((p, r) for p in packs if p.in_force(at) for r in p.rules if r.in_force(at))

    def rule(self, rule_id: str) -> Rule | None:
        for pack in self.packs:
            for rule in pack.rules:
                if rule.id == rule_id:
                    return rule
        return None


# --- validation helpers: each raises ValueError("expected ..."); the caller adds file and field ---

class _Field(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _Field(where, "expected a non-empty string")
    return v


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _Field(where, "expected true or false")
    return v


def _int(v: Any, where: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _Field(where, f"expected an integer >= {minimum}")
    return v


def _duration(v: Any, where: str) -> timedelta:
    m = _DURATION.match(v) if isinstance(v, str) else None
    if not m or int(m.group(1)) <= 0:
        raise _Field(where, 'expected a duration like "30d", "24h" or "15m"')
    n = int(m.group(1))
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[m.group(2)]


def _choices(v: Any, where: str, allowed: tuple[str, ...], star: bool = False) -> frozenset[str]:
    if not isinstance(v, list) or not v:
        raise _Field(where, f"expected a non-empty list of {', '.join(allowed)}")
    for i, item in enumerate(v):
        if star and item == "*":
            continue
        if item not in allowed:
            raise _Field(f"{where}[{i}]", f"expected one of {', '.join(allowed)}{' or *' if star else ''}")
    return frozenset(v)


def _instant(v: Any, where: str, tz: ZoneInfo) -> datetime:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise _Field(where, "expected a date or a date-time with an offset")
        return v.astimezone(UTC)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=tz).astimezone(UTC)
    raise _Field(where, "expected a TOML date (2026-08-11) or date-time with offset")


def _windows(v: Any, where: str) -> dict[str, list[tuple[int, int]]]:
    if not isinstance(v, dict) or not v:
        raise _Field(where, "expected a table of weekday = [\"HH:MM-HH:MM\", ...]")
    out = {}
    for day, spans in v.items():
        if day not in WEEKDAYS:
            raise _Field(f"{where}.{day}", f"expected a weekday: {', '.join(WEEKDAYS)}")
        if not isinstance(spans, list):
            raise _Field(f"{where}.{day}", 'expected a list of "HH:MM-HH:MM"')
        parsed = []
        for i, text in enumerate(spans):
            try:
                parsed.append(parse_window(text))
            except ValueError as exc:
                raise _Field(f"{where}.{day}[{i}]", str(exc)) from None
        out[day] = parsed
    return out


def _zone_name(v: Any, where: str) -> str:
    try:
        ZoneInfo(_str(v, where))
    except (ZoneInfoNotFoundError, ValueError):
        raise _Field(where, "expected an IANA zone name, e.g. Etc/GMT+6") from None
    return v


def _str_list(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise _Field(where, "expected a list of strings")
    return tuple(v)


def _relationship_exemptions(v: Any, where: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(v, list):
        raise _Field(where, "expected a list of {kind, months | days | ongoing}")
    out = []
    for i, item in enumerate(v):
        w = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _Field(w, "expected a table {kind, months | days | ongoing}")
        kind = _str(item.get("kind"), f"{w}.kind")
        unknown = set(item) - {"kind", "months", "days", "ongoing", "counted_from", "campaign_related"}
        if unknown:
            raise _Field(f"{w}.{sorted(unknown)[0]}", "unknown field")
        spec: dict[str, Any] = {"kind": kind}
        # months/days counted from the relationship's start (`at`, default) or from its end (`until`: a contract
        # in force, or ended within the period, as Canada's existing business relationship)
        spec["counted_from"] = _choices([item.get("counted_from", "start")], f"{w}.counted_from",
                                        ("start", "end")) and item.get("counted_from", "start")
        # the campaign must declare that its calls relate to that relationship (France: a call made in the
        # performance of an ongoing contract and related to its object)
        spec["campaign_related"] = _bool(item.get("campaign_related", False), f"{w}.campaign_related")
        if "ongoing" in item:
            spec["ongoing"] = _bool(item["ongoing"], f"{w}.ongoing")
        elif "months" in item:
            spec["months"] = _int(item["months"], f"{w}.months")
        elif "days" in item:
            spec["days"] = _int(item["days"], f"{w}.days")
        else:
            raise _Field(w, "expected months, days or ongoing = true")
        out.append(spec)
    return tuple(out)


def _exemptions(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Field(where, "expected a table {consent, written_consent, relationships, proof}")
    unknown = set(v) - {"consent", "written_consent", "relationships", "proof"}
    if unknown:
        raise _Field(f"{where}.{sorted(unknown)[0]}", "unknown field")
    return {
        "consent": _bool(v.get("consent", False), f"{where}.consent"),
        "written_consent": _bool(v.get("written_consent", False), f"{where}.written_consent"),
        "relationships": _relationship_exemptions(v.get("relationships", []), f"{where}.relationships"),
        "proof": _bool(v.get("proof", True), f"{where}.proof"),
    }


def _subdiv_map(v: Any, where: str) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise _Field(where, "expected a table of our subdivision = holidays subdivision")
    return dict(v)


def _subdiv_list(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise _Field(where, "expected a list of holidays subdivisions")
    return tuple(v)


def _prefixes(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise _Field(where, 'expected a list of E.164 prefixes, e.g. ["+33162", "+339475"]')
    for i, item in enumerate(v):
        if not isinstance(item, str) or not _E164_PREFIX.match(item):
            raise _Field(f"{where}[{i}]", 'expected an E.164 prefix: "+" and digits, e.g. "+33162"')
    return tuple(v)


# Each kind: its parameters as name -> (required, parser, default).
Param = tuple[bool, Callable[[Any, str], Any], Any]
_OUTCOMES = lambda v, w: _choices(v, w, OUTCOMES, star=True)  # noqa: E731
_SCOPE = lambda v, w: _choices([v], w, SCOPES) and v  # noqa: E731

KINDS: dict[str, dict[str, Param]] = {
    "calling_hours": {
        "windows": (True, _windows, None),
        # a fixed clock the law names ("Central Standard Time": Etc/GMT+6), read as well as the called party's
        "clock": (False, _zone_name, None),
    },
    "no_calls_on_days": {"days": (True, lambda v, w: _choices(v, w, WEEKDAYS), None)},
    "public_holidays": {
        "country": (True, _str, None),
        "subdivision": (False, _str, None),
        "subdivisions": (False, _subdiv_map, None),
        # holidays subdivisions applied when neither the number nor the address tells the subdivision
        "when_subdivision_unknown": (False, _subdiv_list, ()),
    },
    "frequency_cap": {
        "max": (True, _int, None),
        "window": (True, _duration, None),
        "scope": (False, _SCOPE, "tenant"),
        "outcomes": (False, _OUTCOMES, frozenset({"*"})),
    },
    "refusal_cooloff": {
        "duration": (True, _duration, None),
        "scope": (False, _SCOPE, "tenant"),
        "outcomes": (False, _OUTCOMES, frozenset({"refused"})),
    },
    "abandon_cooloff": {
        "duration": (True, _duration, None),
        "scope": (False, _SCOPE, "tenant"),
        "outcomes": (False, _OUTCOMES, frozenset({"abandoned"})),
    },
    "retry_spacing": {
        "duration": (True, _duration, None),
        "scope": (False, _SCOPE, "campaign"),
        "outcomes": (False, _OUTCOMES, frozenset({"*"})),
    },
    "consent_required": {
        "written": (False, _bool, False),
        "channels": (False, _str_list, ("phone",)),
        "exemptions": (False, _exemptions, None),
        # a consent with neither an evidence reference nor a source cannot be proved: it does not count
        "proof": (False, _bool, True),
        "why": (False, _str, None),  # the rule in a few words, at the head of the reason text
    },
    "written_consent_for_artificial_voice": {
        "channels": (False, _str_list, ("phone",)),
        "proof": (False, _bool, True),
    },
    "national_registry": {
        "registry": (True, _str, None),
        "exemptions": (False, _exemptions, None),
        "takes_effect_after_days": (False, lambda v, w: _int(v, w, 0), None),  # documented, not enforced
    },
    "registry_freshness": {"registry": (True, _str, None), "max_age_days": (True, _int, None)},
    "consent_waives": {
        "rules": (True, _str_list, None),
        "written": (False, _bool, False),
        "channels": (False, _str_list, ("phone",)),
        "proof": (False, _bool, True),
    },
    "company_dnc": {"honor_within_business_days": (False, lambda v, w: _int(v, w, 0), None)},
    "campaign_dnc": {},
    "caller_id": {
        "allowed_prefixes": (False, _prefixes, ()),  # empty: any valid, diallable number
        "allowed_label": (False, _str, ""),  # how the allowed ranges read in a denial (national format)
        "forbidden_prefixes": (False, _prefixes, ()),
        "forbidden_types": (False, lambda v, w: _choices(v, w, tuple(NUMBER_TYPES)), frozenset()),
    },
}
_COMMON = {"id", "kind", "source", "from", "until", "purposes", "audiences", "voices", "dialing", "unconfirmed",
           "configurable", "note"}


def _check_holiday_calendars(params: dict[str, Any], where: str) -> None:
    """A country or subdivision the `holidays` package does not know would fail at the first call: fail at start."""
    supported = holidays.list_supported_countries()
    country = params["country"]
    if country not in supported:
        raise _Field(f"{where}.country", f"no public-holiday calendar for {country!r} in the holidays package")
    named = [("subdivision", params["subdivision"])] if params["subdivision"] else []
    named += [(f"subdivisions.{k}", v) for k, v in (params["subdivisions"] or {}).items()]
    named += [(f"when_subdivision_unknown[{i}]", v) for i, v in enumerate(params["when_subdivision_unknown"])]
    for name, sub in named:
        if sub not in supported[country]:
            raise _Field(f"{where}.{name}", f"no {country} holiday subdivision {sub!r} in the holidays package")


def _rule(raw: Any, where: str, pack_id: str, tz: ZoneInfo) -> Rule:
    if not isinstance(raw, dict):
        raise _Field(where, "expected a table")
    rule_id = _str(raw.get("id"), f"{where}.id")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _Field(f"{where}.kind", f"expected one of {', '.join(KINDS)}")
    spec = KINDS[kind]
    unknown = set(raw) - _COMMON - set(spec)
    if unknown:
        raise _Field(f"{where}.{sorted(unknown)[0]}", f"unknown field for kind {kind}")
    params = {}
    for name, (required, parse, default) in spec.items():
        if name in raw:
            params[name] = parse(raw[name], f"{where}.{name}")
        elif required:
            raise _Field(f"{where}.{name}", f"required for kind {kind}")
        else:
            params[name] = default
    if kind == "calling_hours":
        params["_days"] = weekly_days(params["windows"])  # pre-indexed by weekday for the engine
    if kind == "public_holidays":
        _check_holiday_calendars(params, where)
    if kind == "caller_id":
        params["_forbidden_types"] = frozenset(NUMBER_TYPES[t] for t in params["forbidden_types"])
    start = _instant(raw["from"], f"{where}.from", tz) if "from" in raw else None
    end = _instant(raw["until"], f"{where}.until", tz) if "until" in raw else None
    if start and end and end <= start:
        raise _Field(f"{where}.until", "expected a date after `from`")
    return Rule(
        id=rule_id, kind=kind, source=_str(raw.get("source"), f"{where}.source"), pack=pack_id, params=params,
        start=start, end=end,
        purposes=_choices(raw["purposes"], f"{where}.purposes", PURPOSES) if "purposes" in raw else None,
        audiences=_choices(raw["audiences"], f"{where}.audiences", AUDIENCES) if "audiences" in raw else None,
        voices=_choices(raw["voices"], f"{where}.voices", VOICES) if "voices" in raw else None,
        dialing=_choices(raw["dialing"], f"{where}.dialing", DIALING_MODES) if "dialing" in raw else None,
        unconfirmed=_bool(raw.get("unconfirmed", False), f"{where}.unconfirmed"),
        configurable=_bool(raw.get("configurable", False), f"{where}.configurable"),
    )


def _pack(doc: dict[str, Any], path: str) -> Pack:
    unknown = set(doc) - {"id", "version", "jurisdiction", "name", "timezone", "source", "rules", "from", "until",
                          "note"}
    if unknown:
        raise _Field(sorted(unknown)[0], "unknown field")
    pack_id = _str(doc.get("id"), "id")
    version = doc.get("version")
    if isinstance(version, int | float) and not isinstance(version, bool):
        version = str(version)
    version = _str(version, "version")
    jurisdiction = _str(doc.get("jurisdiction"), "jurisdiction")
    if not _JURISDICTION.match(jurisdiction):
        raise _Field("jurisdiction", 'expected a country code or country-subdivision, e.g. "US" or "US-FL"')
    tz_name = _str(doc.get("timezone"), "timezone")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Field("timezone", "expected an IANA zone name, e.g. Europe/Paris") from None
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise _Field("rules", "expected at least one [[rules]] table")
    rules = tuple(_rule(r, f"rules[{i}]", pack_id, tz) for i, r in enumerate(raw_rules))
    ids = [r.id for r in rules]
    for i, rule in enumerate(rules):
        if ids.index(rule.id) != i:
            raise _Field(f"rules[{i}].id", f"duplicate rule id {rule.id!r}")
        if rule.kind == "consent_waives":
            for j, target in enumerate(rule.params["rules"]):
                if target not in ids:
                    raise _Field(f"rules[{i}].rules[{j}]", f"no rule {target!r} in this pack")
        if rule.kind == "registry_freshness" and not any(
            r.kind == "national_registry" and r.params["registry"] == rule.params["registry"] for r in rules
        ):
            raise _Field(f"rules[{i}].registry", f"no national_registry rule for {rule.params['registry']!r}")
    return Pack(
        id=pack_id, version=version, jurisdiction=jurisdiction, name=str(doc.get("name", pack_id)),
        timezone=tz_name, rules=rules, path=path,
        start=_instant(doc["from"], "from", tz) if "from" in doc else None,
        end=_instant(doc["until"], "until", tz) if "until" in doc else None,
    )


def load_pack(path: str | Path) -> Pack:
    """Read and validate one pack file. Raises PackError naming the file and the field."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise PackError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PackError(f"{path}: invalid TOML: {exc}") from None
    try:
        return _pack(doc, str(path))
    except _Field as exc:
        raise PackError(f"{path}: {exc.where}: {exc.message}") from None


def load_packs(extra_dir: str | Path | None = None, *, builtin: bool = True) -> PackSet:
    """The built-in packs, overlaid by the packs in `extra_dir` (the `rules.packs_dir` setting):
    a pack there with the id of a built-in one replaces it; others are added."""
    packs: dict[str, Pack] = {}
    dirs = ([BUILTIN_DIR] if builtin else []) + ([Path(extra_dir)] if extra_dir else [])
    for directory in dirs:
        if not directory.is_dir():
            raise PackError(f"{directory}: not a directory of rule packs")
        for path in sorted(directory.glob("*.toml")):
            pack = load_pack(path)
            packs[pack.id] = pack
    seen: dict[str, str] = {}
    for pack in packs.values():
        for rule in pack.rules:
            if rule.id in seen:
                raise PackError(f"{pack.path}: rule id {rule.id!r} is also used in {seen[rule.id]}")
            seen[rule.id] = pack.path
    return PackSet.of(packs.values())


_DEFAULT: PackSet | None = None


def default_packs() -> PackSet:
    """The built-in packs, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_packs()
    return _DEFAULT
