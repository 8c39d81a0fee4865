"""Issue 13, points 1-10: the law corrected and completed. Each test names the text it checks.

Every one of these failed on the gate before the issue (b1bbe58): it allowed what these texts forbid, or applied
a rule the text does not contain.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rules import default_packs, evaluate, load_packs
from rules.model import Attempt, Campaign, Consent, Contact, Facts, Lists, Relationship
from rules.recording import notice_required, recording_notice
from rules.scenario import ScenarioError, parse_scenario

PARIS = Contact("+33145678901", "FR", "75011")
LONDON = Contact("+442079460000")
TORONTO = Contact("+14165550123")
BERLIN = Contact("+49301234567")
NY = Contact("+12125550123")
TOLL_FREE = Contact("+18005550199")  # no state: toll-free
MD = Contact("+14105550123")  # Maryland (Eastern)
OK = Contact("+14055550123")  # Oklahoma (Central)
FL = Contact("+13055550123")  # Florida (Eastern)
MS = Contact("+16015550123")  # Mississippi (Central)
AL = Contact("+12055550123")  # Alabama (Central)
# a lawful caller ID everywhere (ARCEP canvassing range; the caller-ID rules: tests/test_rules_caller_id.py)
CALLER_ID = "+33162000000"
MANUAL = Campaign("c1", "t1", caller_id=CALLER_ID, dialing="manual")
PREDICTIVE = Campaign("c1", "t1", caller_id=CALLER_ID, dialing="predictive")


def z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def proved(given: str, written: bool = True, **kw) -> Consent:
    return Consent(given_at=z(given), written=written, source="web form", evidence="ref-1", **kw)


def facts(**kw) -> Facts:
    """Not on any list, fresh registry copies."""
    kw.setdefault("lists", Lists(national={"*": False}))
    kw.setdefault("registry_copies", {"national": z("2026-01-01T00:00:00Z")})
    return Facts(**kw)


def attempts(*items: tuple[str, str]) -> tuple[Attempt, ...]:
    return tuple(Attempt(z(at), "c1", outcome) for at, outcome in items)


# --- 1. France: consent lifts only the days and hours (C. consom. D.223-9) ------------------------------------

@pytest.mark.parametrize("at,copy", [("2026-01-13T10:00:00Z", "2026-01-10T00:00:00Z"),  # Bloctel regime
                                     ("2026-09-15T09:00:00Z", "2026-09-10T00:00:00Z")])  # opt-in regime
def test_fr_consent_does_not_lift_the_four_per_thirty_days_cap(at, copy):
    """D.223-9 al. 3: at most 4 calls or attempts per 30 calendar days; no consent exception (al. 2 lifts only
    the days and hours)."""
    four = tuple(Attempt(z(at) - timedelta(days=d), "c1", "no_answer") for d in (1, 3, 5, 20))
    d = evaluate(PARIS, MANUAL, facts(consent=(proved("2025-06-01T00:00:00Z"),), history=four,
                                      registry_copies={"national": z(copy)}), z(at))
    assert d.codes() == ["FREQUENCY_CAP"] and d.reasons[0].rule == "fr/frequency"
    assert "D.223-9 al. 3" in d.reasons[0].source


@pytest.mark.parametrize("at,copy", [("2026-01-13T10:00:00Z", "2026-01-10T00:00:00Z"),
                                     ("2026-09-15T09:00:00Z", "2026-09-10T00:00:00Z")])
def test_fr_consent_does_not_lift_the_sixty_days_after_a_refusal(at, copy):
    """D.223-9 al. 3: 60 calendar days of silence after a refusal during a call, consent or not."""
    refused = (Attempt(z(at) - timedelta(days=10), "c1", "refused"),)
    d = evaluate(PARIS, MANUAL, facts(consent=(proved("2025-06-01T00:00:00Z"),), history=refused,
                                      registry_copies={"national": z(copy)}), z(at))
    assert d.codes() == ["REFUSAL_COOLOFF"] and d.next_allowed_at is not None


def test_fr_consent_still_lifts_the_days_and_hours():
    """D.223-9 al. 2: with prior express consent the professional can establish, outside the days and hours."""
    saturday_evening = z("2026-01-10T20:00:00Z")  # 21:00 Paris
    assert evaluate(PARIS, MANUAL, facts(), saturday_evening).codes() == ["OUTSIDE_CALLING_HOURS"]
    assert evaluate(PARIS, MANUAL, facts(consent=(proved("2026-01-01T00:00:00Z", written=False),)),
                    saturday_evening).allowed
    waiver = default_packs().rule("fr/consent-waiver")
    assert waiver is not None and set(waiver.params["rules"]) == {"fr/hours", "fr/holidays"}
    assert "D.223-9 al. 2" in waiver.source


# --- 2. United Kingdom: TPS and CTPS are one register (PECR reg. 21(1)(b), 26) ----------------------------------

@pytest.mark.parametrize("audience,lists,rule", [
    ("business", {"tps": True, "ctps": False}, "gb/tps"),  # a business campaign calling a sole trader on TPS
    ("consumer", {"tps": False, "ctps": True}, "gb/ctps"),  # a consumer campaign calling a CTPS number
])
def test_uk_a_number_on_either_list_is_denied_whatever_the_audience(audience, lists, rule):
    at = z("2026-01-12T10:00:00Z")
    campaign = Campaign("c1", "t1", caller_id=CALLER_ID, audience=audience, dialing="manual")
    on_list = facts(lists=Lists(national=lists), registry_copies={"tps": z("2026-01-10T00:00:00Z"),
                                                                 "ctps": z("2026-01-10T00:00:00Z")})
    d = evaluate(LONDON, campaign, on_list, at)
    assert d.codes() == ["NATIONAL_REGISTRY"] and d.reasons[0].rule == rule
    assert "reg. 21(1)(b)" in d.reasons[0].source and "26" in d.reasons[0].source
    # unless that subscriber consented (reg. 21(3))
    consented = facts(lists=on_list.lists, registry_copies=on_list.registry_copies,
                      consent=(proved("2025-12-01T00:00:00Z", written=False),))
    assert evaluate(LONDON, campaign, consented, at).allowed


def test_uk_membership_of_both_lists_must_be_known():
    """Both lists are one register: knowing only the TPS answer is not knowing the number is unlisted."""
    only_tps = facts(lists=Lists(national={"tps": False}), registry_copies={"tps": z("2026-01-10T00:00:00Z"),
                                                                           "ctps": z("2026-01-10T00:00:00Z")})
    b2b = Campaign("c1", "t1", caller_id=CALLER_ID, audience="business")
    d = evaluate(LONDON, b2b, only_tps, z("2026-01-12T10:00:00Z"))
    assert d.codes() == ["MISSING_DATA"] and "ctps" in d.reasons[0].text


# --- 3. US numbers with no known state: every state rule that could apply --------------------------------------

def test_toll_free_number_on_a_sunday_is_denied_by_the_state_sunday_bans():
    """Ala. Admin. Code r. 770-X-5-.17(1)(b), La. R.S. 45:811(3), Miss. Code 77-3-723(1): no Sunday calls. A
    toll-free number may belong to a resident of any of them."""
    sunday_17_central = z("2026-01-18T23:00:00Z")
    d = evaluate(TOLL_FREE, MANUAL, facts(), sunday_17_central)
    assert "US-*" in d.jurisdictions
    assert {r.rule for r in d.reasons if r.code == "DAY_NOT_ALLOWED"} == {"us-al/sunday", "us-la/sunday",
                                                                         "us-ms/sunday"}
    # a US address without a state does not tell the state either
    assert not evaluate(Contact("+18005550199", "US"), MANUAL, facts(), sunday_17_central).allowed
    # the same number with an address in a state without a Sunday ban: only that state's rules
    ga = evaluate(Contact("+18005550199", "US", "30301"), MANUAL, facts(), sunday_17_central)
    assert "US-*" not in ga.jurisdictions and "DAY_NOT_ALLOWED" not in ga.codes()


def test_toll_free_number_gets_the_strictest_frequency_cap_and_state_holidays():
    """Fla. Stat. 501.616(6)(b), 15 O.S. 775C.4, Md. Com. Law 14-4502: 3 calls per 24 hours on the same subject;
    Ala. Code 1-3-8(a): Confederate Memorial Day (fourth Monday in April) is an Alabama holiday."""
    at = z("2026-01-12T23:30:00Z")  # Monday 18:30 Eastern: inside every window, Guam to St John's
    assert evaluate(TOLL_FREE, MANUAL, facts(), at).allowed
    three = tuple(Attempt(at - timedelta(hours=h), "c2", "no_answer") for h in (1, 2, 3))
    d = evaluate(TOLL_FREE, MANUAL, facts(history=three), at)
    assert set(d.codes()) == {"FREQUENCY_CAP"}
    assert {r.rule for r in d.reasons} >= {"us-fl/frequency", "us-ok/frequency", "us-md/frequency"}
    holiday = evaluate(TOLL_FREE, MANUAL, facts(), z("2026-04-27T23:30:00Z"))
    assert "us-al/holidays" in {r.rule for r in holiday.reasons}


def test_toll_free_state_rules_read_in_each_states_own_zones():
    """The union must not make a toll-free number uncallable: Kentucky's 10:00 is read on Kentucky's clock, not
    on Guam's. The next allowed instant is inside every rule's window."""
    d = evaluate(TOLL_FREE, MANUAL, facts(), z("2026-01-12T15:00:00Z"))
    assert not d.allowed and d.next_allowed_at is not None
    assert evaluate(TOLL_FREE, MANUAL, facts(), d.next_allowed_at).allowed


def test_toll_free_number_needs_the_recording_notice():
    """Cal. Penal Code 632.7 (all-party consent to record a cellular call): a number whose state is unknown may
    be a Californian's."""
    d = evaluate(TOLL_FREE, MANUAL, facts(), z("2026-01-12T23:30:00Z"))
    assert recording_notice(True, d.jurisdictions)
    assert notice_required(("US", "US-*"))
    assert not notice_required(("US", "US-NY"))  # a one-party state still needs none


def test_toll_free_number_with_an_automated_dialer_needs_written_consent():
    """Md. Com. Law 14-4502(a)(3): the caller cannot rule Maryland out."""
    d = evaluate(TOLL_FREE, PREDICTIVE, facts(), z("2026-01-12T23:30:00Z"))
    assert {r.rule for r in d.reasons} == {"us-md/automated-dialing", "us-ok/automated-dialing",
                                           "us-fl/automated-dialing"}


# --- 4. France from 2026-08-11: the ongoing-contract exception (L.223-1 al. 4, loi 2025-594 art. 13) ------------

def test_fr_opt_in_does_not_apply_to_a_call_about_an_ongoing_contract():
    at = z("2026-09-15T09:00:00Z")  # Tuesday 11:00 Paris
    contract = (Relationship("contract", z("2025-01-01T00:00:00Z")),)
    about = Campaign("c1", "t1", caller_id=CALLER_ID, dialing="manual", contract_related=True)
    d = evaluate(PARIS, about, Facts(relationships=contract), at)
    assert d.allowed, d.reasons
    # the campaign must declare that it relates to the contract ...
    d = evaluate(PARIS, MANUAL, Facts(relationships=contract), at)
    assert d.codes() == ["NO_CONSENT"] and d.reasons[0].rule == "fr/opt-in"
    assert "L.223-1" in d.reasons[0].source and "2025-594" in d.reasons[0].source
    # ... and the contract must be in force
    ended = (Relationship("contract", z("2025-01-01T00:00:00Z"), z("2026-09-01T00:00:00Z")),)
    assert evaluate(PARIS, about, Facts(relationships=ended), at).codes() == ["NO_CONSENT"]
    assert evaluate(PARIS, about, Facts(), at).codes() == ["NO_CONSENT"]


def test_fr_d223_9_keeps_applying_to_contract_calls_after_2026_08_11():
    contract = Facts(relationships=(Relationship("contract", z("2025-01-01T00:00:00Z")),))
    about = Campaign("c1", "t1", caller_id=CALLER_ID, dialing="manual", contract_related=True)
    assert evaluate(PARIS, about, contract, z("2026-09-19T09:00:00Z")).codes() == ["OUTSIDE_CALLING_HOURS"]  # Sat
    five = Facts(relationships=contract.relationships,
                 history=attempts(*((f"2026-09-0{d}T09:00:00Z", "no_answer") for d in (1, 2, 3, 4))))
    assert evaluate(PARIS, about, five, z("2026-09-15T09:00:00Z")).codes() == ["FREQUENCY_CAP"]


# --- 5. Consent that cannot be proved -------------------------------------------------------------------------

def test_fr_opt_in_consent_without_evidence_does_not_count():
    """L.223-1 al. 3 (from 2026-08-11): "Il appartient au professionnel d'apporter la preuve" of the consent."""
    at = z("2026-09-15T09:00:00Z")
    bare = Consent(given_at=z("2026-09-01T00:00:00Z"))
    d = evaluate(PARIS, MANUAL, Facts(consent=(bare,)), at)
    assert d.codes() == ["NO_CONSENT"] and "has no evidence" in d.reasons[0].text
    sourced = Consent(given_at=z("2026-09-01T00:00:00Z"), source="web form")
    assert evaluate(PARIS, MANUAL, Facts(consent=(sourced,)), at).allowed
    referenced = Consent(given_at=z("2026-09-01T00:00:00Z"), evidence="recording 42")
    assert evaluate(PARIS, MANUAL, Facts(consent=(referenced,)), at).allowed


def test_fr_unproved_consent_does_not_lift_the_days_and_hours():
    """D.223-9 al. 2: outside the days and hours only with a consent the professional "peut l'établir"."""
    saturday = z("2026-01-10T10:00:00Z")
    d = evaluate(PARIS, MANUAL, facts(consent=(Consent(given_at=z("2026-01-01T00:00:00Z")),)), saturday)
    assert d.codes() == ["OUTSIDE_CALLING_HOURS"]


def test_de_consent_without_evidence_is_denied():
    """UWG s. 7a: the consent is documented and the proof kept 5 years."""
    at = z("2026-01-12T10:00:00Z")
    d = evaluate(BERLIN, MANUAL, Facts(consent=(Consent(given_at=z("2026-01-01T00:00:00Z")),)), at)
    assert d.codes() == ["NO_CONSENT"] and "no evidence" in d.reasons[0].text
    assert evaluate(BERLIN, MANUAL, Facts(consent=(proved("2026-01-01T00:00:00Z", written=False),)), at).allowed


def test_consent_proof_is_configurable_per_pack(tmp_path: Path):
    (tmp_path / "de.toml").write_text('''
id = "de"
version = "test.1"
jurisdiction = "DE"
name = "Germany without the proof requirement"
timezone = "Europe/Berlin"

[[rules]]
id = "de/consumer-consent"
kind = "consent_required"
audiences = ["consumer"]
proof = false
source = "test"
''')
    packs = load_packs(tmp_path)
    bare = Facts(consent=(Consent(given_at=z("2026-01-01T00:00:00Z")),))
    assert evaluate(BERLIN, MANUAL, bare, z("2026-01-12T10:00:00Z"), packs).allowed


# --- 6. US EBR windows count in calendar days (47 CFR 64.1200(f)(5)) -------------------------------------------

def test_us_ebr_counts_calendar_dates_in_the_called_partys_zone():
    """"within the eighteen (18) months immediately preceding the date of the telephone call": a purchase on
    2024-07-15 (New York) covers every call dated 2026-01-15 in New York, whatever the hour."""
    on_dnc = facts(lists=Lists(national={"us_dnc": True}), registry_copies={"us_dnc": z("2026-01-10T00:00:00Z")})
    bought = (Relationship("purchase", z("2024-07-15T14:00:00Z")),)  # 10:00 EDT
    rel = Facts(lists=on_dnc.lists, registry_copies=on_dnc.registry_copies, relationships=bought)
    evening = z("2026-01-16T01:30:00Z")  # 2026-01-15 20:30 EST (the 16th in UTC)
    assert evaluate(NY, MANUAL, rel, evening).allowed
    assert evaluate(NY, MANUAL, rel, z("2026-01-15T15:00:00Z")).allowed  # 10:00 EST, same date
    next_day = evaluate(NY, MANUAL, rel, z("2026-01-16T15:00:00Z"))
    assert next_day.codes() == ["NATIONAL_REGISTRY"]


def test_us_ebr_inquiry_three_months():
    on_dnc = facts(lists=Lists(national={"us_dnc": True}), registry_copies={"us_dnc": z("2026-01-10T00:00:00Z")})
    asked = (Relationship("inquiry", z("2025-10-15T21:00:00Z")),)  # 17:00 EDT on 15 October
    rel = Facts(lists=on_dnc.lists, registry_copies=on_dnc.registry_copies, relationships=asked)
    assert evaluate(NY, MANUAL, rel, z("2026-01-15T14:00:00Z")).allowed  # 09:00 EST on 15 January
    assert not evaluate(NY, MANUAL, rel, z("2026-01-16T14:00:00Z")).allowed


# --- 7. Canada (CRTC UTR Part II; Telecommunications Act s. 41.7) ----------------------------------------------

def test_ca_dncl_does_not_apply_to_business_consumers():
    """CRTC UTR Part II: the National DNCL Rules do not apply to telemarketing to business consumers."""
    at = z("2026-01-12T15:00:00Z")
    on_list = facts(lists=Lists(national={"dncl": True}), registry_copies={"dncl": z("2026-01-10T00:00:00Z")})
    assert evaluate(TORONTO, MANUAL, on_list, at).codes() == ["NATIONAL_REGISTRY"]
    business = Campaign("c1", "t1", caller_id=CALLER_ID, audience="business", dialing="manual")
    assert evaluate(TORONTO, business, on_list, at).allowed
    # the Telemarketing Rules' hours still bind business calls
    assert evaluate(TORONTO, business, on_list, z("2026-01-12T13:00:00Z")).codes() == ["OUTSIDE_CALLING_HOURS"]


@pytest.mark.parametrize("relationship,allowed", [
    (Relationship("contract", z("2020-01-01T00:00:00Z")), True),  # a written contract in force
    (Relationship("contract", z("2020-01-01T00:00:00Z"), z("2024-08-20T00:00:00Z")), True),  # ended 17 months ago
    (Relationship("contract", z("2020-01-01T00:00:00Z"), z("2024-06-20T00:00:00Z")), False),  # 19 months ago
    (Relationship("inquiry", z("2025-08-01T00:00:00Z")), True),  # 5 months
    (Relationship("inquiry", z("2025-06-01T00:00:00Z")), False),  # 7 months
    (Relationship("purchase", z("2024-08-01T00:00:00Z")), True),  # 17 months
])
def test_ca_existing_business_relationship(relationship, allowed):
    """Telecommunications Act s. 41.7 / CRTC: purchase within 18 months, written contract in force or expired
    within 18 months, inquiry within 6 months."""
    at = z("2026-01-12T15:00:00Z")
    on_list = facts(lists=Lists(national={"dncl": True}), registry_copies={"dncl": z("2026-01-10T00:00:00Z")},
                    relationships=(relationship,))
    assert evaluate(TORONTO, MANUAL, on_list, at).allowed is allowed


# --- 8. State autodialer consent -------------------------------------------------------------------------------

@pytest.mark.parametrize("contact,at,rule,text", [
    (MD, "2026-01-12T16:00:00Z", "us-md/automated-dialing", "14-4502(a)(3)"),
    (OK, "2026-01-12T16:00:00Z", "us-ok/automated-dialing", "775C.4"),
    (FL, "2026-01-12T16:00:00Z", "us-fl/automated-dialing", "501.059(8)(a)"),
])
@pytest.mark.parametrize("mode", ["preview", "progressive", "power", "predictive", "agentless", None])
def test_automated_dialing_needs_prior_express_written_consent(contact, at, rule, text, mode):
    campaign = Campaign("c1", "t1", caller_id=CALLER_ID, dialing=mode)
    d = evaluate(contact, campaign, facts(), z(at))
    assert d.codes() == ["NO_CONSENT"] and d.reasons[0].rule == rule and text in d.reasons[0].source
    assert d.reasons[0].text.startswith("written consent required for automated dialing")
    oral = facts(consent=(proved("2025-01-01T00:00:00Z", written=False),))
    assert evaluate(contact, campaign, oral, z(at)).codes() == ["NO_CONSENT"]
    written = facts(consent=(proved("2025-01-01T00:00:00Z"),))
    assert evaluate(contact, campaign, written, z(at)).allowed
    # a person who selects and keys the number is no automated system
    assert evaluate(contact, MANUAL, facts(), z(at)).allowed


@pytest.mark.parametrize("contact,before,after", [
    (MD, "2023-12-29T16:00:00Z", "2024-01-02T16:00:00Z"),  # Stop the Spam Calls Act, from 2024-01-01
    (OK, "2022-10-31T16:00:00Z", "2022-11-01T16:00:00Z"),  # Telephone Solicitation Act of 2022, from 2022-11-01
])
def test_automated_dialing_rules_are_dated(contact, before, after):
    copies = {"national": z(before) - timedelta(days=2)}
    assert evaluate(contact, PREDICTIVE, facts(registry_copies=copies), z(before)).allowed
    copies = {"national": z(after) - timedelta(days=2)}
    assert evaluate(contact, PREDICTIVE, facts(registry_copies=copies), z(after)).codes() == ["NO_CONSENT"]


def test_runtime_campaigns_are_automated_dialing():
    from dialer.campaigns import StoredCampaign

    for mode in ("progressive", "power", "predictive", "agentless"):
        stored = StoredCampaign("c1", "t1", "running", {"name": "x", "pacing_mode": mode}, "", "", "", "")
        assert stored.gate_campaign().dialing == mode
    default = StoredCampaign("c1", "t1", "running", {"name": "x"}, "", "", "", "").gate_campaign()
    assert default.dialing == "progressive" and default.contract_related is False
    related = StoredCampaign("c1", "t1", "running", {"name": "x", "contract_related": True}, "", "", "", "")
    assert related.gate_campaign().contract_related is True


def test_oklahoma_automatic_dial_announcing_device_hours():
    """15 O.S. 755.1(C)(2)(a): not before 9 a.m. or after 9 p.m. for calls terminating in Oklahoma."""
    reminder = Campaign("c1", "t1", caller_id=CALLER_ID, purpose="informational", voice="artificial",
                        dialing="agentless")
    consent = facts(consent=(proved("2025-01-01T00:00:00Z", purpose="informational"),))
    d = evaluate(OK, reminder, consent, z("2026-01-12T14:30:00Z"))  # 08:30 CST
    assert d.codes() == ["OUTSIDE_CALLING_HOURS"] and d.reasons[0].rule == "us-ok/adad-hours"
    assert d.next_allowed_at == z("2026-01-12T15:00:00Z")
    assert evaluate(OK, reminder, consent, z("2026-01-13T02:59:59Z")).allowed  # 20:59:59
    assert evaluate(OK, reminder, consent, z("2026-01-13T03:00:00Z")).codes() == ["OUTSIDE_CALLING_HOURS"]  # 21:00
    assert evaluate(OK, reminder, consent, z("2026-01-12T15:00:00Z")).allowed
    # a human agent is no announcing device
    human = Campaign("c1", "t1", caller_id=CALLER_ID, purpose="informational", dialing="manual")
    assert evaluate(OK, human, facts(), z("2026-01-12T14:30:00Z")).allowed


# --- 9. Citations ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule_id,cited", [
    ("fr/hours", "D.223-9"), ("fr/holidays", "D.223-9"), ("fr/frequency", "D.223-9"), ("fr/refusal", "D.223-9"),
    ("us-ms/hours", "77-3-723"), ("us-ms/sunday", "77-3-723"), ("us-ms/hours-cst", "Central Standard Time"),
    ("us-la/hours", "45:811"), ("us-la/sunday", "45:811"), ("us-la/holidays", "45:811"),
    ("us-la/holidays", "1:55"), ("us-al/sunday", "770-X-5-.17(1)(b)"), ("us-al/holidays", "770-X-5-.17(1)(b)"),
    ("us-al/holidays", "1-3-8(a)"), ("us-md/hours", "14-4502"), ("us-md/frequency", "14-4502"),
    ("us/dnc", "64.1200(f)(5)"),
])
def test_every_rule_cites_the_exact_article(rule_id, cited):
    rule = default_packs().rule(rule_id)
    assert rule is not None and cited in rule.source
    assert "D.223-8" not in rule.source and "77-3-725;" not in rule.source
    assert "844.11 et seq. (Telephone" not in rule.source


def test_no_shipped_rule_cites_the_wrong_articles():
    for pack in default_packs().packs:
        for rule in pack.rules:
            assert "D.223-8" not in rule.source, rule.id
            if pack.id == "us-la":
                assert rule.source.startswith("La. R.S. 45:811"), rule.id


@pytest.mark.parametrize("at,holiday", [
    ("2026-07-03T15:00:00Z", True),  # Friday: Independence Day (Saturday 4 July) moves to Friday
    ("2027-07-05T15:00:00Z", True),  # Monday: Independence Day (Sunday 4 July) moves to Monday
    ("2026-06-01T15:00:00Z", True),  # Jefferson Davis' birthday (first Monday in June), Ala. Code 1-3-8(a)
    ("2026-06-02T15:00:00Z", False),
])
def test_alabama_holidays_with_weekend_shifts(at, holiday):
    d = evaluate(AL, MANUAL, facts(registry_copies={"national": z(at) - timedelta(days=2)}), z(at))
    assert ("PUBLIC_HOLIDAY" in d.codes()) is holiday


def test_mississippi_central_standard_time_as_written():
    """Miss. Code 77-3-723 says "Central Standard Time": while CDT is in force, 08:30 CDT is 07:30 CST."""
    july_0830_cdt = z("2026-07-13T13:30:00Z")
    d = evaluate(MS, MANUAL, facts(registry_copies={"national": z("2026-07-10T00:00:00Z")}), july_0830_cdt)
    assert d.codes() == ["OUTSIDE_CALLING_HOURS"] and d.reasons[0].rule == "us-ms/hours-cst"
    assert d.next_allowed_at == z("2026-07-13T14:00:00Z")  # 09:00 CDT = 08:00 CST
    january_0830_cst = z("2026-01-12T14:30:00Z")  # CST in force: both readings agree
    assert evaluate(MS, MANUAL, facts(registry_copies={"national": z("2026-01-10T00:00:00Z")}),
                    january_0830_cst).allowed


# --- 10. US postal codes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("postal,state", [("1000", "MA"), ("01000", "MA"), ("2134-1234", "MA"), ("021341234", "MA"),
                                          ("07030", "NJ"), ("7030", "NJ"), ("33101", "FL")])
def test_us_zip_with_its_leading_zero_dropped_is_padded(postal, state):
    d = evaluate(Contact("+13055550123", "US", postal), MANUAL, facts(), z("2026-01-12T16:00:00Z"))
    assert f"US-{state}" in d.jurisdictions
    assert "US-NY" not in d.jurisdictions and "US-IL" not in d.jurisdictions


@pytest.mark.parametrize("postal", ["100", "123456", "1000-12", "ABCDE", "10 00"])
def test_us_zip_that_cannot_be_read_fails_closed(postal):
    d = evaluate(Contact("+13055550123", "US", postal), MANUAL, facts(), z("2026-01-12T16:00:00Z"))
    assert d.codes() == ["MISSING_DATA"] and d.reasons[0].rule == "gate/address"


# --- the what-if checker reads the new campaign fields ----------------------------------------------------------

def test_scenario_reads_dialing_and_contract_related():
    base = {"at": "2026-09-15T09:00:00Z", "contact": {"phone": "+33145678901"}}
    s = parse_scenario(dict(base, campaign={"id": "c1", "dialing": "power", "contract_related": True}))
    assert s.campaign.dialing == "power" and s.campaign.contract_related is True
    assert parse_scenario(dict(base, campaign={"id": "c1"})).campaign.dialing is None  # unknown: automated
    with pytest.raises(ScenarioError, match=r"campaign\.dialing"):
        parse_scenario(dict(base, campaign={"id": "c1", "dialing": "robot"}))
    with pytest.raises(ScenarioError, match=r"campaign\.contract_related"):
        parse_scenario(dict(base, campaign={"id": "c1", "contract_related": "yes"}))


# --- the new pack fields are validated like the others (a lawyer's typo stops the start, naming the field) ---------

@pytest.mark.parametrize("extra,field", [
    ('dialing = ["robot"]', "rules[0].dialing[0]"),
    ('clock = "Central"', "rules[0].clock"),
    ("proof = 1", "rules[0].proof"),
    ('exemptions = { relationships = [ { kind = "contract", months = 18, counted_from = "later" } ] }',
     "rules[0].exemptions.relationships[0].counted_from"),
    ('exemptions = { relationships = [ { kind = "contract", ongoing = true, campaign_related = "yes" } ] }',
     "rules[0].exemptions.relationships[0].campaign_related"),
])
def test_new_pack_fields_are_validated(tmp_path: Path, extra: str, field: str):
    from rules.packs import PackError, load_pack

    kind = "calling_hours" if "clock" in extra else "consent_required"
    windows = 'windows = { mon = ["09:00-17:00"] }\n' if kind == "calling_hours" else ""
    (tmp_path / "x.toml").write_text(f'''
id = "x"
version = "1"
jurisdiction = "US-XX"
name = "x"
timezone = "America/Chicago"

[[rules]]
id = "x/rule"
kind = "{kind}"
source = "test"
{windows}{extra}
''')
    with pytest.raises(PackError, match=re.escape(field)):
        load_pack(tmp_path / "x.toml")
