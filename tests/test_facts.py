"""The person fact store against a real redis-server."""

from datetime import UTC, datetime, timedelta

import pytest

from dialer.facts import FactStore, optout_log_key
from rules.model import Attempt, Consent, Relationship

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
N = "+33145678901"


def test_consent_roundtrip_and_version(redis_client):
    store = FactStore(redis_client)
    assert store.version("t1", N) == 0
    store.add_consent("t1", N, Consent(given_at=T0, written=True, source="web form", evidence="ref-1"))
    store.withdraw_consent("t1", N, T0 + timedelta(days=3), source="sms")
    consents = store.consents("t1", N)
    assert consents[0].given_at == T0 and consents[0].evidence == "ref-1"
    assert consents[1].withdrawn_at == T0 + timedelta(days=3) and consents[1].given_at is None
    assert store.version("t1", N) == 2


def test_optout_is_durable_first_date_wins_and_logged(redis_client):
    store = FactStore(redis_client)
    store.add_optout("t1", N, at=T0, source="keypress", call_id="c-1", campaign="camp")
    store.add_optout("t1", N, at=T0 + timedelta(hours=1), source="api")
    assert store.optout("t1", N).at == T0
    assert store.optout("t1", N).source == "keypress"
    assert redis_client.xlen(optout_log_key("t1")) == 2  # both requests kept as evidence
    assert store.optout("t2", N) is None  # another tenant sees nothing


def test_campaign_optout_scope(redis_client):
    store = FactStore(redis_client)
    store.add_optout("t1", N, at=T0, source="agent", scope="campaign", campaign="c9")
    facts = store.load("t1", N, "c9")
    assert facts.campaign_dnc is not None and facts.company_dnc is None
    assert store.load("t1", N, "other").campaign_dnc is None
    with pytest.raises(ValueError):
        store.add_optout("t1", N, at=T0, source="agent", scope="campaign")


def test_attempts_and_outcomes(redis_client):
    store = FactStore(redis_client)
    call = store.record_attempt("t1", N, Attempt(at=T0, campaign="c1", outcome="reserved"))
    store.record_outcome("t1", N, call, "busy")
    store.add_relationship("t1", N, Relationship(kind="purchase", at=T0 - timedelta(days=10)))
    facts = store.load("t1", N, "c1")
    assert [(a.outcome, a.at) for a in facts.history] == [("busy", T0)]
    assert facts.relationships[0].kind == "purchase"
    assert facts.version == 3
    with pytest.raises(KeyError):
        store.record_outcome("t1", N, "nope", "busy")
