"""Pack files: the shipped ones load; broken ones fail with the file and the field named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rules.packs import BUILTIN_DIR, KINDS, PackError, load_pack, load_packs

GOOD = '''
id = "xx"
version = "1"
jurisdiction = "FR"
timezone = "Europe/Paris"

[[rules]]
id = "xx/hours"
kind = "calling_hours"
source = "test"
windows = { mon = ["10:00-13:00"] }

[[rules]]
id = "xx/cap"
kind = "frequency_cap"
source = "test"
max = 4
window = "30d"
'''


def test_every_shipped_pack_loads_and_cites_its_sources():
    packs = load_packs()
    ids = {p.id for p in packs.packs}
    assert {"us", "us-fl", "us-ok", "us-md", "us-al", "us-la", "us-ms", "fr", "gb", "ca", "de"} <= ids
    for pack in packs.packs:
        assert pack.version and pack.jurisdiction and Path(pack.path).parent == BUILTIN_DIR
        for rule in pack.rules:
            assert rule.kind in KINDS and rule.source.strip()
            assert rule.id.split("/")[0] == pack.id


def test_effective_dates_use_the_pack_timezone():
    fr = next(p for p in load_packs().packs if p.id == "fr")
    opt_in = next(r for r in fr.rules if r.id == "fr/opt-in")
    assert opt_in.start == datetime(2026, 8, 10, 22, 0, tzinfo=UTC)  # midnight in Paris (CEST)
    bloctel = next(r for r in fr.rules if r.id == "fr/bloctel")
    assert bloctel.end == opt_in.start
    assert not opt_in.in_force(datetime(2026, 8, 10, 21, 59, 59, tzinfo=UTC))
    assert opt_in.in_force(datetime(2026, 8, 10, 22, 0, tzinfo=UTC))


@pytest.mark.parametrize("old,new,field", [
    ('windows = { mon = ["10:00-13:00"] }', 'windows = { mon = ["10h-13h"] }',
     'rules[0].windows.mon[0]: expected "HH:MM-HH:MM"'),
    ('windows = { mon = ["10:00-13:00"] }', 'windows = { mon = ["13:00-10:00"] }', "rules[0].windows.mon[0]"),
    ('windows = { mon = ["10:00-13:00"] }', 'windows = { monday = ["10:00-13:00"] }', "rules[0].windows.monday"),
    ('kind = "calling_hours"', 'kind = "calling_hourz"', "rules[0].kind: expected one of"),
    ('max = 4', 'max = 0', "rules[1].max: expected an integer >= 1"),
    ('max = 4', 'max = "4"', "rules[1].max"),
    ('window = "30d"', 'window = "30 days"', 'rules[1].window: expected a duration'),
    ('window = "30d"\n', '', "rules[1].window: required for kind frequency_cap"),
    ('source = "test"\nmax', 'max', "rules[1].source: expected a non-empty string"),
    ('id = "xx/cap"', 'id = "xx/hours"', "rules[1].id: duplicate rule id"),
    ('jurisdiction = "FR"', 'jurisdiction = "France"', "jurisdiction: expected a country code"),
    ('timezone = "Europe/Paris"', 'timezone = "Europe/Pariss"', "timezone: expected an IANA zone"),
    ('version = "1"\n', '', "version: expected a non-empty string"),
    ('max = 4', 'max = 4\nscope = "planet"', "rules[1].scope"),
    ('max = 4', 'max = 4\noutcomes = ["hung_up"]', "rules[1].outcomes[0]: expected one of"),
    ('max = 4', 'max = 4\npurposes = ["spam"]', "rules[1].purposes[0]"),
    ('max = 4', 'max = 4\nfrom = "2026-08-11"', "rules[1].from: expected a TOML date"),
    ('max = 4', 'max = 4\nfrom = 2026-08-11\nuntil = 2026-01-01', "rules[1].until: expected a date after"),
    ('max = 4', 'max = 4\nwindows = { mon = ["10:00-13:00"] }', "rules[1].windows: unknown field"),
])
def test_broken_pack_names_file_and_field(tmp_path: Path, old, new, field):
    assert old in GOOD
    path = tmp_path / "xx.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(PackError) as info:
        load_pack(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert field in message


def test_good_pack_loads(tmp_path: Path):
    path = tmp_path / "xx.toml"
    path.write_text(GOOD)
    pack = load_pack(path)
    assert [r.id for r in pack.rules] == ["xx/hours", "xx/cap"]


def test_cross_references_are_checked(tmp_path: Path):
    path = tmp_path / "xx.toml"
    path.write_text(GOOD + '\n[[rules]]\nid = "xx/waiver"\nkind = "consent_waives"\nsource = "t"\n'
                    'rules = ["xx/nope"]\n')
    with pytest.raises(PackError, match=r"xx.toml: rules\[2\].rules\[0\]: no rule 'xx/nope'"):
        load_pack(path)
    path.write_text(GOOD + '\n[[rules]]\nid = "xx/copy"\nkind = "registry_freshness"\nsource = "t"\n'
                    'registry = "bloctel"\nmax_age_days = 30\n')
    with pytest.raises(PackError, match=r"rules\[2\].registry: no national_registry rule"):
        load_pack(path)


def test_invalid_toml_and_overrides(tmp_path: Path):
    (tmp_path / "bad.toml").write_text("id = \n")
    with pytest.raises(PackError, match=r"bad.toml: invalid TOML"):
        load_packs(tmp_path)
    (tmp_path / "bad.toml").unlink()
    # a pack with a built-in id replaces it (rules.packs_dir)
    (tmp_path / "de.toml").write_text(GOOD.replace('id = "xx"', 'id = "de"').replace("xx/", "de/")
                                      .replace('jurisdiction = "FR"', 'jurisdiction = "DE"'))
    packs = load_packs(tmp_path)
    de = next(p for p in packs.packs if p.id == "de")
    assert de.version == "1" and [r.id for r in de.rules] == ["de/hours", "de/cap"]
    # the same rule id in two packs is refused
    (tmp_path / "de2.toml").write_text(GOOD.replace('id = "xx"', 'id = "de2"').replace("xx/", "de/")
                                       .replace('jurisdiction = "FR"', 'jurisdiction = "DE"'))
    with pytest.raises(PackError, match="is also used in"):
        load_packs(tmp_path)
    with pytest.raises(PackError, match="not a directory"):
        load_packs(tmp_path / "missing")


@pytest.mark.parametrize("fields,field", [
    ('country = "XX"', "rules[2].country: no public-holiday calendar for 'XX'"),
    ('country = "FR"\nsubdivision = "68"', "rules[2].subdivision: no FR holiday subdivision '68'"),
    ('country = "FR"\nsubdivisions = { "67" = "6EA" }', "rules[2].subdivisions.67: no FR holiday subdivision '6EA'"),
    ('country = "FR"\nwhen_subdivision_unknown = ["57", "67"]', "rules[2].when_subdivision_unknown[1]"),
    ('country = "FR"\nwhen_subdivision_unknown = "57"', "rules[2].when_subdivision_unknown: expected a list"),
])
def test_unknown_holiday_calendar_is_a_startup_error(tmp_path: Path, fields, field):
    """A typo in a holidays subdivision would otherwise fail inside the first evaluation, not at start."""
    path = tmp_path / "xx.toml"
    path.write_text(GOOD + f'\n[[rules]]\nid = "xx/holidays"\nkind = "public_holidays"\nsource = "t"\n{fields}\n')
    with pytest.raises(PackError) as info:
        load_pack(path)
    assert field in str(info.value)
    path.write_text(GOOD + '\n[[rules]]\nid = "xx/holidays"\nkind = "public_holidays"\nsource = "t"\ncountry = "FR"\n'
                    'subdivisions = { "67" = "6AE" }\nwhen_subdivision_unknown = ["57", "6AE"]\n')
    assert load_pack(path).rules[2].params["when_subdivision_unknown"] == ("57", "6AE")
