"""Agents' dispositions and outcome precedence, against a real redis-server, the real gate, engine and packs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dialer.agent_dispositions import UnknownCall, record_disposition
from dialer.audit import AuditLog
from dialer.facts import OUTCOME_PRECEDENCE, FactStore, optout_log_key, stronger_outcome
from dialer.gate import Reservation
from rules.model import OUTCOMES
from tests.test_gate import AT, KEY, OTHER, PARIS, SALES, load_bloctel, make_gate


@pytest.fixture
def gate(redis_client, tmp_path):
    load_bloctel(redis_client, tmp_path)
    return make_gate(redis_client)


@pytest.fixture
def facts(redis_client):
    return FactStore(redis_client, audit=AuditLog(redis_client, KEY))


def reserve(gate, call_id: str, contact=PARIS, campaign=SALES, at=AT) -> Reservation:
    result = gate.check_and_reserve(contact, campaign, at, call_id)
    assert isinstance(result, Reservation), result
    return result


def stored_outcome(facts: FactStore, call_id: str) -> str:
    return facts.attempt_record("t1", PARIS.phone, call_id)["outcome"]


def test_precedence_table_covers_every_gate_outcome():
    ranked = [o for names in OUTCOME_PRECEDENCE for o in names]
    assert sorted(ranked) == sorted(OUTCOMES) and len(ranked) == len(set(ranked))
    assert stronger_outcome("refused", "answered") == "refused"
    assert stronger_outcome("answered", "refused") == "refused"
    assert stronger_outcome("refused", "opted_out") == "opted_out"
    assert stronger_outcome("busy", "no_answer") == "busy"  # same rank: the first stays


@pytest.mark.parametrize("agent", ["refused", "opted_out"])
def test_agent_first_then_ami_answered_keeps_the_agents(gate, facts, agent):
    reserve(gate, "c-1")
    done = record_disposition(gate, facts, "t1", "c-1", agent, at=AT + timedelta(minutes=1), actor="user:ann")
    assert done.recorded == agent
    # The AMI outcome arrives at hangup, after the agent's disposition.
    assert gate.record_outcome("t1", "c-1", "answered", AT + timedelta(minutes=2), e164=PARIS.phone) == agent
    assert stored_outcome(facts, "c-1") == agent
    outcome_entries = [e for e in gate.audit.entries("t1") if e.kind == "call_outcome"]
    assert [(e.payload["outcome"], e.payload.get("reported")) for e in outcome_entries] == [
        (agent, None), (agent, "answered")]


@pytest.mark.parametrize("agent", ["refused", "opted_out"])
def test_ami_answered_first_then_agent_wins(gate, facts, agent):
    reserve(gate, "c-2")
    assert gate.record_outcome("t1", "c-2", "answered", AT + timedelta(minutes=2), e164=PARIS.phone) == "answered"
    done = record_disposition(gate, facts, "t1", "c-2", agent, at=AT + timedelta(minutes=3), actor="user:ann")
    assert done.recorded == agent and stored_outcome(facts, "c-2") == agent


def test_keypress_opt_out_outranks_a_later_agent_refusal(gate, facts):
    reserve(gate, "c-3")
    gate.record_outcome("t1", "c-3", "opted_out", AT + timedelta(minutes=1), e164=PARIS.phone)
    done = record_disposition(gate, facts, "t1", "c-3", "refused", at=AT + timedelta(minutes=2), actor="user:ann")
    assert done.recorded == "opted_out"


def test_refusal_then_gate_denies_with_the_french_cooloff(gate, facts):
    reserve(gate, "c-4")
    record_disposition(gate, facts, "t1", "c-4", "refused", at=AT + timedelta(minutes=1), actor="user:ann",
                       note="not interested, said so twice")
    gate.record_outcome("t1", "c-4", "answered", AT + timedelta(minutes=2), e164=PARIS.phone)  # hangup, later
    later = gate.check(PARIS, OTHER, AT + timedelta(days=30))
    assert "REFUSAL_COOLOFF" in later.codes() and not later.allowed
    [reason] = [r for r in later.reasons if r.code == "REFUSAL_COOLOFF"]
    assert reason.until == AT + timedelta(days=60)
    assert "REFUSAL_COOLOFF" not in gate.check(PARIS, OTHER, AT + timedelta(days=61)).codes()
    record = facts.attempt_record("t1", PARIS.phone, "c-4")
    assert record["agent_note"] == "not interested, said so twice" and record["agent"] == "user:ann"


def test_agent_opt_out_is_durable_audited_and_enforced(gate, facts, redis_client):
    reserve(gate, "c-5")
    done = record_disposition(gate, facts, "t1", "c-5", "opted_out", at=AT + timedelta(minutes=1),
                              actor="user:ann", keyword="stop calling me")
    assert done.optout is not None and done.optout.source == "agent" and done.optout.scope == "company"
    entry = facts.optout("t1", PARIS.phone)
    assert (entry.source, entry.call_id, entry.campaign, entry.keyword) == ("agent", "c-5", "c1", "stop calling me")
    # A retried request records nothing twice.
    record_disposition(gate, facts, "t1", "c-5", "opted_out", at=AT + timedelta(minutes=5), actor="user:ann")
    assert redis_client.xlen(optout_log_key("t1")) == 1
    kinds = [e.kind for e in AuditLog(redis_client, KEY).entries("t1")]
    assert kinds.count("optout") == 1
    denied = gate.check_and_reserve(PARIS, OTHER, AT + timedelta(days=1), "c-6")
    assert not denied.allowed and "COMPANY_DNC" in denied.codes()


def test_campaign_scope_opt_out_stops_that_campaign_only(gate, facts):
    reserve(gate, "c-7")
    done = record_disposition(gate, facts, "t1", "c-7", "opted_out", at=AT + timedelta(minutes=1),
                              actor="user:ann", scope="campaign")
    assert done.recorded == "refused" and done.optout.scope == "campaign" and done.optout.campaign == "c1"
    assert facts.optout("t1", PARIS.phone) is None  # not company-wide
    assert "CAMPAIGN_DNC" in gate.check(PARIS, SALES, AT + timedelta(days=90)).codes()
    other = gate.check(PARIS, OTHER, AT + timedelta(days=90))
    assert "CAMPAIGN_DNC" not in other.codes() and "COMPANY_DNC" not in other.codes()


def test_unknown_and_other_tenants_calls_are_unknown(gate, facts):
    reserve(gate, "c-8")
    with pytest.raises(UnknownCall):
        record_disposition(gate, facts, "t1", "nope", "refused", at=AT, actor="user:ann")
    with pytest.raises(UnknownCall):
        record_disposition(gate, facts, "t2", "c-8", "refused", at=AT, actor="user:ann")
    with pytest.raises(ValueError):
        record_disposition(gate, facts, "t1", "c-8", "maybe", at=AT, actor="user:ann")


def test_cli_records_a_disposition(gate, facts, redis_url):
    import json
    import os
    import subprocess
    import sys

    reserve(gate, "c-9")
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": KEY}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dialer", "calls", "disposition", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=60)

    done = cli("--tenant", "t1", "c-9", "refused", "--note", "no thanks")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["recorded"] == "refused"
    assert stored_outcome(facts, "c-9") == "refused"
    missing = cli("--tenant", "t2", "c-9", "refused")
    assert missing.returncode == 1 and "no call c-9 in tenant t2" in missing.stderr
    assert "Traceback" not in missing.stderr
