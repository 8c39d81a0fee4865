"""The pure gate: may this contact be called at this instant, and if not, why and when?

`evaluate(contact, campaign, facts, at, packs)` locates the contact (number and address: both
jurisdictions apply), takes the rules of the applicable packs in force at `at` that apply to the
campaign (purpose, audience, voice), drops those a valid consent waives, and runs every rule's check.
Each check appends reasons; time-based checks also return constraints (local windows in every
candidate zone, or a not-before instant). No I/O, no clock: the instant is an argument.

next_allowed_at: None when any reason is permanent (only a change of facts clears it). Otherwise the
first instant at which every time-based check passes at once, found by re-running the time-based
checks (with the rules in force *then*) at the latest opening of the blocking constraints until
nothing blocks. It is therefore never before any reason's `until`, and lands inside the calling
hours even when, say, a frequency cap clears at 03:00.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from rules import geo
from rules.caller_id import check_caller_id
from rules.consent import ConsentState, consent_state, relationship_exempts
from rules.model import Attempt, Campaign, Contact, Decision, Facts, Reason, utc
from rules.packs import Pack, PackSet, Rule, default_packs
from rules.time_windows import (
    WEEKDAYS,
    ClosedDays,
    Constraint,
    NotBefore,
    WeeklyWindows,
    earliest_open,
    format_window,
    holiday_dates,
    holiday_name,
    zone,
)

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
    "CALLER_ID_NOT_ALLOWED": "the campaign's caller ID is not lawful for a call to this place",
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
    unresolved: tuple[str, ...] = ()  # address fields given but not understood: the gate denies (fail closed)

    @property
    def countries(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for c, _ in self.places))


@lru_cache(maxsize=65536)
def situate(e164: str, country: str | None, state: str | None, postal_code: str | None) -> Situation:
    places = [geo.jurisdiction_for_number(e164)]
    zones = set(geo.zones_for_number(e164))
    unresolved: list[str] = []
    if not country and (state or postal_code):
        country = places[0][0]  # an address without a country is read as in the number's country
    if country:
        address = geo.address_jurisdiction(country, state, postal_code)
        if (state or postal_code) and not geo.known_subdivision(*address):
            # a state rule (Florida's hours, Alsace-Moselle's holidays) may apply there: do not guess
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
    for c in geo.STATE_LAW_COUNTRIES:
        if c in codes and not any(pc == c and sub for pc, sub in places):
            # a toll-free, 5XX or other non-geographic number and no address: any state may be home, so every
            # state's rules apply (the narrowest hours, every day and holiday ban, every cap; "US-*")
            codes.append(f"{c}-*")
    return Situation(e164, tuple(places), tuple(dict.fromkeys(codes)), tuple(sorted(zones)), tuple(unresolved))


class _Context:
    """One evaluation: the facts, where the contact is, and the plan of its (place, campaign kind)."""

    __slots__ = ("campaign", "consent_cache", "contact", "facts", "local_cache", "plan", "situation")

    def __init__(self, contact: Contact, campaign: Campaign, facts: Facts, situation: Situation, plan: _Plan,
                 ) -> None:
        self.contact = contact
        self.campaign = campaign
        self.facts = facts
        self.situation = situation
        self.plan = plan
        self.consent_cache: dict = {}
        self.local_cache: dict = {}

    @property
    def packs(self) -> tuple[Pack, ...]:
        return self.plan.packs

    @property
    def selected(self) -> tuple[tuple[Pack, Rule], ...]:
        return self.plan.selected

    def local(self, t: datetime, zone_name: str) -> datetime:
        """`t` on the wall clock of a zone (memoized per evaluation: several rules ask)."""
        key = (t, zone_name)
        value = self.local_cache.get(key)
        if value is None:
            value = self.local_cache[key] = t.astimezone(zone(zone_name))
        return value

    def consent(self, at: datetime, written: bool, channels: tuple[str, ...], proof: bool = True) -> ConsentState:
        key = (at, written, channels, proof)
        state = self.consent_cache.get(key)
        if state is None:
            if self.facts.consent:
                state = consent_state(self.facts.consent, purpose=self.campaign.purpose, campaign=self.campaign.id,
                                      at=at, written=written, channels=channels, proof=proof)
            else:  # no record at all: nothing to weigh
                state = ConsentState.NONE
            self.consent_cache[key] = state
        return state

    def relationship(self, specs: tuple[dict, ...], t: datetime) -> str | None:
        """The kind of relationship that exempts under these specs at `t` (dates in the contact's zones)."""
        if not specs or not self.facts.relationships:
            return None
        return relationship_exempts(self.facts.relationships, specs, t, self.situation.zones,
                                    self.campaign.contract_related)

    def attempts(self, rule: Rule) -> list[Attempt]:
        outcomes = rule.params["outcomes"]
        by_campaign = rule.params["scope"] == "campaign"
        # An unknown outcome may have been any of them (an answer, a refusal, an abandon): it counts for every
        # cap and cool-off, whatever outcomes the rule names.
        return [a for a in self.facts.history
                if ("*" in outcomes or a.outcome in outcomes or a.outcome == "unknown")
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
    # a law that names its clock ("Central Standard Time") is read on that clock, not the called party's
    zones = (rule.params["clock"],) if rule.params["clock"] else ctx.plan.zones(pack)
    blocked = [z for z in zones if not _inside(days, ctx.local(t, z))]
    if blocked:
        constraints = tuple(WeeklyWindows(zone(z), days) for z in zones)
        local = ", ".join(f"{ctx.local(t, z):%a %H:%M} {z}" for z in blocked)
        text = f"outside calling hours ({_describe_windows(days)}; local time); now {local}"
        out.append((_reason("OUTSIDE_CALLING_HOURS", rule, text), constraints))


def check_days(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    weekdays = frozenset(WEEKDAYS.index(d) for d in rule.params["days"])
    zones = ctx.plan.zones(pack)
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
        # Fail closed: a mobile (or a landline whose prefix we do not map) without an address could be in any
        # subdivision; the pack names the subdivisions whose extra holidays then apply (Alsace-Moselle's).
        calendars.extend((country, sub) for sub in rule.params["when_subdivision_unknown"])
    return tuple(dict.fromkeys(calendars))


def check_public_holidays(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    calendars = _holiday_calendars(ctx, rule)
    zones = ctx.plan.zones(pack)
    for z in zones:
        day = ctx.local(t, z).date()
        if any(day in holiday_dates(country, sub, day.year) for country, sub in calendars):
            constraints = tuple(ClosedDays(zone(zn), holiday_calendars=calendars) for zn in zones)
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
    why = rule.params.get("why")
    head = f"{why}: " if why else ""
    if state is ConsentState.WITHDRAWN:
        out.append((_reason("CONSENT_WITHDRAWN", rule, f"{head}consent for {ctx.campaign.purpose} was withdrawn"),
                    ()))
        return
    kind = "written consent" if written else "consent"
    if state is ConsentState.UNPROVED:
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


# (id of the pack, registry name) -> (pack, its national_registry rule for that registry): a linear scan per call
# otherwise. The pack is kept in the value so that an id reused by another pack is detected.
_REGISTRY_RULES: dict[tuple[int, str], tuple[Pack, Rule]] = {}


def _registry_rule(pack: Pack, name: str) -> Rule:
    key = (id(pack), name)
    found = _REGISTRY_RULES.get(key)
    if found is None or found[0] is not pack:
        rule = next(r for r in pack.rules if r.kind == "national_registry" and r.params["registry"] == name)
        if len(_REGISTRY_RULES) > 10_000:
            _REGISTRY_RULES.clear()
        found = _REGISTRY_RULES[key] = (pack, rule)
    return found[1]


@lru_cache(maxsize=64)
def _days(n: int) -> timedelta:
    return timedelta(days=n)


def check_registry_freshness(ctx: _Context, pack: Pack, rule: Rule, t: datetime, out: Out) -> None:
    name = rule.params["registry"]
    registry_rule = _registry_rule(pack, name)
    if not registry_rule.in_force(t) or _registry_exemption(ctx, registry_rule, t):
        return
    copies = ctx.facts.registry_copies
    copy = copies.get(name) or copies.get("national") or copies.get("*")
    max_age = _days(rule.params["max_age_days"])
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
    "caller_id": (check_caller_id, False),
}


# selection -> (selection, sorted change instants, {interval index: rules in force}). The set of rules in
# force only changes at a `from`/`until`, so it is computed once per interval between such instants.
_IN_FORCE: dict[int, tuple[tuple, list[datetime], dict[int, list[tuple[Pack, Rule]]]]] = {}


def _in_force(selected: tuple[tuple[Pack, Rule], ...], t: datetime) -> list[tuple[Pack, Rule]]:
    entry = _IN_FORCE.get(id(selected))
    if entry is None or entry[0] is not selected:
        bounds = sorted({b for p, r in selected for b in (p.start, p.end, r.start, r.end) if b is not None})
        entry = _IN_FORCE[id(selected)] = (selected, bounds, {})
        if len(_IN_FORCE) > 100_000:
            _IN_FORCE.clear()
            _IN_FORCE[id(selected)] = entry
    _sel, bounds, by_interval = entry
    index = bisect_right(bounds, t)
    rules = by_interval.get(index)
    if rules is None:
        rules = by_interval[index] = [(p, r) for p, r in selected if p.in_force(t) and r.in_force(t)]
    return rules


# Kinds whose outcome depends only on where the contact is (zones, jurisdictions) and the instant, never on
# the facts: their result is memoized per plan and instant (see _MEMO).
LOCATION_KINDS = frozenset({"calling_hours", "no_calls_on_days", "public_holidays"})
# (plan, position of the rule in the plan's selection, instant) -> what the check appended, and
# (plan, reason, instant) -> the reason's `until`. One bounded table for all plans: a batch at one instant
# uses a few entries per place; cleared when full (about 10-20 MB at most).
_MEMO: dict[tuple, Any] = {}
_MEMO_MAX = 65_536


class _Interval:
    """The rules of a plan in force between two consecutive effective dates, ready to run."""

    __slots__ = ("entries", "refs", "waivers")

    def __init__(self, plan: _Plan, t: datetime) -> None:
        # (position in the selection, pack, rule, check, time-based, location-only), in selection order
        self.entries = tuple(
            (pos, p, r, *CHECKS[r.kind], r.kind in LOCATION_KINDS)
            for pos, (p, r) in enumerate(plan.selected) if p.in_force(t) and r.in_force(t))
        # consent_waives rules: (rule ids waived, written required, channels)
        self.waivers = tuple((frozenset(r.params["rules"]), r.params["written"], tuple(r.params["channels"]),
                              r.params["proof"])
                             for _pos, _p, r, *_ in self.entries if r.kind == "consent_waives")
        self.refs = tuple(p.ref for p in plan.packs if p.in_force(t))


class _Plan:
    """What does not depend on the facts, for one place (jurisdictions and zones) and one kind of campaign
    (purpose, audience, voice) under one pack set: the selected rules, the problems that deny at once, the
    rules in force per interval between effective dates; the results of its location checks are memoized per
    instant (the same for every contact of a batch in the same place)."""

    __slots__ = ("bounds", "intervals", "pack_zones", "packs", "problems", "selected", "situation")

    def __init__(self, packs: PackSet, situation: Situation, campaign: Campaign) -> None:
        problems = [
            _gate_reason("UNSUPPORTED_JURISDICTION", f"no rule pack for country {country or 'unknown'}",
                         "gate/jurisdiction")
            for country in situation.countries if country not in packs.countries()
        ]
        problems.extend(_gate_reason("MISSING_DATA", text, "gate/address") for text in situation.unresolved)
        if not situation.zones:
            problems.append(_gate_reason("MISSING_DATA", "no time zone known for this number or address",
                                         "gate/zones"))
        self.problems = tuple(problems)
        self.selected = packs.select(situation.codes, campaign.purpose, campaign.audience, campaign.voice,
                                     campaign.dialing)
        self.packs = packs.for_jurisdictions(situation.codes)
        self.bounds = sorted({b for p, r in self.selected for b in (p.start, p.end, r.start, r.end) if b is not None}
                             | {b for p in self.packs for b in (p.start, p.end) if b is not None})
        self.intervals: dict[int, _Interval] = {}
        self.situation = situation
        # a state's pack applied because the state is unknown ("US-*"): its hours, days and holidays are read in
        # that state's zones (a person in Kentucky keeps Kentucky's clock), within the number's candidate zones
        self.pack_zones: dict[int, tuple[str, ...]] = {}
        for p in self.packs:
            country, _, sub = p.jurisdiction.partition("-")
            if sub and f"{country}-*" in situation.codes:
                own = geo.subdivision_zones(country, sub)
                self.pack_zones[id(p)] = tuple(z for z in situation.zones if z in own) or own or situation.zones

    def zones(self, pack: Pack) -> tuple[str, ...]:
        """The zones in which a pack's time rules are read for this place."""
        return self.pack_zones.get(id(pack), self.situation.zones)

    def at(self, t: datetime) -> _Interval:
        index = bisect_right(self.bounds, t)
        interval = self.intervals.get(index)
        if interval is None:
            interval = self.intervals[index] = _Interval(self, t)
        return interval


_PLANS_MAX = 8192  # plans per pack set (distinct places x kinds of campaign); cleared when full


def _plan(packs: PackSet, situation: Situation, campaign: Campaign) -> _Plan:
    plans = getattr(packs, "_plans", None)
    if plans is None:  # not a PackSet: no place to keep plans
        return _Plan(packs, situation, campaign)
    key = (situation.places, situation.zones, situation.unresolved, campaign.purpose, campaign.audience,
           campaign.voice, campaign.dialing)
    plan = plans.get(key)
    if plan is None:
        plan = _Plan(packs, situation, campaign)
        if len(plans) >= _PLANS_MAX:
            plans.clear()
        plans[key] = plan
    return plan


def _run(ctx: _Context, t: datetime, time_only: bool) -> Out:
    """Run the rules in force at `t` that no valid consent waives (all, or only the time-based ones)."""
    plan = ctx.plan
    interval = plan.at(t)
    waived: set[str] | None = None
    for rule_ids, written, channels, proof in interval.waivers:
        if ctx.consent(t, written, channels, proof) is ConsentState.VALID:
            waived = (waived or set()) | rule_ids
    out: Out = []
    memo = _MEMO
    for pos, pack, rule, check, time_based, location in interval.entries:
        if (time_only and not time_based) or (waived and rule.id in waived):
            continue
        if location:
            key = (plan, pos, t)
            found = memo.get(key)
            if found is None:
                found = []
                check(ctx, pack, rule, t, found)
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo[key] = found
            if found:
                out.extend(found)
        else:
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


class Prepared:
    """What a decision needs that depends only on the contact, the campaign and the packs (not on the facts or the
    instant): the number, where it is, the plan of rules; or the reasons that deny it at any instant. A caller
    deciding many scenarios of the same contact and campaign (`dialer gate check`) prepares once, decides many."""

    __slots__ = ("campaign", "codes", "contact", "denial", "plan", "situation")

    def __init__(self, contact: Contact, campaign: Campaign, situation: Situation | None, plan: _Plan | None,
                 denial: tuple[Reason, ...] = (), codes: tuple[str, ...] = ()) -> None:
        self.contact, self.campaign, self.situation, self.plan = contact, campaign, situation, plan
        self.denial, self.codes = denial, codes


def prepare(contact: Contact, campaign: Campaign, packs: PackSet | None = None) -> Prepared:
    """The fact-free part of evaluate (pure)."""
    packs = packs if packs is not None else default_packs()
    try:
        e164 = geo.normalize(contact.phone, contact.country)
    except geo.InvalidNumber as exc:
        return Prepared(contact, campaign, None, None, (_gate_reason("INVALID_NUMBER", str(exc), "gate/number"),))
    situation = situate(e164, (contact.country or "").upper() or None, contact.state, contact.postal_code)
    plan = _plan(packs, situation, campaign)
    if plan.problems:
        return Prepared(contact, campaign, situation, plan, plan.problems, situation.codes)
    return Prepared(contact, campaign, situation, plan)


def evaluate(contact: Contact, campaign: Campaign, facts: Facts, at: datetime, packs: PackSet | None = None,
             ) -> Decision:
    """Decide whether `contact` may be called for `campaign` at `at`, given `facts`. Pure."""
    at = utc(at)
    return _decide(prepare(contact, campaign, packs), facts, at)


def decide(prepared: Prepared, facts: Facts, at: datetime) -> Decision:
    """evaluate() of a prepared contact and campaign. Pure."""
    return _decide(prepared, facts, utc(at))


def _decide(prepared: Prepared, facts: Facts, at: datetime) -> Decision:
    if prepared.denial:
        return _deny(at, list(prepared.denial), prepared.codes)
    contact, campaign, situation, plan = prepared.contact, prepared.campaign, prepared.situation, prepared.plan
    assert situation is not None and plan is not None
    ctx = _Context(contact, campaign, facts, situation, plan)
    out = _run(ctx, at, time_only=False)
    if not out:
        return Decision(allowed=True, at=at, reasons=(), next_allowed_at=None, packs=plan.at(at).refs,
                        jurisdictions=situation.codes)
    reasons: list[Reason] = []
    permanent = False
    memo = _MEMO
    for reason, constraints in out:
        if reason.code in TIME_BASED:
            until = reason.until
            if until is None:  # a location reason: when it clears depends only on the place and the instant
                key = (plan, reason, at)
                until = memo.get(key, _MISSING)
                if until is _MISSING:
                    until = earliest_open(constraints, at)
                    if len(memo) >= _MEMO_MAX:
                        memo.clear()
                    memo[key] = until
            reason = Reason(reason.code, reason.text, reason.rule, reason.source, until)
            permanent = permanent or until is None
        else:
            permanent = True
        reasons.append(reason)
    next_allowed = None
    if reasons and not permanent:
        next_allowed = _next_allowed(ctx, at, [(r, cs) for r, cs in out])
    return Decision(allowed=not reasons, at=at, reasons=tuple(reasons), next_allowed_at=next_allowed,
                    packs=plan.at(at).refs, jurisdictions=situation.codes)


_MISSING = object()


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
    selected = packs.select(situation.codes, campaign.purpose, campaign.audience, campaign.voice, campaign.dialing)
    return tuple(dict.fromkeys(r.params["registry"] for _p, r in _in_force(selected, at)
                               if r.kind == "national_registry"))
