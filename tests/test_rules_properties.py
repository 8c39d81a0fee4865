"""Properties of the pure gate over generated situations (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import TIME_BASED, evaluate
from rules.model import Attempt, Campaign, Consent, Contact, Facts, Lists, Relationship

CONTACTS = [
    Contact("+33145678901", "FR", "75011"), Contact("+33612345678", "FR", "97110"),
    Contact("+33388000000", "FR", "67000"),
    Contact("+12125550123"), Contact("+12702021234"), Contact("+13055550123", "US", "30301"), Contact("+12055550123"),
    Contact("+14165550123"), Contact("+18675550123"), Contact("+442079460000"), Contact("+49301234567"),
    Contact("+18005550199"), Contact("+61291234567"), Contact("garbage"),
    # no department known (Alsace-Moselle holidays apply), an address without a country, one the gate cannot place
    Contact("+33612345678"), Contact("+12125550123", None, None, "FL"), Contact("+12125550123", "US", "abc"),
]
START = datetime(2025, 10, 1, tzinfo=UTC)
instants = st.integers(min_value=0, max_value=400 * 86400).map(lambda s: START + timedelta(seconds=s))
outcomes = st.sampled_from(["answered", "no_answer", "busy", "failed", "machine", "refused", "abandoned", "reserved"])


@st.composite
def situations(draw):
    at = draw(instants)
    history = tuple(
        Attempt(at - timedelta(seconds=draw(st.integers(0, 40 * 86400))), draw(st.sampled_from(["c1", "c2"])),
                draw(outcomes))
        for _ in range(draw(st.integers(0, 6)))
    )
    consent = ()
    if draw(st.booleans()):
        given = at - timedelta(days=draw(st.integers(-5, 100)))
        withdrawn = given + timedelta(days=draw(st.integers(1, 50))) if draw(st.booleans()) else None
        consent = (Consent(given_at=given, written=draw(st.booleans()), withdrawn_at=withdrawn),)
    if draw(st.booleans()):
        history += (Attempt(at - timedelta(hours=draw(st.integers(0, 80))), "c1",
                            draw(st.sampled_from(["refused", "abandoned", "machine"]))),)
    relationships = ()
    if draw(st.booleans()):
        relationships = (Relationship(draw(st.sampled_from(["purchase", "inquiry", "contract"])),
                                      at - timedelta(days=draw(st.integers(0, 700)))),)
    # mostly clean facts, so that time-based reasons (the interesting part) are common
    national = draw(st.sampled_from([{"*": False}] * 6 + [{}, {"*": True}]))
    copies = draw(st.sampled_from([{"national": at - timedelta(days=draw(st.integers(0, 25)))}] * 6
                                  + [{}, {"national": at - timedelta(days=draw(st.integers(0, 40)))}]))
    company = draw(st.sampled_from([False] * 9 + [True]))
    facts = Facts(consent=consent, relationships=relationships, history=history, registry_copies=copies,
                  lists=Lists(national=national, company=company))
    campaign = Campaign("c1", "t1", caller_id="+33162000000",
                        purpose=draw(st.sampled_from(["telemarketing"] * 3 + ["informational"])),
                        audience=draw(st.sampled_from(["consumer", "business"])),
                        voice=draw(st.sampled_from(["human", "artificial"])))
    return draw(st.sampled_from(CONTACTS)), campaign, facts, at


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_denials_have_reasons_and_next_allowed_clears_time_reasons(situation):
    contact, campaign, facts, at = situation
    d = evaluate(contact, campaign, facts, at)
    if not d.allowed:
        assert d.reasons, "a denial always carries a reason"
        for r in d.reasons:
            assert r.code and r.text and r.rule and r.source
    else:
        assert not d.reasons and d.next_allowed_at is None
    if d.next_allowed_at is not None:
        assert d.next_allowed_at >= at
        assert all(r.code in TIME_BASED for r in d.reasons)
        for r in d.reasons:
            assert r.until is not None and r.until <= d.next_allowed_at
        again = evaluate(contact, campaign, facts, d.next_allowed_at)
        assert not [r for r in again.reasons if r.code in TIME_BASED], again.reasons
    elif not d.allowed:
        # no next instant: some reason is permanent, or windows never overlap in the horizon
        assert any(r.code not in TIME_BASED or r.until is None for r in d.reasons)
