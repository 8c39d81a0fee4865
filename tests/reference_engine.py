"""A straightforward evaluation for the regression test of the optimised engine (tests/test_engine_regression.py).

This is rules/engine.py and rules/time_windows.py as they were before the performance work (commit 757daa8),
with the engine's memoisation removed (no situate/selection/in-force caches): each call recomputes
everything from the packs. Deliberately not optimised, and not to be edited when the engine is; if a rule's
meaning changes on purpose, change both and say so in the commit.
Changed on purpose for issue 13 (gate-law): "US-*" (state unknown: every state pack, read in its own zones),
calling_hours `clock`, consent `proof` (UNPROVED), consent_required `why`, relationship dates in the called
party's zones with `counted_from` and `campaign_related`, and the `dialing` filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

import holidays

from rules import geo
from rules.caller_id import check_caller_id
from rules.consent import ConsentState, consent_state, relationship_exempts
from rules.model import Attempt, Campaign, Contact, Decision, Facts, Reason, utc
from rules.packs import Pack, PackSet, Rule, default_packs

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
HORIZON = timedelta(days=400)


def parse_window(text: str) -> tuple[int, int]:
    """"10:00-13:00" -> (36000, 46800) seconds after local midnight; end exclusive ("24:00" allowed)."""
    m = _WINDOW.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError('expected "HH:MM-HH:MM"')
    start = int(m.group(1)) * 3600 + int(m.group(2)) * 60
    end = int(m.group(3)) * 3600 + int(m.group(4)) * 60
    if end > 86400 or end <= start:
        raise ValueError('expected "HH:MM-HH:MM" with the end after the start, within one day')
    return start, end


def format_window(window: tuple[int, int]) -> str:
    s, e = window
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}-{e // 3600:02d}:{e % 3600 // 60:02d}"


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_instant(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time. In a DST gap the wall time does not exist; zoneinfo then
    reads it with the pre-transition offset, which lands just after the gap: the first valid instant."""
    if seconds >= 86400:
        return local_instant(day + timedelta(days=1), seconds - 86400, tz)
    wall = datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60, seconds % 60), tzinfo=tz)
    return wall.astimezone(UTC)


def _seconds(local: datetime) -> float:
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


@lru_cache(maxsize=4096)
def holiday_calendar(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    """Public holidays of a country (and subdivision) in a year, from the `holidays` package: date -> name."""
    return dict(holidays.country_holidays(country, subdiv=subdivision, years=year).items())


def holiday_dates(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    return holiday_calendar(country, subdivision, year)


def holiday_name(country: str, subdivision: str | None, day: date) -> str:
    return str(holiday_calendar(country, subdivision, day.year).get(day, "holiday"))


class Constraint(Protocol):
    def blocks(self, t: datetime) -> bool: ...

    def opens_after(self, t: datetime) -> datetime | None: ...


@dataclass(frozen=True)
class WeeklyWindows:
    """Calls allowed only inside these local windows (index 0 = Monday). A day without windows is closed."""

    tz: ZoneInfo
    days: tuple[tuple[tuple[int, int], ...], ...]

    def blocks(self, t: datetime) -> bool:
        local = t.astimezone(self.tz)
        s = _seconds(local)
        return not any(a <= s < b for a, b in self.days[local.weekday()])

    def opens_after(self, t: datetime) -> datetime | None:
        today = t.astimezone(self.tz).date()
        for offset in range(9):
            day = today + timedelta(days=offset)
            for start, _end in self.days[day.weekday()]:
                instant = local_instant(day, start, self.tz)
                if instant > t:
                    return instant
        return None


@dataclass(frozen=True)
class ClosedDays:
    """No calls on these local dates: weekdays (0 = Monday) and/or public holidays."""

    tz: ZoneInfo
    weekdays: frozenset[int] = frozenset()
    holiday_calendars: tuple[tuple[str, str | None], ...] = ()  # (country, holidays subdivision)

    def closed(self, day: date) -> bool:
        if day.weekday() in self.weekdays:
            return True
        return any(day in holiday_dates(c, s, day.year) for c, s in self.holiday_calendars)

    def blocks(self, t: datetime) -> bool:
        return self.closed(t.astimezone(self.tz).date())

    def opens_after(self, t: datetime) -> datetime | None:
        day = t.astimezone(self.tz).date()
        for _ in range(400):
            day += timedelta(days=1)
            if not self.closed(day):
                return local_instant(day, 0, self.tz)
        return None


@dataclass(frozen=True)
class NotBefore:
    """Blocked until a fixed instant (a cap, a cool-off, a retry spacing)."""

    instant: datetime

    def blocks(self, t: datetime) -> bool:
        return t < self.instant

    def opens_after(self, t: datetime) -> datetime | None:
        return self.instant if self.instant > t else None


def earliest_open(constraints: Sequence[Constraint], t: datetime, horizon: timedelta = HORIZON) -> datetime | None:
    """The first instant >= t at which no constraint blocks; None if there is none within the horizon
    (e.g. zones so far apart that their windows never overlap)."""
    limit = t + horizon
    while t <= limit:
        blockers = [c for c in constraints if c.blocks(t)]
        if not blockers:
            return t
        nexts = [c.opens_after(t) for c in blockers]
        if any(n is None for n in nexts):
            return None
        t = max(n for n in nexts if n is not None)
    return None


def weekly_days(windows: dict[str, Iterable[tuple[int, int]]]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """{"mon": [(s, e), ...], ...} -> a 7-tuple indexed by weekday."""
    return tuple(tuple(sorted(windows.get(day, ()))) for day in WEEKDAYS)


# Stable reason codes and what they mean to a person.
REASON_CODES: dict[str, str] = {
    "OUTSIDE_CALLING_HOURS": "outside the legal calling hours in the called person's local time",
    "DAY_NOT_ALLOWED": "no calls on this day of the week",
    "PUBLIC_HOLIDAY": "public holiday where the called person is",
    "NO_CONSENT": "no valid consent for this purpose",
    "CONSENT_WITHDRAWN": "consent was withdrawn",
    "WRITTEN_CONSENT_REQUIRED": "an artificial or prerecorded voice needs prior express written consent",
    "NATIONAL_REGISTRY": "number is on the national do-not-call registry and no exemption applies",
    "REGISTRY_STALE": "the national registry copy is missing or too old",
    "COMPANY_DNC": "the person asked this company not to call",
    "CAMPAIGN_DNC": "the person asked not to be called for this campaign",
    "FREQUENCY_CAP": "too many attempts in the rolling window",
    "REFUSAL_COOLOFF": "the person refused recently",
    "ABANDON_COOLOFF": "a recent call to this person was abandoned",
    "RETRY_SPACING": "too soon after the previous attempt",
    "INVALID_NUMBER": "not a valid phone number",
    "UNSUPPORTED_JURISDICTION": "no rule pack for this country: calls there are not allowed",
    "MISSING_DATA": "data a rule needs is missing",
}
TIME_BASED = frozenset({
    "OUTSIDE_CALLING_HOURS", "DAY_NOT_ALLOWED", "PUBLIC_HOLIDAY", "FREQUENCY_CAP", "REFUSAL_COOLOFF",
    "ABANDON_COOLOFF", "RETRY_SPACING",
})
GATE_SOURCE = "gate policy: fail closed (issue 2)"


@dataclass(frozen=True)
class Situation:
    """Where the contact is, as far as the number and the address tell."""

    e164: str
    places: tuple[tuple[str, str | None], ...]  # (country, subdivision): the number's first, then the address's
    codes: tuple[str, ...]  # jurisdiction codes: "US", "US-FL", "FR", "FR-57" ...
    zones: tuple[str, ...]
    unresolved: tuple[str, ...] = ()

    @property
    def countries(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for c, _ in self.places))


def situate(e164: str, country: str | None, state: str | None, postal_code: str | None) -> Situation:
    places = [geo.jurisdiction_for_number(e164)]
    zones = set(geo.zones_for_number(e164))
    unresolved: list[str] = []
    if not country and (state or postal_code):
        country = places[0][0]
    if country:
        address = geo.address_jurisdiction(country, state, postal_code)
        if (state or postal_code) and not geo.known_subdivision(*address):
            given = f"state {state!r}" if state else f"postal code {postal_code!r}"
            unresolved.append(f"address {given} is not a known subdivision of {country}")
        places.append(address)
        addr_zones = geo.zones_for_address(country, state, postal_code)
        if not addr_zones and country.upper() != places[0][0]:
            addr_zones = geo.country_zones(country)
        zones.update(addr_zones)
    places = list(dict.fromkeys(places))
    codes: list[str] = []
    for c, sub in places:
        codes.append(c)
        if sub:
            codes.append(f"{c}-{sub}")
    # issue 13: a US number whose state nobody can tell gets every state's rules ("US-*")
    if "US" in codes and not any(c == "US" and sub for c, sub in places):
        codes.append("US-*")
    return Situation(e164, tuple(places), tuple(dict.fromkeys(codes)), tuple(sorted(zones)), tuple(unresolved))


@dataclass
class _Context:
    contact: Contact
    campaign: Campaign
    facts: Facts
    situation: Situation
    packs: tuple[Pack, ...]
    selected: tuple[tuple[Pack, Rule], ...]
    consent_cache: dict = field(default_factory=dict)
    local_cache: dict = field(default_factory=dict)

    def local(self, t: datetime, zone_name: str) -> datetime:
        """`t` on the wall clock of a zone (memoized per evaluation: several rules ask)."""
        key = (t, zone_name)
        value = self.local_cache.get(key)
        if value is None:
            value = self.local_cache[key] = t.astimezone(zone(zone_name))
        return value

    def consent(self, at: datetime, written: bool, channels: tuple[str, ...], proof: bool = True) -> ConsentState:
        key = (at, written, channels, proof)
        if key not in self.consent_cache:
            self.consent_cache[key] = consent_state(
                self.facts.consent, purpose=self.campaign.purpose, campaign=self.campaign.id, at=at,
                written=written, channels=channels, proof=proof)
        return self.consent_cache[key]

    def zones(self, pack: Pack) -> tuple[str, ...]:
        """issue 13: a state pack applied because the state is unknown reads its time rules in its state's zones."""
        country, _, sub = pack.jurisdiction.partition("-")
        if sub and f"{country}-*" in self.situation.codes:
            own = geo.subdivision_zones(country, sub)
            return tuple(z for z in self.situation.zones if z in own) or own or self.situation.zones
        return self.situation.zones

    def relationship(self, specs, t: datetime) -> str | None:
        return relationship_exempts(self.facts.relationships, specs, t, self.situation.zones,
                                    self.campaign.contract_related)

    def attempts(self, rule: Rule) -> list[Attempt]:
        outcomes = rule.params["outcomes"]
        by_campaign = rule.params["scope"] == "campaign"
        return [a for a in self.facts.history
                if ("*" in outcomes or a.outcome in outcomes or a.outcome == "unknown")  # may have been any of them
                and (not by_campaign or a.campaign == self.campaign.id)]


Out = list[tuple[Reason, tuple[Constraint, ...]]]
Check = Callable[[_Context, Pack, Rule, datetime, Out], None]


def _reason(code: str, rule: Rule, text: str, until: datetime | None = None) -> Reason:
    return Reason(code=code, text=text, rule=rule.id, source=rule.source, until=until)


# --- time-based checks ------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _describe_windows(days: tuple[tuple[tuple[int, int], ...], ...]) -> str:
    """"Mon-Fri 10:00-13:00, 14:00-20:00; Sat-Sun closed": consecutive days with equal windows grouped."""
    groups: list[list[int]] = []
    for i in range(7):
        if groups and days[groups[-1][-1]] == days[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    parts = []
    for g in groups:
        name = WEEKDAYS[g[0]].capitalize() + (f"-{WEEKDAYS[g[-1]].capitalize()}" if len(g) > 1 else "")
        spans = ", ".join(format_window(w) for w in days[g[0]]) or "closed"
        parts.append(f"{name} {spans}")
    return "; ".join(parts)


def _inside(days: tuple[tuple[tuple[int, int], ...], ...], local: datetime) -> bool:
    s = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return any(a <= s < b for a, b in days[local.weekday()])


def check_calling_hours(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    days = rule.params["_days"]
    zones = (rule.params["clock"],) if rule.params["clock"] else ctx.zones(pack)
    blocked = [z for z in zones if not _inside(days, ctx.local(t, z))]
    if blocked:
        constraints = tuple(WeeklyWindows(zone(z), days) for z in zones)
        local = ", ".join(f"{ctx.local(t, z):%a %H:%M} {z}" for z in blocked)
        text = f"outside calling hours ({_describe_windows(days)}; local time); now {local}"
        out.append((_reason("OUTSIDE_CALLING_HOURS", rule, text), constraints))


def check_days(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    weekdays = frozenset(WEEKDAYS.index(d) for d in rule.params["days"])
    zones = ctx.zones(pack)
    blocked = [z for z in zones if ctx.local(t, z).weekday() in weekdays]
    if blocked:
        constraints = tuple(ClosedDays(zone(z), weekdays=weekdays) for z in zones)
        names = ", ".join(sorted({f"{ctx.local(t, z):%A}" for z in blocked}))
        out.append((_reason("DAY_NOT_ALLOWED", rule, f"no calls on {names} (local time)"), constraints))


def _holiday_calendars(ctx: _Context, rule: Rule) -> tuple[tuple[str, str | None], ...]:
    country = rule.params["country"]
    if rule.params["subdivision"]:
        return ((country, rule.params["subdivision"]),)
    calendars: list[tuple[str, str | None]] = [(country, None)]
    mapping = rule.params["subdivisions"]
    known = False
    for c, sub in ctx.situation.places:
        if c == country and sub:
            known = True
            mapped = mapping.get(sub) if mapping is not None else sub
            if mapped:
                calendars.append((country, mapped))
    if not known:
        calendars.extend((country, sub) for sub in rule.params["when_subdivision_unknown"])
    return tuple(dict.fromkeys(calendars))


def check_public_holidays(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    calendars = _holiday_calendars(ctx, rule)
    for z in ctx.zones(pack):
        day = ctx.local(t, z).date()
        if any(day in holiday_dates(country, sub, day.year) for country, sub in calendars):
            constraints = tuple(ClosedDays(zone(zn), holiday_calendars=calendars) for zn in ctx.zones(pack))
            names = sorted({holiday_name(country, sub, day) for country, sub in calendars
                            if day in holiday_dates(country, sub, day.year)})
            text = f"public holiday {day.isoformat()} ({', '.join(names)}) in {z}"
            out.append((_reason("PUBLIC_HOLIDAY", rule, text), constraints))
            return


def check_frequency_cap(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    window: timedelta = rule.params["window"]
    limit: int = rule.params["max"]
    recent = sorted(a.at for a in ctx.attempts(rule) if a.at > t - window)
    if len(recent) >= limit:
        until = recent[len(recent) - limit] + window
        scope = "this campaign" if rule.params["scope"] == "campaign" else "all campaigns"
        text = f"{len(recent)} attempts in the last {_span(window)} ({scope}); at most {limit} allowed"
        out.append((_reason("FREQUENCY_CAP", rule, text, until), (NotBefore(until),)))


def _span(delta: timedelta) -> str:
    if delta % timedelta(days=1) == timedelta(0):
        return f"{delta.days} days"
    if delta % timedelta(hours=1) == timedelta(0):
        return f"{int(delta.total_seconds() // 3600)} h"
    return f"{int(delta.total_seconds() // 60)} min"


def _cooloff(code: str, what: str) -> Check:
    def check(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
        duration: timedelta = rule.params["duration"]
        # attempts stamped after `t` count too: another process's clock may run slightly ahead
        attempts = ctx.attempts(rule)
        if attempts and t < max(a.at for a in attempts) + duration:
            last = max(attempts, key=lambda a: a.at)
            until = last.at + duration
            # an unknown outcome counts for every cool-off (it may have been one): say so, not that it was one
            seen = f"call with unknown outcome (counted as a {what})" if last.outcome == "unknown" else what
            text = f"{seen} at {last.at:%Y-%m-%d %H:%M} UTC; no new call for {_span(duration)}"
            out.append((_reason(code, rule, text, until), (NotBefore(until),)))
    return check


# --- permanent checks (cleared only by new facts) ------------------------------------------------------

def _consent_reason(ctx: _Context, rule: Rule, t: datetime, written: bool, missing_code: str, out: Out) -> None:
    state = ctx.consent(t, written, tuple(rule.params["channels"]), rule.params["proof"])
    if state is ConsentState.VALID:
        return
    head = f"{rule.params['why']}: " if rule.params.get("why") else ""
    if state is ConsentState.WITHDRAWN:
        out.append((_reason("CONSENT_WITHDRAWN", rule, f"{head}consent for {ctx.campaign.purpose} was withdrawn"),
                    ()))
        return
    kind = "written consent" if written else "consent"
    if state is ConsentState.UNPROVED:  # issue 13: a consent nobody can prove is no consent
        text = (f"{head}the {kind} for {ctx.campaign.purpose} calls has no evidence (no evidence reference and no "
                f"source): the caller must be able to prove it")
        out.append((_reason("NO_CONSENT", rule, text), ()))
        return
    out.append((_reason(missing_code, rule, f"{head}no valid {kind} for {ctx.campaign.purpose} calls"), ()))


def check_consent_required(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    exemptions = rule.params["exemptions"]
    if exemptions and ctx.relationship(exemptions["relationships"], t):
        return
    _consent_reason(ctx, rule, t, rule.params["written"], "NO_CONSENT", out)


def check_artificial_voice(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    if ctx.campaign.voice == "artificial":
        _consent_reason(ctx, rule, t, True, "WRITTEN_CONSENT_REQUIRED", out)


def _registry_exemption(ctx: _Context, rule: Rule, t: datetime) -> str | None:
    ex = rule.params["exemptions"]
    if not ex:
        return None
    channels = ("phone",)
    if ex["written_consent"] and ctx.consent(t, True, channels, ex["proof"]) is ConsentState.VALID:
        return "written consent"
    if ex["consent"] and ctx.consent(t, False, channels, ex["proof"]) is ConsentState.VALID:
        return "consent"
    return ctx.relationship(ex["relationships"], t)


def check_national_registry(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    if _registry_exemption(ctx, rule, t):
        return
    name = rule.params["registry"]
    national = ctx.facts.lists.national
    member = national.get(name, national.get("*"))
    if member is None:
        out.append((_reason("MISSING_DATA", rule, f"membership of the {name} registry is unknown"), ()))
    elif member:
        out.append((_reason("NATIONAL_REGISTRY", rule, f"number is on the {name} registry; no exemption applies"),
                    ()))


def check_registry_freshness(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    name = rule.params["registry"]
    registry_rule = next(r for r in pack.rules if r.kind == "national_registry" and r.params["registry"] == name)
    if not registry_rule.in_force(t) or _registry_exemption(ctx, registry_rule, t):
        return
    copies = ctx.facts.registry_copies
    copy = copies.get(name) or copies.get("national") or copies.get("*")
    max_age = timedelta(days=rule.params["max_age_days"])
    if copy is None:
        out.append((_reason("REGISTRY_STALE", rule, f"no copy loaded of the {name} registry"), ()))
    elif t - copy > max_age:
        age = (t - copy) / timedelta(days=1)
        text = f"the {name} registry copy is {age:.1f} days old; at most {rule.params['max_age_days']} days allowed"
        out.append((_reason("REGISTRY_STALE", rule, text), ()))


def check_company_dnc(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    if ctx.facts.lists.company:
        out.append((_reason("COMPANY_DNC", rule, "the person is on the company do-not-call list"), ()))
        return
    # an opt-out heard on a call counts even if the DNC list has not caught up (never lose an opt-out)
    opted = [a.at for a in ctx.facts.history if a.outcome == "opted_out"]
    if opted:
        text = f"the person opted out during a call on {min(opted):%Y-%m-%d %H:%M} UTC"
        out.append((_reason("COMPANY_DNC", rule, text), ()))


def check_campaign_dnc(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    if ctx.facts.lists.campaign:
        out.append((_reason("CAMPAIGN_DNC", rule, "the person is on this campaign's do-not-call list"), ()))


def _noop(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    """consent_waives acts before the checks run (see _applicable)."""


# kind -> (check, time_based)
CHECKS: dict[str, tuple[Check, bool]] = {
    "calling_hours": (check_calling_hours, True),
    "no_calls_on_days": (check_days, True),
    "public_holidays": (check_public_holidays, True),
    "frequency_cap": (check_frequency_cap, True),
    "refusal_cooloff": (_cooloff("REFUSAL_COOLOFF", "refusal"), True),
    "abandon_cooloff": (_cooloff("ABANDON_COOLOFF", "abandoned or machine-answered call"), True),
    "retry_spacing": (_cooloff("RETRY_SPACING", "previous attempt"), True),
    "consent_required": (check_consent_required, False),
    "written_consent_for_artificial_voice": (check_artificial_voice, False),
    "national_registry": (check_national_registry, False),
    "registry_freshness": (check_registry_freshness, False),
    "consent_waives": (_noop, False),
    "company_dnc": (check_company_dnc, False),
    "campaign_dnc": (check_campaign_dnc, False),
    "caller_id": (check_caller_id, False),  # new kind (issue 13): the same pure judge
}


def _in_force(selected: tuple[tuple[Pack, Rule], ...], t: datetime) -> list[tuple[Pack, Rule]]:
    return [(p, r) for p, r in selected if p.in_force(t) and r.in_force(t)]


def _select(packs: PackSet, codes: tuple[str, ...], purpose: str, audience: str, voice: str,
            dialing: str | None = None):
    return tuple((p, r) for p in packs.for_jurisdictions(codes) for r in p.rules
                 if r.applies_to(purpose, audience, voice, dialing))


def _applicable(ctx: _Context, t: datetime) -> list[tuple[Pack, Rule]]:
    rules = _in_force(ctx.selected, t)
    waived: set[str] = set()
    for _p, r in rules:
        if r.kind == "consent_waives" and ctx.consent(t, r.params["written"], tuple(r.params["channels"]),
                                                      r.params["proof"]) is ConsentState.VALID:
            waived.update(r.params["rules"])
    return [(p, r) for p, r in rules if r.id not in waived]


def _run(ctx: _Context, t: datetime, time_only: bool) -> Out:
    out: Out = []
    for pack, rule in _applicable(ctx, t):
        check, time_based = CHECKS[rule.kind]
        if time_based or not time_only:
            check(ctx, pack, rule, t, out)
    return out


def _next_allowed(ctx: _Context, at: datetime, out: Out) -> datetime | None:
    t = at
    for _ in range(64):
        constraints = [c for _r, cs in out for c in cs]
        if not constraints:
            return t
        nxt = earliest_open(constraints, t)
        if nxt is None:
            return None
        t = nxt
        out = _run(ctx, t, time_only=True)
    return None


def _deny(at: datetime, reasons: list[Reason], codes: tuple[str, ...] = ()) -> Decision:
    return Decision(allowed=False, at=at, reasons=tuple(reasons), next_allowed_at=None, jurisdictions=codes)


def _gate_reason(code: str, text: str, rule: str) -> Reason:
    return Reason(code=code, text=text, rule=rule, source=GATE_SOURCE)


def evaluate(contact: Contact, campaign: Campaign, facts: Facts, at: datetime, packs: PackSet | None = None,
             ) -> Decision:
    """Decide whether `contact` may be called for `campaign` at `at`, given `facts`. Pure."""
    at = utc(at)
    packs = packs if packs is not None else default_packs()
    try:
        e164 = geo.normalize(contact.phone, contact.country)
    except geo.InvalidNumber as exc:
        return _deny(at, [_gate_reason("INVALID_NUMBER", str(exc), "gate/number")])
    situation = situate(e164, (contact.country or "").upper() or None, contact.state, contact.postal_code)
    problems = [
        _gate_reason("UNSUPPORTED_JURISDICTION", f"no rule pack for country {country or 'unknown'}",
                     "gate/jurisdiction")
        for country in situation.countries if country not in packs.countries()
    ]
    problems.extend(_gate_reason("MISSING_DATA", text, "gate/address") for text in situation.unresolved)
    if not situation.zones:
        problems.append(_gate_reason("MISSING_DATA", "no time zone known for this number or address", "gate/zones"))
    if problems:
        return _deny(at, problems, situation.codes)

    selected = _select(packs, situation.codes, campaign.purpose, campaign.audience, campaign.voice, campaign.dialing)
    ctx = _Context(contact, campaign, facts, situation, packs.for_jurisdictions(situation.codes), selected)
    out = _run(ctx, at, time_only=False)
    reasons: list[Reason] = []
    permanent = False
    for reason, constraints in out:
        if reason.code in TIME_BASED:
            until = reason.until or earliest_open(constraints, at)
            reason = Reason(reason.code, reason.text, reason.rule, reason.source, until)
            permanent = permanent or until is None
        else:
            permanent = True
        reasons.append(reason)
    next_allowed = None
    if reasons and not permanent:
        next_allowed = _next_allowed(ctx, at, [(r, cs) for r, cs in out])
    used = tuple(p.ref for p in ctx.packs if p.in_force(at))
    return Decision(allowed=not reasons, at=at, reasons=tuple(reasons), next_allowed_at=next_allowed,
                    packs=used, jurisdictions=situation.codes)


def required_registries(contact: Contact, campaign: Campaign, at: datetime, packs: PackSet | None = None,
                        ) -> tuple[str, ...]:
    """Names of the national registries (us_dnc, bloctel, tps, ctps, dncl ...) whose membership and copy
    date `evaluate` may need for this contact and campaign at `at`: what a stateful caller should read
    into Facts.lists.national / Facts.registry_copies. Empty for an invalid number."""
    at = utc(at)
    packs = packs if packs is not None else default_packs()
    try:
        e164 = geo.normalize(contact.phone, contact.country)
    except geo.InvalidNumber:
        return ()
    situation = situate(e164, (contact.country or "").upper() or None, contact.state, contact.postal_code)
    selected = _select(packs, situation.codes, campaign.purpose, campaign.audience, campaign.voice, campaign.dialing)
    return tuple(dict.fromkeys(r.params["registry"] for _p, r in _in_force(selected, at)
                               if r.kind == "national_registry"))
