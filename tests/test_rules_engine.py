"""Table-driven tests of the pure gate on the edges of each shipped pack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rules import evaluate, load_packs
from rules.model import Attempt, Campaign, Consent, Contact, Facts, Lists, Relationship

FR_PARIS = Contact("+33145678901", "FR", "75011")
NY = Contact("+12125550123")  # America/New_York
TORONTO = Contact("+14165550123")
LONDON = Contact("+442079460000")
BERLIN = Contact("+49301234567")
TN = Contact("+14232021234")  # phonenumbers: New_York for this prefix; area code 423 also has Central
KY = Contact("+12702021234")
CALLER_ID = "+33162000000"  # in ARCEP's canvassing ranges: lawful everywhere we have packs
# a person selects and keys each number: the state automated-dialing consent rules (Florida, Maryland, Oklahoma)
# stay out of these tables; tests/test_gate_law.py covers them
TM = Campaign("c1", "t1", dialing="manual", caller_id=CALLER_ID)


def z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def clean(copy: str = "2026-01-02T00:00:00Z", **kw) -> Facts:
    """Facts of a contact on no list, with a fresh-enough registry copy for `copy`."""
    return Facts(lists=Lists(national={"*": False}), registry_copies={"national": z(copy)}, **kw)


def decide(contact: Contact, at: str, facts: Facts | None = None, campaign: Campaign = TM):
    return evaluate(contact, campaign, facts if facts is not None else clean(_copy_for(at)), z(at))


def _copy_for(at: str) -> str:
    return (z(at) - timedelta(days=1)).isoformat()


def consent(given: str, written: bool = True, **kw) -> Consent:
    return Consent(given_at=z(given), written=written, source="web form", evidence="ref-1", **kw)


# --- France ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("at,allowed,codes,next_at", [
    ("2026-01-12T08:59:59Z", False, ["OUTSIDE_CALLING_HOURS"], "2026-01-12T09:00:00Z"),  # 09:59:59 Paris
    ("2026-01-12T09:00:00Z", True, [], None),  # 10:00:00 Paris
    ("2026-01-12T11:59:59Z", True, [], None),  # 12:59:59
    ("2026-01-12T12:00:00Z", False, ["OUTSIDE_CALLING_HOURS"], "2026-01-12T13:00:00Z"),  # 13:00 lunch gap
    ("2026-01-12T13:00:00Z", True, [], None),  # 14:00
    ("2026-01-12T18:59:59Z", True, [], None),  # 19:59:59
    ("2026-01-12T19:00:00Z", False, ["OUTSIDE_CALLING_HOURS"], "2026-01-13T09:00:00Z"),  # 20:00
    ("2026-01-16T19:00:00Z", False, ["OUTSIDE_CALLING_HOURS"], "2026-01-19T09:00:00Z"),  # Friday 20:00 -> Monday
    ("2026-01-17T12:00:00Z", False, ["OUTSIDE_CALLING_HOURS"], "2026-01-19T09:00:00Z"),  # Saturday
    # EU DST: Saturday before the spring switch -> Monday 10:00 CEST is 08:00Z, not 09:00Z
    ("2026-03-28T10:00:00Z", False, ["OUTSIDE_CALLING_HOURS"], "2026-03-30T08:00:00Z"),
    ("2026-03-30T07:59:59Z", False, ["OUTSIDE_CALLING_HOURS"], "2026-03-30T08:00:00Z"),
    ("2026-03-30T08:00:00Z", True, [], None),
    # EU DST: autumn switch Sunday 2025-10-26 -> Monday 10:00 CET is 09:00Z (2026's is under opt-in: below)
    ("2025-10-25T10:00:00Z", False, ["OUTSIDE_CALLING_HOURS"], "2025-10-27T09:00:00Z"),
    ("2025-10-27T08:30:00Z", False, ["OUTSIDE_CALLING_HOURS"], "2025-10-27T09:00:00Z"),
    # public holidays
    ("2026-07-14T09:00:00Z", False, ["PUBLIC_HOLIDAY"], "2026-07-15T08:00:00Z"),
    ("2026-05-01T09:00:00Z", False, ["PUBLIC_HOLIDAY"], "2026-05-04T08:00:00Z"),  # Friday 1 May -> Monday
    ("2026-04-03T09:00:00Z", True, [], None),  # Good Friday: a working day in Paris
])
def test_france_hours_and_holidays(at, allowed, codes, next_at):
    d = decide(FR_PARIS, at)
    assert d.allowed is allowed
    assert d.codes() == codes
    assert d.next_allowed_at == (z(next_at) if next_at else None)
    for r in d.reasons:
        assert r.rule.startswith("fr/") and "D.223-9" in r.source


@pytest.mark.parametrize("postal,at,holiday", [
    ("75011", "2026-04-03T09:00:00Z", False),  # Good Friday, Paris
    ("67000", "2026-04-03T09:00:00Z", True),  # Strasbourg (Bas-Rhin)
    ("68100", "2026-04-03T09:00:00Z", True),  # Mulhouse (Haut-Rhin)
    ("57000", "2026-04-03T09:00:00Z", True),  # Metz (Moselle)
    ("54000", "2026-04-03T09:00:00Z", False),  # Nancy (Meurthe-et-Moselle): not Alsace-Moselle
    ("75011", "2025-12-26T09:00:00Z", False),  # 26 December (a Friday)
    ("67000", "2025-12-26T09:00:00Z", True),
])
def test_alsace_moselle_holidays_by_postal_code(postal, at, holiday):
    d = decide(Contact("+33145678901", "FR", postal), at)
    assert d.allowed is not holiday
    assert d.codes() == (["PUBLIC_HOLIDAY"] if holiday else [])


@pytest.mark.parametrize("contact,at,holiday", [
    # no department known (mobile, or landline without an address): Alsace-Moselle's holidays apply too
    (Contact("+33612345678"), "2026-04-03T09:00:00Z", True),  # Good Friday
    (Contact("+33388123456"), "2026-04-03T09:00:00Z", True),  # Strasbourg landline, no address
    (Contact("+33612345678", "FR"), "2025-12-26T09:00:00Z", True),  # 26 December, country but no postal code
    (Contact("+33612345678"), "2026-04-02T09:00:00Z", False),  # the day before: an ordinary Thursday
    # the address gives the department: only its calendar applies
    (Contact("+33612345678", "FR", "75011"), "2026-04-03T09:00:00Z", False),
    (Contact("+33612345678", "FR", "57000"), "2026-04-03T09:00:00Z", True),
])
def test_alsace_moselle_holidays_apply_when_the_department_is_unknown(contact, at, holiday):
    d = decide(contact, at)
    assert d.codes() == (["PUBLIC_HOLIDAY"] if holiday else [])
    if holiday:
        assert d.next_allowed_at is not None and not decide(contact, iso(d.next_allowed_at)).reasons


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_mobile_with_overseas_address_uses_both_zones():
    # +33 6 mobile (Europe/Paris) with a Guadeloupe address (America/Guadeloupe, UTC-4 all year)
    guadeloupe = Contact("+33612345678", "FR", "97110")
    assert decide(guadeloupe, "2026-01-12T09:30:00Z").codes() == ["OUTSIDE_CALLING_HOURS"]  # 10:30 Paris, 05:30 GP
    d = decide(guadeloupe, "2026-01-12T09:30:00Z")
    assert d.next_allowed_at == z("2026-01-12T14:00:00Z")  # 15:00 Paris, 10:00 Guadeloupe
    assert d.jurisdictions == ("FR", "FR-971")
    assert decide(guadeloupe, "2026-01-12T14:00:00Z").allowed
    # Guadeloupe's lunch gap (13:00-14:00 local = 17:00-18:00Z) blocks too
    assert not decide(guadeloupe, "2026-01-12T17:30:00Z").allowed
    # Guadeloupe-only holiday (abolition of slavery, 27 May) applies through the address
    assert decide(guadeloupe, "2026-05-27T15:00:00Z").codes() == ["PUBLIC_HOLIDAY"]
    assert decide(FR_PARIS, "2026-05-27T15:00:00Z").allowed


def _history(*items: tuple[str, str]) -> tuple[Attempt, ...]:
    return tuple(Attempt(at=z(at), campaign="c1", outcome=outcome) for at, outcome in items)


def test_france_fifth_attempt_in_30_days():
    four = _history(("2026-01-05T10:00:00Z", "no_answer"), ("2026-01-06T10:00:00Z", "busy"),
                    ("2026-01-07T10:00:00Z", "no_answer"), ("2026-01-08T10:00:00Z", "answered"))
    three = Facts(lists=Lists(national={"*": False}), registry_copies={"national": z("2026-01-10T00:00:00Z")},
                  history=four[1:])
    assert decide(FR_PARIS, "2026-01-12T10:00:00Z", three).allowed  # 4th attempt allowed
    facts = Facts(lists=three.lists, registry_copies=three.registry_copies, history=four)
    d = decide(FR_PARIS, "2026-01-12T10:00:00Z", facts)
    assert d.codes() == ["FREQUENCY_CAP"]
    # the oldest attempt leaves the 30-day window on 2026-02-04 10:00Z (11:00 Paris, a Wednesday)
    assert d.reasons[0].until == z("2026-02-04T10:00:00Z")
    assert d.next_allowed_at == z("2026-02-04T10:00:00Z")
    assert "4 attempts in the last 30 days" in d.reasons[0].text
    # other campaigns of the same tenant count too (per professional)
    other = Facts(lists=three.lists, registry_copies=three.registry_copies,
                  history=(*four[1:], Attempt(z("2026-01-05T10:00:00Z"), "c2", "no_answer")))
    assert decide(FR_PARIS, "2026-01-12T10:00:00Z", other).codes() == ["FREQUENCY_CAP"]


def test_france_cap_clears_outside_hours_next_allowed_is_inside_hours():
    # the oldest attempt was at 20:30 Paris (a Sunday-free Wednesday 19:30Z): it leaves the window at 20:30,
    # after the 20:00 close, so the next call is Thursday 10:00 Paris
    hist = _history(("2026-01-07T19:30:00Z", "no_answer"), ("2026-01-08T10:00:00Z", "no_answer"),
                    ("2026-01-09T10:00:00Z", "no_answer"), ("2026-01-12T09:30:00Z", "no_answer"))
    facts = Facts(lists=Lists(national={"*": False}), registry_copies={"national": z("2026-01-10T00:00:00Z")},
                  history=hist)
    d = decide(FR_PARIS, "2026-01-12T10:00:00Z", facts)
    assert d.codes() == ["FREQUENCY_CAP"]
    assert d.reasons[0].until == z("2026-02-06T19:30:00Z")
    assert d.next_allowed_at == z("2026-02-09T09:00:00Z")  # Fri 20:30 Paris -> Monday 10:00


@pytest.mark.parametrize("days,allowed", [(59, False), (60, True)])
def test_france_refusal_cooloff(days, allowed):
    refused = z("2026-02-02T10:00:00Z")
    at = refused + timedelta(days=days)
    facts = Facts(lists=Lists(national={"*": False}), registry_copies={"national": at - timedelta(days=2)},
                  history=(Attempt(refused, "c9", "refused"),))
    d = evaluate(FR_PARIS, TM, facts, at)
    assert d.allowed is allowed
    if not allowed:
        assert d.codes() == ["REFUSAL_COOLOFF"]
        assert d.next_allowed_at == refused + timedelta(days=60)


def test_france_consent_waives_only_days_and_hours():
    """C. consom. D.223-9 al. 2: consent lifts the days and hours only; al. 3 (cap, refusal wait) always applies."""
    hist = _history(*((f"2026-01-0{i}T10:00:00Z", "refused") for i in range(5, 9)))
    base = Facts(lists=Lists(national={"*": False}), registry_copies={"national": z("2026-01-10T00:00:00Z")},
                 history=hist)
    saturday_night = "2026-01-10T21:00:00Z"
    assert set(decide(FR_PARIS, saturday_night, base).codes()) == {
        "OUTSIDE_CALLING_HOURS", "FREQUENCY_CAP", "REFUSAL_COOLOFF"}
    waived = Facts(lists=base.lists, registry_copies=base.registry_copies, history=hist,
                   consent=(consent("2026-01-09T12:00:00Z", written=False),))
    assert set(decide(FR_PARIS, saturday_night, waived).codes()) == {"FREQUENCY_CAP", "REFUSAL_COOLOFF"}
    no_history = Facts(lists=base.lists, registry_copies=base.registry_copies,
                       consent=(consent("2026-01-09T12:00:00Z", written=False),))
    assert decide(FR_PARIS, saturday_night, no_history).allowed
    # consent for another purpose does not waive anything
    other = Facts(lists=base.lists, registry_copies=base.registry_copies, history=hist,
                  consent=(consent("2026-01-09T12:00:00Z", purpose="survey"),))
    assert not decide(FR_PARIS, saturday_night, other).allowed


def test_france_bloctel_and_ongoing_contract():
    on_list = Facts(lists=Lists(national={"bloctel": True}), registry_copies={"bloctel": z("2026-01-10T00:00:00Z")})
    d = decide(FR_PARIS, "2026-01-12T10:00:00Z", on_list)
    assert d.codes() == ["NATIONAL_REGISTRY"] and d.next_allowed_at is None
    contract = Facts(lists=on_list.lists, registry_copies=on_list.registry_copies,
                     relationships=(Relationship("contract", z("2025-01-01T00:00:00Z")),))
    # L.223-1 (loi 2020-901): a call in the performance of the ongoing contract AND related to its object
    about_contract = Campaign("c1", "t1", dialing="manual", contract_related=True, caller_id=CALLER_ID)
    assert decide(FR_PARIS, "2026-01-12T10:00:00Z", contract, about_contract).allowed
    assert decide(FR_PARIS, "2026-01-12T10:00:00Z", contract).codes() == ["NATIONAL_REGISTRY"]
    ended = Facts(lists=on_list.lists, registry_copies=on_list.registry_copies,
                  relationships=(Relationship("contract", z("2025-01-01T00:00:00Z"), z("2025-12-31T00:00:00Z")),))
    assert decide(FR_PARIS, "2026-01-12T10:00:00Z", ended, about_contract).codes() == ["NATIONAL_REGISTRY"]
    # no copy loaded at all: the regime requires scrubbing
    no_copy = Facts(lists=Lists(national={"*": False}))
    d = decide(FR_PARIS, "2026-01-12T10:00:00Z", no_copy)
    assert d.codes() == ["REGISTRY_STALE"] and "no copy loaded" in d.reasons[0].text


def test_france_law_change_on_2026_08_11():
    facts = clean("2026-08-01T00:00:00Z")
    before = decide(FR_PARIS, "2026-08-10T08:00:00Z", facts)  # Monday 10:00 Paris, Bloctel regime
    assert before.allowed
    after = decide(FR_PARIS, "2026-08-11T08:00:00Z", facts)  # Tuesday 10:00 Paris, opt-in regime
    assert after.codes() == ["NO_CONSENT"] and after.next_allowed_at is None
    assert after.reasons[0].rule == "fr/opt-in"
    # the law's clock is Paris: 2026-08-10T22:30Z is already the 11th in Paris
    assert decide(FR_PARIS, "2026-08-10T22:30:00Z", facts).codes()[-1] == "NO_CONSENT"
    # under opt-in, a Bloctel registration no longer matters; consent does
    on_list = Facts(lists=Lists(national={"*": True}), consent=(consent("2026-08-01T00:00:00Z"),))
    assert decide(FR_PARIS, "2026-08-11T08:00:00Z", on_list).allowed


def test_withdrawal_wins_over_earlier_consent():
    given = consent("2026-09-01T00:00:00Z")
    withdrawn = Consent(given_at=None, withdrawn_at=z("2026-09-05T00:00:00Z"), source="call")
    facts = Facts(consent=(given, withdrawn))
    d = decide(FR_PARIS, "2026-09-07T08:00:00Z", facts)
    assert d.codes() == ["CONSENT_WITHDRAWN"]
    # before the withdrawal the consent counted
    assert decide(FR_PARIS, "2026-09-04T08:00:00Z", facts).allowed
    # a consent given after the withdrawal counts again
    again = Facts(consent=(given, withdrawn, consent("2026-09-06T00:00:00Z")))
    assert decide(FR_PARIS, "2026-09-07T08:00:00Z", again).allowed
    # an expired consent does not count
    expired = Facts(consent=(consent("2026-09-01T00:00:00Z", expires_at=z("2026-09-03T00:00:00Z")),))
    assert decide(FR_PARIS, "2026-09-07T08:00:00Z", expired).codes() == ["NO_CONSENT"]


# --- United States ------------------------------------------------------------------------------------

@pytest.mark.parametrize("contact,at,allowed,next_at", [
    # spring forward 2026-03-08: 08:00 EDT is 12:00Z (the day before, 08:00 EST is 13:00Z)
    (NY, "2026-03-07T12:59:59Z", False, "2026-03-07T13:00:00Z"),
    (NY, "2026-03-08T11:59:59Z", False, "2026-03-08T12:00:00Z"),
    (NY, "2026-03-08T12:00:00Z", True, None),
    (NY, "2026-03-09T00:59:59Z", True, None),  # 20:59:59 EDT
    (NY, "2026-03-09T01:00:00Z", False, "2026-03-09T12:00:00Z"),  # 21:00 EDT
    # fall back 2026-11-01: 08:00 EST is 13:00Z
    (NY, "2026-11-01T12:30:00Z", False, "2026-11-01T13:00:00Z"),
    (NY, "2026-11-01T13:00:00Z", True, None),
    (NY, "2026-11-02T01:59:59Z", True, None),  # 20:59:59 EST
    (NY, "2026-11-02T02:00:00Z", False, "2026-11-02T13:00:00Z"),
    # area code 423 (Tennessee) spans Eastern and Central: 08:00 Eastern is 07:00 Central
    (TN, "2026-01-12T13:30:00Z", False, "2026-01-12T14:00:00Z"),
    (TN, "2026-01-12T14:00:00Z", True, None),  # 09:00 ET, 08:00 CT
    (TN, "2026-01-13T01:59:59Z", True, None),  # 20:59:59 ET
    (TN, "2026-01-13T02:00:00Z", False, "2026-01-13T14:00:00Z"),  # 21:00 ET
    # area code 270 (Kentucky, 10:00-21:00 by state rule) spans Central and Eastern too
    (KY, "2026-01-12T15:30:00Z", False, "2026-01-12T16:00:00Z"),  # 10:30 ET, 09:30 CT
    (KY, "2026-01-12T16:00:00Z", True, None),
    (KY, "2026-01-13T02:00:00Z", False, "2026-01-13T16:00:00Z"),  # 21:00 ET -> 10:00 CT next day
])
def test_us_hours_dst_and_split_area_code(contact, at, allowed, next_at):
    d = decide(contact, at)
    assert d.allowed is allowed, d.reasons
    assert d.next_allowed_at == (z(next_at) if next_at else None)
    assert all(r.code == "OUTSIDE_CALLING_HOURS" for r in d.reasons)


def test_area_code_with_several_zones_lists_them_all():
    from rules.geo import zones_for_number

    assert set(zones_for_number("+14232021234")) == {"America/Chicago", "America/New_York"}
    # a non-geographic (toll-free) number gets every zone of the plan, Guam to Pago Pago
    zones = zones_for_number("+18005550199")
    assert {"Pacific/Guam", "Pacific/Honolulu", "America/New_York", "America/St_Johns"} <= set(zones)
    d = decide(Contact("+18005550199"), "2026-01-12T18:00:00Z")
    # its state is unknown: every state's hours apply too ("US-*"; tests/test_gate_law.py)
    assert set(d.codes()) == {"OUTSIDE_CALLING_HOURS"}
    assert d.next_allowed_at is not None
    from zoneinfo import ZoneInfo

    for name in zones:  # the next instant is inside 08:00-21:00 everywhere
        assert 8 <= d.next_allowed_at.astimezone(ZoneInfo(name)).hour < 21
    assert decide(Contact("+18005550199"), d.next_allowed_at.isoformat()).allowed


def test_canada_867_spans_five_zones():
    nt = Contact("+18675550123")  # Toronto .. Vancouver
    assert decide(nt, "2026-01-12T15:00:00Z").codes() == ["OUTSIDE_CALLING_HOURS"]  # 10:00 ET, 07:00 PT
    assert decide(nt, "2026-01-12T15:00:00Z").next_allowed_at == z("2026-01-12T17:00:00Z")  # 09:00 PT


def test_us_state_rules_by_area_code_and_by_address():
    evening = "2026-01-13T01:30:00Z"  # 20:30 Eastern: federal allows, Florida does not
    assert decide(NY, evening).allowed
    fl = decide(Contact("+13055550123"), evening)
    assert fl.codes() == ["OUTSIDE_CALLING_HOURS"] and fl.reasons[0].rule == "us-fl/hours"
    # Florida area code + Georgia address: federal + FL (+ GA, no pack) apply
    fl_ga = decide(Contact("+13055550123", "US", "30301"), evening)
    assert fl_ga.jurisdictions == ("US", "US-FL", "US-GA") and fl_ga.codes() == ["OUTSIDE_CALLING_HOURS"]
    # New York number, Florida address (from the ZIP code): FL rules apply too
    ny_fl = decide(Contact("+12125550123", "US", "33101"), evening)
    assert "US-FL" in ny_fl.jurisdictions and ny_fl.reasons[0].rule == "us-fl/hours"
    assert {p.id for p in ny_fl.packs} == {"us", "us-fl"}


@pytest.mark.parametrize("contact", [
    Contact("+12125550123", None, None, "FL"),  # a state without a country: the number's country
    Contact("+12125550123", None, "33101"),  # a ZIP code without a country
    Contact("+12125550123", "", "33101-1234"),
])
def test_address_without_a_country_is_read_in_the_numbers_country(contact):
    d = decide(contact, "2026-01-13T01:30:00Z")  # 20:30 Eastern: Florida forbids, federal allows
    assert "US-FL" in d.jurisdictions and [r.rule for r in d.reasons] == ["us-fl/hours"]


@pytest.mark.parametrize("contact,field", [
    (Contact("+12125550123", "US", None, "Florida"), "state 'Florida'"),  # not a state code
    (Contact("+12125550123", "US", None, "XX"), "state 'XX'"),
    (Contact("+12125550123", "US", "abc"), "postal code 'abc'"),
    (Contact("+14165550123", "CA", "123"), "postal code '123'"),
    (Contact("+33612345678", "FR", "7501"), "postal code '7501'"),  # 4 digits: department unknown
    (Contact("+33612345678", "FR", None, "Alsace"), "state 'Alsace'"),
    (Contact("+12125550123", None, "H2X 1Y4"), "postal code 'H2X 1Y4'"),  # a Canadian code, read as US
])
def test_address_the_gate_cannot_place_is_denied(contact, field):
    """A state rule (Florida's hours, Alsace-Moselle's holidays) may apply at an address the gate cannot
    place: deny with MISSING_DATA naming the field rather than apply only the number's rules."""
    d = decide(contact, "2026-01-12T15:00:00Z")  # inside every window
    assert not d.allowed and d.codes() == ["MISSING_DATA"] and d.next_allowed_at is None
    assert field in d.reasons[0].text and d.reasons[0].rule == "gate/address"
    # the same contact with a country-only address is not denied for it
    assert "MISSING_DATA" not in decide(Contact(contact.phone, contact.country or "US"), "2026-01-12T15:00:00Z").codes()


def test_florida_three_calls_in_24_hours():
    hist = _history(("2026-01-12T14:00:00Z", "no_answer"), ("2026-01-12T16:00:00Z", "busy"),
                    ("2026-01-12T18:00:00Z", "no_answer"))
    facts = Facts(lists=Lists(national={"*": False}), registry_copies={"national": z("2026-01-10T00:00:00Z")},
                  history=hist)
    d = decide(Contact("+13055550123"), "2026-01-12T20:00:00Z", facts)
    assert d.codes() == ["FREQUENCY_CAP"] and d.reasons[0].rule == "us-fl/frequency"
    assert d.next_allowed_at == z("2026-01-13T14:00:00Z")
    assert decide(NY, "2026-01-12T20:00:00Z", facts).allowed  # no federal cap


def test_maryland_rules_start_2024_01_01():
    md = Contact("+14105550123")
    facts = clean("2023-12-20T00:00:00Z")
    assert decide(md, "2023-12-30T01:30:00Z", facts).allowed  # Fri 29 Dec 2023, 20:30 ET
    facts = clean("2024-01-01T00:00:00Z")
    assert decide(md, "2024-01-06T01:30:00Z", facts).codes() == ["OUTSIDE_CALLING_HOURS"]


def test_alabama_sunday_and_state_holiday():
    al = Contact("+12055550123")  # America/Chicago
    assert decide(al, "2026-01-18T16:00:00Z").codes() == ["DAY_NOT_ALLOWED"]  # Sunday 10:00 CT
    d = decide(al, "2026-01-19T16:00:00Z")  # MLK / Robert E. Lee Day
    assert d.codes() == ["PUBLIC_HOLIDAY"] and d.next_allowed_at == z("2026-01-20T14:00:00Z")
    assert decide(al, "2026-01-20T16:00:00Z").allowed


@pytest.mark.parametrize("age_days,stale", [(31, False), (32, True)])
def test_us_registry_copy_age(age_days, stale):
    at = z("2026-02-10T15:00:00Z")
    facts = Facts(lists=Lists(national={"us_dnc": False}), registry_copies={"us_dnc": at - timedelta(days=age_days)})
    d = evaluate(NY, TM, facts, at)
    assert d.codes() == (["REGISTRY_STALE"] if stale else [])
    if stale:
        assert d.next_allowed_at is None and d.reasons[0].rule == "us/dnc-copy"


def test_us_registry_missing_copy_or_membership_denies():
    at = "2026-02-10T15:00:00Z"
    d = decide(NY, at, Facts(lists=Lists(national={"*": False})))
    assert d.codes() == ["REGISTRY_STALE"] and "no copy loaded" in d.reasons[0].text
    d = decide(NY, at, Facts(registry_copies={"national": z("2026-02-09T00:00:00Z")}))
    assert d.codes() == ["MISSING_DATA"] and d.reasons[0].rule == "us/dnc"


@pytest.mark.parametrize("relationship,months_ago,allowed", [
    ("purchase", 17, True), ("purchase", 19, False), ("inquiry", 2, True), ("inquiry", 4, False),
])
def test_us_established_business_relationship(relationship, months_ago, allowed):
    at = z("2026-06-15T15:00:00Z")
    facts = Facts(lists=Lists(national={"*": True}), registry_copies={"national": z("2026-06-01T00:00:00Z")},
                  relationships=(Relationship(relationship, at - timedelta(days=30.5 * months_ago)),))
    d = evaluate(NY, TM, facts, at)
    assert d.allowed is allowed
    assert d.codes() == ([] if allowed else ["NATIONAL_REGISTRY"])


def test_us_artificial_voice_needs_written_consent():
    robo = Campaign("c1", "t1", caller_id=CALLER_ID, voice="artificial")
    at = "2026-01-12T15:00:00Z"
    d = decide(NY, at, campaign=robo)
    assert d.codes() == ["WRITTEN_CONSENT_REQUIRED"] and d.reasons[0].rule == "us/artificial-voice"
    oral = clean("2026-01-10T00:00:00Z", consent=(consent("2026-01-01T00:00:00Z", written=False),))
    assert decide(NY, at, oral, robo).codes() == ["WRITTEN_CONSENT_REQUIRED"]
    written = clean("2026-01-10T00:00:00Z", consent=(consent("2026-01-01T00:00:00Z", written=True),))
    assert decide(NY, at, written, robo).allowed
    assert decide(NY, at, campaign=TM).allowed  # human agents need no consent here


def test_company_and_campaign_dnc_are_permanent():
    at = "2026-01-12T15:00:00Z"
    base = clean("2026-01-10T00:00:00Z")
    for lists, code in ((Lists(national={"*": False}, company=True), "COMPANY_DNC"),
                        (Lists(national={"*": False}, campaign=True), "CAMPAIGN_DNC")):
        d = decide(NY, at, Facts(lists=lists, registry_copies=base.registry_copies))
        assert d.codes() == [code] and d.next_allowed_at is None


# --- United Kingdom, Canada, Germany ------------------------------------------------------------------------

@pytest.mark.parametrize("hours_after,allowed", [(71, False), (72, True)])
def test_uk_72_hours_after_abandoned_call(hours_after, allowed):
    abandoned = z("2026-01-12T10:00:00Z")
    at = abandoned + timedelta(hours=hours_after)
    facts = Facts(lists=Lists(national={"tps": False, "ctps": False}),
                  registry_copies={"tps": z("2026-01-10T00:00:00Z"), "ctps": z("2026-01-10T00:00:00Z")},
                  history=(Attempt(abandoned, "c1", "abandoned"),))
    d = evaluate(LONDON, TM, facts, at)
    assert d.allowed is allowed
    if not allowed:
        assert d.codes() == ["ABANDON_COOLOFF"] and d.next_allowed_at == abandoned + timedelta(hours=72)


def test_uk_tps_needs_consent():
    facts = Facts(lists=Lists(national={"*": True}), registry_copies={"national": z("2026-01-10T00:00:00Z")})
    # on "the national registry": PECR reg. 26's one register, TPS and CTPS alike
    assert decide(LONDON, "2026-01-12T10:00:00Z", facts).codes() == ["NATIONAL_REGISTRY", "NATIONAL_REGISTRY"]
    ok = Facts(lists=facts.lists, registry_copies=facts.registry_copies,
               consent=(consent("2026-01-01T00:00:00Z", written=False),))
    assert decide(LONDON, "2026-01-12T10:00:00Z", ok).allowed


@pytest.mark.parametrize("at,allowed", [
    ("2026-01-12T13:59:59Z", False),  # Monday 08:59:59 Toronto
    ("2026-01-12T14:00:00Z", True),  # 09:00
    ("2026-01-13T02:29:59Z", True),  # 21:29:59
    ("2026-01-13T02:30:00Z", False),  # 21:30
    ("2026-01-17T14:30:00Z", False),  # Saturday 09:30
    ("2026-01-17T15:00:00Z", True),  # Saturday 10:00
    ("2026-01-17T22:59:59Z", True),  # Saturday 17:59:59
    ("2026-01-17T23:00:00Z", False),  # Saturday 18:00
])
def test_canada_weekday_and_weekend_windows(at, allowed):
    d = decide(TORONTO, at)
    assert d.allowed is allowed
    assert d.codes() == ([] if allowed else ["OUTSIDE_CALLING_HOURS"])


def test_canada_saturday_evening_next_is_sunday_morning():
    d = decide(TORONTO, "2026-01-17T23:00:00Z")
    assert d.next_allowed_at == z("2026-01-18T15:00:00Z")  # Sunday 10:00


def test_germany_opt_in():
    d = decide(BERLIN, "2026-01-12T10:00:00Z", Facts())
    assert d.codes() == ["NO_CONSENT"] and d.reasons[0].rule == "de/consumer-consent"
    assert "UWG" in d.reasons[0].source
    with_consent = Facts(consent=(consent("2026-01-01T00:00:00Z"),))
    assert decide(BERLIN, "2026-01-12T10:00:00Z", with_consent).allowed
    b2b = Campaign("c1", "t1", caller_id=CALLER_ID, audience="business")
    assert decide(BERLIN, "2026-01-12T10:00:00Z", Facts(), b2b).allowed
    robo_b2b = Campaign("c1", "t1", caller_id=CALLER_ID, audience="business", voice="artificial")
    assert decide(BERLIN, "2026-01-12T10:00:00Z", Facts(), robo_b2b).codes() == ["NO_CONSENT"]


# --- fail closed --------------------------------------------------------------------------------------

@pytest.mark.parametrize("contact,code", [
    (Contact("+61291234567"), "UNSUPPORTED_JURISDICTION"),  # Australia: no pack
    (Contact("+33145678901", "AU", "2000"), "UNSUPPORTED_JURISDICTION"),  # French number, Australian address
    (Contact("not a number"), "INVALID_NUMBER"),
    (Contact("+3314567"), "INVALID_NUMBER"),
    (Contact("0145678901"), "INVALID_NUMBER"),  # national format without a country
])
def test_fail_closed(contact, code):
    d = decide(contact, "2026-01-12T10:00:00Z")
    assert not d.allowed and d.codes() == [code] and d.next_allowed_at is None
    assert d.reasons[0].text and d.reasons[0].source


def test_national_format_with_country():
    d = decide(Contact("01 45 67 89 01", "FR"), "2026-01-12T10:00:00Z")
    assert d.allowed and d.jurisdictions == ("FR",)


def test_retry_spacing_from_a_custom_pack(tmp_path: Path):
    (tmp_path / "us-spacing.toml").write_text('''
id = "us-ny"
version = "test"
jurisdiction = "US-NY"
timezone = "America/New_York"
[[rules]]
id = "us-ny/spacing"
kind = "retry_spacing"
duration = "4h"
source = "tenant policy"
''')
    packs = load_packs(tmp_path)
    facts = clean("2026-01-10T00:00:00Z", history=_history(("2026-01-12T14:00:00Z", "no_answer")))
    d = evaluate(NY, TM, facts, z("2026-01-12T15:00:00Z"), packs)
    assert d.codes() == ["RETRY_SPACING"] and d.next_allowed_at == z("2026-01-12T18:00:00Z")
    assert ("us-ny", "test") in {(p.id, p.version) for p in d.packs}
    # another campaign's attempts do not count for a campaign-scoped spacing
    other = Campaign("c2", "t1", caller_id=CALLER_ID)
    assert evaluate(NY, other, facts, z("2026-01-12T15:00:00Z"), packs).allowed


DAILY_PARIS = """
id = "fr-75-daily"
version = "test"
jurisdiction = "FR-75"
timezone = "Europe/Paris"
[[rules]]
id = "test/daily"
kind = "calling_hours"
source = "test pack: every day 10:00-20:00"
[rules.windows]
mon = ["10:00-20:00"]
tue = ["10:00-20:00"]
wed = ["10:00-20:00"]
thu = ["10:00-20:00"]
fri = ["10:00-20:00"]
sat = ["10:00-20:00"]
sun = ["10:00-20:00"]
"""


@pytest.mark.parametrize("at,allowed,next_at", [
    ("2026-03-29T07:59:59Z", False, "2026-03-29T08:00:00Z"),  # spring switch day: 09:59:59 CEST
    ("2026-03-29T08:00:00Z", True, None),  # 10:00 CEST
    ("2026-03-28T08:30:00Z", False, "2026-03-28T09:00:00Z"),  # the day before: 10:00 CET is 09:00Z
    ("2026-10-25T08:30:00Z", False, "2026-10-25T09:00:00Z"),  # autumn switch day: 09:30 CET
    ("2026-10-25T09:00:00Z", True, None),
    ("2026-10-25T18:59:59Z", True, None),  # 19:59:59 CET
    ("2026-10-25T19:00:00Z", False, "2026-10-26T09:00:00Z"),
])
def test_paris_dst_switch_days(tmp_path: Path, at, allowed, next_at):
    (tmp_path / "daily.toml").write_text(DAILY_PARIS)
    packs = load_packs(tmp_path)
    # consent: the French limits are waived, only the test pack's daily window is left
    facts = clean(_copy_for(at), consent=(consent("2026-01-01T00:00:00Z"),))
    d = evaluate(FR_PARIS, TM, facts, z(at), packs)
    assert d.allowed is allowed, d.reasons
    assert d.next_allowed_at == (z(next_at) if next_at else None)


def test_opt_out_heard_on_a_call_counts_before_the_list_catches_up():
    facts = clean("2026-01-10T00:00:00Z", history=_history(("2026-01-11T15:00:00Z", "opted_out")))
    d = decide(NY, "2026-01-12T15:00:00Z", facts)
    assert d.codes() == ["COMPANY_DNC"] and d.next_allowed_at is None
    # the company DNC rule changed citation on 2025-04-11 (FCC 24-24); both deny
    old = evaluate(NY, TM, Facts(lists=Lists(national={"*": False}, company=True),
                                 registry_copies={"national": z("2025-01-10T00:00:00Z")}), z("2025-01-13T15:00:00Z"))
    assert old.codes() == ["COMPANY_DNC"] and old.reasons[0].rule == "us/company-dnc-before-2025-04-11"
    assert d.reasons[0].rule == "us/company-dnc"


def test_required_registries():
    from rules import required_registries

    at = z("2026-01-12T10:00:00Z")
    assert required_registries(NY, TM, at) == ("us_dnc",)
    assert required_registries(FR_PARIS, TM, at) == ("bloctel",)
    assert required_registries(FR_PARIS, TM, z("2026-08-11T10:00:00Z")) == ()  # opt-in regime: no Bloctel
    # PECR reg. 26: one register; both lists are read whatever the audience
    assert required_registries(LONDON, Campaign("c1", "t1", audience="business"), at) == ("tps", "ctps")
    assert required_registries(LONDON, TM, at) == ("tps", "ctps")
    assert required_registries(Contact("+12125550123", "CA", "H2X 1Y4"), TM, at) == ("us_dnc", "dncl")
    assert required_registries(Contact("nope"), TM, at) == ()


@pytest.mark.parametrize("contact,purpose,at,codes", [
    (NY, "charity", "2026-01-12T12:00:00Z", ["OUTSIDE_CALLING_HOURS"]),  # TSR hours bind charitable telemarketing
    (NY, "charity", "2026-01-12T15:00:00Z", []),  # ... but the DNC registry does not (on it, no copy needed)
    (NY, "survey", "2026-01-12T12:00:00Z", []),  # no federal hours for surveys
    (TORONTO, "survey", "2026-01-12T12:00:00Z", ["OUTSIDE_CALLING_HOURS"]),  # CRTC hours bind exempt calls too
    (LONDON, "charity", "2026-01-12T12:00:00Z", ["NATIONAL_REGISTRY"] * 2),  # TPS/CTPS: charities' marketing too
    (LONDON, "survey", "2026-01-12T12:00:00Z", []),
])
def test_purposes_select_the_rules(contact, purpose, at, codes):
    on_list = Facts(lists=Lists(national={"*": True}), registry_copies={"national": z("2026-01-10T00:00:00Z")})
    d = decide(contact, at, on_list, Campaign("c1", "t1", caller_id=CALLER_ID, purpose=purpose))
    assert d.codes() == codes


def test_us_artificial_voice_informational_needs_prior_express_consent():
    reminder = Campaign("c1", "t1", caller_id=CALLER_ID, purpose="informational", voice="artificial")
    at = "2026-01-12T15:00:00Z"
    d = decide(NY, at, Facts(), reminder)
    assert d.codes() == ["NO_CONSENT"] and d.reasons[0].rule == "us/artificial-voice-any-purpose"
    oral = Facts(consent=(consent("2026-01-01T00:00:00Z", written=False, purpose="informational"),))
    assert decide(NY, at, oral, reminder).allowed
    human = Campaign("c1", "t1", caller_id=CALLER_ID, purpose="informational")
    assert decide(NY, at, Facts(), human).allowed  # human agent


# --- audit additions: edges of packs that had none -------------------------------------------------

@pytest.mark.parametrize("lists,copy_age_days,relationship,codes", [
    ({"*": False}, 31, None, []),
    ({"*": False}, 32, None, ["REGISTRY_STALE"]),  # copy older than 31 days blocks the DNCL regime
    ({"*": True}, 10, None, ["NATIONAL_REGISTRY"]),
    ({"*": True}, 10, ("purchase", 17), []),  # existing business relationship
    ({"*": True}, 10, ("purchase", 19), ["NATIONAL_REGISTRY"]),
    ({}, 10, None, ["MISSING_DATA"]),  # membership unknown
])
def test_canada_dncl_and_copy_age(lists, copy_age_days, relationship, codes):
    at = z("2026-01-12T15:00:00Z")  # Monday 10:00 Toronto
    rels = ()
    if relationship:
        rels = (Relationship(relationship[0], at - timedelta(days=relationship[1] * 30.5)),)
    facts = Facts(lists=Lists(national=lists), registry_copies={"dncl": at - timedelta(days=copy_age_days)},
                  relationships=rels)
    d = evaluate(TORONTO, TM, facts, at)
    assert d.codes() == codes
    assert all(r.rule.startswith("ca/") for r in d.reasons)
    assert d.packs[0].id == "ca"


@pytest.mark.parametrize("contact,at,codes", [
    (Contact("+14055550123"), "2026-01-13T01:59:59Z", []),  # Oklahoma 19:59:59 CST
    (Contact("+14055550123"), "2026-01-13T02:00:00Z", ["OUTSIDE_CALLING_HOURS"]),  # 20:00 CST
    (Contact("+13375550123"), "2026-01-18T16:00:00Z", ["DAY_NOT_ALLOWED"]),  # Louisiana, Sunday
    (Contact("+16015550123"), "2026-01-18T16:00:00Z", ["DAY_NOT_ALLOWED"]),  # Mississippi, Sunday
    (Contact("+16015550123"), "2026-01-19T16:00:00Z", []),  # Mississippi, Monday 10:00 (no holiday rule)
    (Contact("+13375550123"), "2026-02-17T16:00:00Z", ["PUBLIC_HOLIDAY"]),  # Louisiana, Mardi Gras
    (Contact("+13375550123"), "2026-01-21T02:00:00Z", ["OUTSIDE_CALLING_HOURS"]),  # Louisiana Tuesday 20:00 CST
    (Contact("+13375550123"), "2026-01-21T01:59:59Z", []),  # 19:59:59
])
def test_oklahoma_louisiana_mississippi(contact, at, codes):
    assert decide(contact, at).codes() == codes


def test_oklahoma_three_calls_in_24_hours():
    at = z("2026-01-12T18:00:00Z")
    three = tuple(Attempt(at - timedelta(hours=h), "c2", "no_answer") for h in (1, 5, 23))
    d = evaluate(Contact("+14055550123"), TM, clean("2026-01-10T00:00:00Z", history=three), at)
    assert d.codes() == ["FREQUENCY_CAP"] and d.reasons[0].rule == "us-ok/frequency"
    assert d.next_allowed_at == at + timedelta(hours=1)  # the oldest of the three leaves the 24 h window
    two = three[:2]
    assert evaluate(Contact("+14055550123"), TM, clean("2026-01-10T00:00:00Z", history=two), at).allowed


@pytest.mark.parametrize("records,codes", [
    ([consent("2025-01-01T00:00:00Z", expires_at=z("2026-01-12T15:00:00Z"))], ["WRITTEN_CONSENT_REQUIRED"]),
    ([consent("2025-01-01T00:00:00Z"), Consent(None, withdrawn_at=z("2025-06-01T00:00:00Z"))],
     ["CONSENT_WITHDRAWN"]),
    ([consent("2026-01-13T00:00:00Z")], ["WRITTEN_CONSENT_REQUIRED"]),  # given after the call instant
    ([consent("2025-01-01T00:00:00Z", campaign="c2")], ["WRITTEN_CONSENT_REQUIRED"]),  # another campaign
    ([consent("2025-01-01T00:00:00Z", purpose="informational")], ["WRITTEN_CONSENT_REQUIRED"]),
    ([consent("2025-01-01T00:00:00Z", channel="email")], ["WRITTEN_CONSENT_REQUIRED"]),
    ([consent("2025-01-01T00:00:00Z")], []),
])
def test_us_artificial_voice_consent_must_be_written_current_and_in_scope(records, codes):
    robo = Campaign("c1", "t1", caller_id=CALLER_ID, voice="artificial")
    facts = clean("2026-01-10T00:00:00Z", consent=tuple(records))
    assert decide(NY, "2026-01-12T15:00:00Z", facts, robo).codes() == codes
