"""The optimised engine decides exactly as a straightforward evaluation does.

tests/reference_engine.py is the engine as it was before the performance work, without its memoisation.
Thousands of seeded random scenarios (every shipped pack, a replacement pack with other values under the same
rule ids, instants on DST switch days, public holidays and window edges, varied facts and campaigns) are
decided by both; any cache, index or shortcut of the optimised path that changes a decision (allowed, a
reason's code, text, rule, source or until, next_allowed_at, packs, jurisdictions) fails the test.
The optimised engine is called in a campaign-like order (many contacts at one instant, the same contact again
later, instants revisited) so that its caches are warm and shared between unrelated scenarios.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import reference_engine

from rules import default_packs, evaluate, load_packs
from rules.model import Attempt, Campaign, Consent, Contact, Facts, Lists, Relationship

CONTACTS = [
    Contact("+33145678901", "FR", "75011"), Contact("+33145678901"), Contact("01 45 67 89 01", "FR", "75011"),
    Contact("+33612345678", "FR", "97110"), Contact("+33388000000", "FR", "67000"),
    Contact("+33387000000", "fr", "57000"),
    Contact("+590590123456"), Contact("+262262123456"), Contact("+33612345678", "DE"),
    Contact("+12125550123"), Contact("+12702021234"), Contact("+13055550123", "US", "30301"), Contact("+12055550123"),
    Contact("+12055550123", "US", state="AL"), Contact("+13375550123"), Contact("+16015550123"),
    Contact("+14055550123"),
    Contact("+13015550123"), Contact("+16175550123"), Contact("+12035550123"), Contact("+15025550123"),
    Contact("+13055550123", "US", "33101"), Contact("+17875550123"), Contact("+13105550123", "US", "10001"),
    Contact("+14165550123"), Contact("+14165550123", "CA", "H2X 1Y4"), Contact("+18675550123"), Contact("+16045550123"),
    Contact("+442079460000"), Contact("+447700900123"), Contact("+49301234567"),
    Contact("+4915112345678", "FR", "75011"),
    Contact("+18005550199"), Contact("+61291234567"), Contact("+18765550123"), Contact("garbage"), Contact("+1555"),
    # an address without a country, an address the gate cannot place, a French mobile without an address
    Contact("+12125550123", state="FL"), Contact("+12125550123", "US", "abc"), Contact("+33612345678"),
    # issue 13: a toll-free number with a US address and no state, a 4-digit ZIP, Oklahoma and Maryland numbers
    Contact("+18005550199", "US"), Contact("+15002345678"), Contact("+12125550123", "US", "1000"),
    Contact("+14055550123", "US", "73102"), Contact("+13015550123"),
]
# (zone, local wall times worth probing): window edges of the shipped packs
ZONES = ["Europe/Paris", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
         "Europe/London", "Europe/Berlin", "America/Toronto", "America/Guadeloupe", "Indian/Reunion",
         "America/Puerto_Rico"]
EDGES = [(7, 59, 59), (8, 0, 0), (8, 59, 59), (9, 0, 0), (9, 59, 59), (10, 0, 0), (12, 0, 0), (12, 59, 59),
         (13, 0, 0), (13, 59, 59), (14, 0, 0), (17, 0, 0), (19, 59, 59), (20, 0, 0), (20, 59, 59), (21, 0, 0),
         (21, 30, 0), (23, 59, 59), (0, 0, 0), (2, 30, 0)]
# DST switch days (US and EU), public holidays (FR, Alsace-Moselle, US, AL, LA, CA, GB, DE), a law change (FR
# opt-in from 2026-08-11), ordinary days
DAYS = ["2026-03-08", "2026-03-09", "2026-11-01", "2026-11-02", "2026-03-29", "2026-03-30", "2026-10-25",
        "2025-10-26", "2025-11-02", "2026-05-01", "2026-07-14", "2026-04-03", "2026-12-26", "2026-12-25",
        "2026-07-04", "2026-07-03", "2026-01-19", "2026-02-16", "2026-05-25", "2026-08-10", "2026-08-11",
        "2026-08-12", "2026-04-06", "2026-11-11", "2026-01-01", "2027-01-01", "2026-01-12", "2026-01-17",
        "2026-01-18", "2026-06-15", "2025-12-31", "2024-01-01", "2023-12-31", "2026-09-07", "2026-10-12"]
OUTCOMES = ["answered", "no_answer", "busy", "failed", "machine", "refused", "abandoned", "reserved", "opted_out",
            "unknown"]
PURPOSES = ["telemarketing"] * 4 + ["informational", "debt_collection", "survey", "political", "charity"]

REPLACEMENT_FR = """
id = "fr"
version = "test.1"
jurisdiction = "FR"
name = "France, other values under the same rule ids"
timezone = "Europe/Paris"

[[rules]]
id = "fr/hours"
kind = "calling_hours"
source = "test"
windows = { mon = ["09:00-12:00"], tue = ["09:00-12:00", "13:30-19:00"], sat = ["10:00-12:00"] }

[[rules]]
id = "fr/holidays"
kind = "public_holidays"
country = "FR"
subdivision = "6AE"
source = "test"

[[rules]]
id = "fr/frequency"
kind = "frequency_cap"
max = 2
window = "7d"
scope = "campaign"
outcomes = ["no_answer", "busy"]
source = "test"

[[rules]]
id = "fr/spacing"
kind = "retry_spacing"
duration = "4h"
from = 2026-06-01
source = "test"

[[rules]]
id = "fr/days"
kind = "no_calls_on_days"
days = ["wed"]
until = 2026-09-01
source = "test"

[[rules]]
id = "fr/company-dnc"
kind = "company_dnc"
source = "test"
"""


def _instant(rng: random.Random) -> datetime:
    roll = rng.random()
    if roll < 0.55:  # a window edge on a special day, in one of the zones
        day = datetime.fromisoformat(rng.choice(DAYS))
        h, m, s = rng.choice(EDGES)
        local = day.replace(hour=h, minute=m, second=s, tzinfo=ZoneInfo(rng.choice(ZONES)))
        return local.astimezone(UTC) + timedelta(microseconds=rng.choice([0, 0, 0, 1, 999_999]))
    if roll < 0.8:  # any instant of a special day
        day = datetime.fromisoformat(rng.choice(DAYS)).replace(tzinfo=UTC)
        return day + timedelta(seconds=rng.randrange(-12 * 3600, 36 * 3600))
    return datetime(2023, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(5 * 365 * 86400))


def _facts(rng: random.Random, at: datetime) -> Facts:
    def ago(max_days: float) -> datetime:
        return at - timedelta(seconds=rng.randrange(-3600, int(max_days * 86400)))

    history = tuple(Attempt(ago(rng.choice([1, 3, 35, 70])), rng.choice(["c1", "c2"]), rng.choice(OUTCOMES))
                    for _ in range(rng.choice([0, 0, 1, 2, 3, 4, 5, 7])))
    consent = []
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3])):
        given = ago(200) if rng.random() < 0.85 else None
        consent.append(Consent(
            given_at=given, purpose=rng.choice(["telemarketing", "telemarketing", "*", "survey", "informational"]),
            written=rng.random() < 0.6,
            expires_at=ago(30) + timedelta(days=rng.choice([0, 40, 400])) if rng.random() < 0.3 else None,
            withdrawn_at=ago(60) if given is None or rng.random() < 0.15 else None,
            channel=rng.choice(["phone", "phone", "phone", "sms", "*"]),
            campaign=rng.choice([None, None, None, "c1", "c2"]),
            source=rng.choice(["web form"] * 4 + [""]), evidence=rng.choice(["ref-1", "", ""])))
    relationships = tuple(
        Relationship(rng.choice(["purchase", "inquiry", "contract", "transaction"]), ago(rng.choice([30, 120, 700])),
                     until=ago(20) if rng.random() < 0.3 else None)
        for _ in range(rng.choice([0, 0, 0, 1, 2])))
    national = rng.choice([{"*": False}] * 5 + [{}, {"*": True}, {"bloctel": True}, {"us_dnc": False, "dncl": True},
                                                {"tps": True, "ctps": False}, {"us_dnc": True}, {"bloctel": False}])
    copies = rng.choice([{"national": ago(45)}] * 5 + [{}, {"bloctel": ago(40)}, {"us_dnc": ago(35), "dncl": ago(2)},
                                                       {"*": ago(32)}])
    return Facts(consent=tuple(consent), relationships=relationships, history=history, registry_copies=copies,
                 lists=Lists(national=national, company=rng.random() < 0.05, campaign=rng.random() < 0.05))


def _campaign(rng: random.Random) -> Campaign:
    return Campaign(rng.choice(["c1", "c1", "c2"]), "t1", purpose=rng.choice(PURPOSES),
                    caller_id=rng.choice(["+33162000000"] * 8 + [None, "", "+33612345678", "+19005551234"]),
                    audience=rng.choice(["consumer", "consumer", "consumer", "business"]),
                    voice=rng.choice(["human", "human", "artificial"]), recording=rng.random() < 0.2,
                    dialing=rng.choice([None, "manual", "manual", "predictive", "preview"]),
                    contract_related=rng.random() < 0.3)


@pytest.fixture(scope="module")
def replacement_packs(tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("packs")
    (folder / "fr.toml").write_text(REPLACEMENT_FR)
    return load_packs(folder)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_optimised_engine_decides_as_the_reference(seed: int, replacement_packs) -> None:
    rng = random.Random(seed)
    pack_sets = [default_packs(), replacement_packs, load_packs()]
    compared = allowed = 0
    for _ in range(60):  # 60 instants, each decided for many contacts (as a batch) and revisited later
        at = _instant(rng)
        batch = [(rng.choice(CONTACTS), _campaign(rng), None) for _ in range(12)]
        for step in range(3):
            t = at + timedelta(seconds=rng.choice([0, 0, 1, 60, 3600, 86400])) if step else at
            packs = rng.choice(pack_sets)
            for contact, campaign, _ in batch:
                facts = _facts(rng, t)
                for _repeat in range(2):  # the second one is served from warm caches
                    got = evaluate(contact, campaign, facts, t, packs)
                    want = reference_engine.evaluate(contact, campaign, facts, t, packs)
                    assert got == want, (contact, campaign, facts, t, [p.id + p.version for p in packs.packs])
                    compared += 1
                    allowed += got.allowed
    # the mix must exercise both outcomes, or the test could not catch a cache that flips them
    assert compared == 60 * 3 * 12 * 2
    assert 0.05 * compared < allowed < 0.8 * compared


def test_reference_engine_is_not_the_engine_itself() -> None:
    assert reference_engine.evaluate is not evaluate
    assert reference_engine.__file__ != evaluate.__code__.co_filename
