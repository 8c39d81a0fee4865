"""The public scenario format: what parses, and how a malformed scenario is named."""

from __future__ import annotations

import copy

import pytest

from rules.scenario import ScenarioError, parse_scenario

BASE = {
    "id": "s", "at": "2026-01-12T08:30:00Z",
    "contact": {"phone": "+33145678901", "country": "FR", "postal_code": "75011", "state": None},
    "campaign": {"id": "c1", "tenant": "t1", "purpose": "telemarketing", "audience": "consumer", "voice": "human",
                 "recording": False},
    "consent": [{"given_at": "2025-12-01T10:00:00Z", "purpose": "telemarketing", "written": True,
                 "expires_at": None, "withdrawn_at": None, "source": "web form", "evidence": "ref-123"}],
    "relationships": [{"kind": "purchase", "at": "2025-06-01T00:00:00Z"}],
    "lists": {"national": True, "company": False, "campaign": False},
    "registry_copies": {"national": "2026-01-02T00:00:00Z"},
    "history": [{"at": "2026-01-05T10:00:00Z", "campaign": "c1", "outcome": "no_answer"}],
}


def with_(path: str, value):
    data = copy.deepcopy(BASE)
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


def test_the_issue_example_parses():
    s = parse_scenario(BASE)
    assert s.contact.phone == "+33145678901" and s.campaign.tenant == "t1"
    assert s.facts.lists.national == {"*": True}
    assert s.facts.consent[0].written and s.facts.consent[0].evidence == "ref-123"
    assert s.facts.history[0].outcome == "no_answer"
    assert s.at.isoformat() == "2026-01-12T08:30:00+00:00"


def test_lists_national_absent_is_unknown_and_per_registry_map():
    assert parse_scenario(with_("lists.national", KeyError)).facts.lists.national == {}
    assert parse_scenario(with_("lists.national", {"us_dnc": True})).facts.lists.national == {"us_dnc": True}
    assert parse_scenario(with_("registry_copies", KeyError)).facts.registry_copies == {}


@pytest.mark.parametrize("path,value,message", [
    ("at", KeyError, "at: required instant"),
    ("at", "2026-01-12T08:30:00", "at: the instant needs a zone"),
    ("at", "yesterday", "at: not an ISO 8601 instant"),
    ("contact.phone", KeyError, "contact.phone: required string"),
    ("contact.postal_code", 75011, "contact.postal_code: expected a string"),
    ("contact.zip", "75011", "contact.zip: unknown field"),
    ("campaign.id", KeyError, "campaign.id: required string"),
    ("campaign.voice", "robot", "campaign.voice: expected one of human, artificial"),
    ("campaign.purpose", "sales", "campaign.purpose: expected one of"),
    ("consent.0.written", "yes", "consent[0].written: expected true or false"),
    ("consent.0.given_at", None, "consent[0]: needs given_at, withdrawn_at or both"),
    ("consent", {"given_at": "x"}, "consent: expected a list"),
    ("relationships.0.at", KeyError, "relationships[0].at: required instant"),
    ("lists.national", "yes", "lists.national: expected true, false"),
    ("history.0.outcome", "hung_up", "history[0].outcome: expected one of"),
    ("histroy", [], "histroy: unknown field"),
    ("registry_copies.national", "last week", "registry_copies.national: not an ISO 8601 instant"),
])
def test_malformed_scenarios_name_the_field(path, value, message):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(with_(path, value))
    assert str(info.value).startswith(message)


def test_not_an_object():
    with pytest.raises(ScenarioError, match="scenario: expected an object"):
        parse_scenario([1, 2])
