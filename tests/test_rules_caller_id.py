"""Caller-ID rules (issue 13): each case cites the text it comes from. These fail on the gate before issue 13,
which had no caller-ID rule and allowed a masked or mobile caller ID everywhere."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dialer.campaigns import config_problems
from rules import evaluate, load_packs
from rules.caller_id import NOT_JUDGED
from rules.model import Campaign, Consent, Contact, Facts, Lists
from rules.packs import PackError, load_pack
from rules.scenario import ScenarioError, parse_scenario

PACKS = load_packs()
# a weekday morning that is inside every regime's calling hours: Paris 11:00, London 10:00, New York 10:00
FR_OPEN = datetime(2026, 1, 13, 10, 0, tzinfo=UTC)
US_OPEN = datetime(2026, 1, 13, 15, 0, tzinfo=UTC)
PARIS = Contact("+33145678901", "FR", "75011")
REUNION = Contact("+262262123456")  # La Réunion: France (department 974)
NEW_YORK = Contact("+12125551234", "US", "10001")
TORONTO = Contact("+14165551234", "CA", "M5V 2T6")
LONDON = Contact("+442079460000", "GB")
BERLIN = Contact("+493012345678", "DE")


def clean(at: datetime) -> Facts:
    return Facts(lists=Lists(national={"*": False}), registry_copies={"national": at})


def decide(contact: Contact, caller_id: str | None, at: datetime, **campaign: str):
    return evaluate(contact, Campaign("c1", "t1", caller_id=caller_id, **campaign), clean(at), at, PACKS)


def caller_reasons(decision) -> list[tuple[str, str]]:
    return [(r.code, r.rule) for r in decision.reasons if r.rule.split("/")[1].startswith("caller-id")
            or r.code == "CALLER_ID_NOT_ALLOWED"]


# --- France ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("caller_id", [
    "+33162000000", "+33163123456", "+33270123456", "+33271123456", "+33377123456", "+33378123456",
    "+33424123456", "+33425123456", "+33568123456", "+33569123456", "+33948123456", "+33949123456",
    "+33947512345", "+33947612345", "+33947712345", "+33947812345", "+33947912345",
])
def test_france_arcep_dedicated_ranges_are_allowed(caller_id):
    # ARCEP décision 2022-1583: metropolitan 0162 ... 0949 and overseas 09475-09479
    assert decide(PARIS, caller_id, FR_OPEN).allowed
    assert decide(REUNION, caller_id, datetime(2026, 1, 13, 8, 0, tzinfo=UTC)).allowed  # 12:00 in La Réunion


@pytest.mark.parametrize("caller_id, words", [
    ("+33145678900", "ARCEP canvassing ranges"),  # an ordinary Paris landline
    ("+33947412345", "ARCEP canvassing ranges"),  # 09474 is not one of the overseas ranges
    ("+33950123456", "ARCEP canvassing ranges"),
    ("+12025550123", "ARCEP canvassing ranges"),  # a foreign number
])
def test_france_numbers_outside_the_ranges_are_denied_since_2023(caller_id, words):
    d = decide(PARIS, caller_id, FR_OPEN)
    assert not d.allowed and caller_reasons(d) == [("CALLER_ID_NOT_ALLOWED", "fr/caller-id-range")]
    reason = d.reasons[0]
    assert words in reason.text and "2022-1583" in reason.source and reason.until is None
    assert d.next_allowed_at is None  # a new caller ID clears it, not time


def test_france_never_a_mobile_number():
    # ARCEP décision 2022-1583: mobile numbers (06, 07) may not be used by call centres and automated systems
    for mobile in ("+33612345678", "+33751234567"):
        d = decide(PARIS, mobile, FR_OPEN)
        assert caller_reasons(d) == [("CALLER_ID_NOT_ALLOWED", "fr/caller-id-range")]
        assert "mobile number" in d.reasons[0].text


def test_france_ranges_are_dated_pack_data():
    # before 2023-01-01 the dedicated ranges did not bind: an ordinary landline was lawful (L.221-17 only)
    before = datetime(2022, 12, 13, 10, 0, tzinfo=UTC)
    assert decide(PARIS, "+33145678900", before).allowed
    assert not decide(PARIS, "+33145678900", datetime(2023, 1, 3, 10, 0, tzinfo=UTC)).allowed


def test_france_masked_number_is_forbidden_by_l221_17():
    d = decide(PARIS, "", FR_OPEN)
    assert not d.allowed and d.codes() == ["CALLER_ID_NOT_ALLOWED"]  # said once, not once per rule
    assert d.reasons[0].rule == "fr/caller-id-shown" and "L.221-17" in d.reasons[0].source
    assert "masked" in d.reasons[0].text


def test_france_premium_rate_089_is_forbidden_by_the_2016_arrete():
    d = decide(PARIS, "+33891234567", FR_OPEN)
    rules = [rule for _code, rule in caller_reasons(d)]
    assert "fr/caller-id-premium" in rules
    premium = next(r for r in d.reasons if r.rule == "fr/caller-id-premium")
    assert "arrêté du 5 juillet 2016" in premium.source


def test_france_rules_bind_consumer_canvassing_only():
    # L.221-16/17 and ARCEP's ranges are about canvassing consumers: an informational call is not judged on them
    assert decide(PARIS, "+33145678900", FR_OPEN, purpose="informational").allowed


# --- US, Canada, UK ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("contact, at, rule, source", [
    (NEW_YORK, US_OPEN, "us/caller-id", "16 CFR 310.4(a)(8)"),
    (NEW_YORK, US_OPEN, "us/caller-id", "47 CFR 64.1601(e)"),
    (TORONTO, US_OPEN, "ca/caller-id", "Telemarketing Rules"),
    (LONDON, FR_OPEN, "gb/caller-id", "PECR reg. 21(A1)"),
])
def test_caller_id_must_be_present_valid_and_diallable(contact, at, rule, source):
    for bad in ("", "+447700900123"):  # masked; a UK drama number that is not assigned (not valid)
        d = decide(contact, bad, at)
        assert not d.allowed and d.codes() == ["CALLER_ID_NOT_ALLOWED"], (contact, bad, d.reasons)
        assert d.reasons[0].rule == rule and source in d.reasons[0].source
    assert decide(contact, "+12025550123", at).allowed  # a valid number (Washington DC) is enough
    assert decide(contact, "+33162000000", at).allowed


def test_uk_premium_rate_caller_id_is_refused_per_ofcom_guidance():
    d = decide(LONDON, "+449098790000", FR_OPEN)
    assert caller_reasons(d) == [("CALLER_ID_NOT_ALLOWED", "gb/caller-id-not-premium")]
    assert "premium rate" in d.reasons[0].text and "Ofcom" in d.reasons[0].source


def test_a_number_not_diallable_from_abroad_is_refused():
    # an Australian 1800 freephone cannot be dialled from abroad (phonenumbers' metadata): nobody in the UK or the
    # US could call it back
    for contact, at, rule in ((LONDON, FR_OPEN, "gb/caller-id"), (NEW_YORK, US_OPEN, "us/caller-id")):
        d = decide(contact, "+611800123456", at)
        assert caller_reasons(d) == [("CALLER_ID_NOT_ALLOWED", rule)]
        assert "cannot be dialled from" in d.reasons[0].text


def test_germany_has_no_caller_id_rule_in_its_pack():
    facts = Facts(consent=(Consent(given_at=datetime(2025, 1, 1, tzinfo=UTC), written=True, source="form",
                                   evidence="ref"),))
    assert evaluate(BERLIN, Campaign("c1", "t1", caller_id=""), facts, FR_OPEN, PACKS).allowed


# --- the input --------------------------------------------------------------------------------------------------

def test_unknown_caller_id_fails_closed_and_a_list_scrub_does_not_judge_it():
    d = decide(PARIS, None, FR_OPEN)
    assert not d.allowed and d.codes() == ["MISSING_DATA"] and "caller ID is not known" in d.reasons[0].text
    assert decide(PARIS, NOT_JUDGED, FR_OPEN).allowed


def test_scenario_field():
    base = {"at": "2026-01-13T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}}
    assert parse_scenario(base).campaign.caller_id is None
    assert parse_scenario({**base, "campaign": {"id": "c1", "caller_id": ""}}).campaign.caller_id == ""
    assert parse_scenario({**base, "campaign": {"id": "c1", "caller_id": "+33162000000"}}).campaign.caller_id \
        == "+33162000000"
    for bad in ("0162000000", 33162000000, "*"):
        with pytest.raises(ScenarioError, match=r"campaign\.caller_id: expected an E\.164 number"):
            parse_scenario({**base, "campaign": {"id": "c1", "caller_id": bad}})


def test_campaign_configuration_refuses_an_invalid_caller_id():
    assert config_problems({"caller_id": "+33162000000"}) == []
    assert config_problems({"caller_id": "+447700900123"})[0][0] == "caller_id"


def test_pack_validation_names_the_field(tmp_path):
    bad = tmp_path / "zz.toml"
    bad.write_text('id = "zz"\nversion = "1"\njurisdiction = "FR"\ntimezone = "UTC"\n[[rules]]\nid = "zz/c"\n'
                   'kind = "caller_id"\nsource = "t"\nallowed_prefixes = ["0162"]\n')
    with pytest.raises(PackError, match=r"zz.toml: rules\[0\].allowed_prefixes\[0\]: expected an E.164 prefix"):
        load_pack(bad)
    bad.write_text(bad.read_text().replace('allowed_prefixes = ["0162"]', 'forbidden_types = ["satellite"]'))
    with pytest.raises(PackError, match=r"rules\[0\].forbidden_types\[0\]: expected one of"):
        load_pack(bad)
