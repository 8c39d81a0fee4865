"""The import's per-row cuts (s15-parse) change no outcome: old and new functions give equal answers over a few
thousand generated cells and rows, valid and invalid ones, in several regions and formats.

The old phone normalization is frozen in tests/reference_phones.py; the old staged row is StagedRows.add over
contact_data (kept, as the reference, in dialer.contacts.staging).
"""

from __future__ import annotations

import dataclasses
import random

import phonenumbers
import pytest
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from dialer.contacts import phones, rows, staging
from dialer.contacts.columns import Mapping, plan_columns
from tests import reference_phones

REGIONS = ["FR", "US", "GB", "DE", "IT", "BR", "AR", "MX", "ES", "BE", "CH", "CA", "AU", "JP", "IN", "RE", "GP"]


def _key(answer: object) -> tuple:
    return type(answer).__name__, dataclasses.astuple(answer)


def _cells(rng: random.Random, count: int) -> list[tuple[str, str]]:
    codes = [*COUNTRY_CODE_TO_REGION_CODE, 1, 1, 33, 33, 33, 44, 39, 262, 590]
    cells = []
    for _ in range(count):
        region, cc = rng.choice(REGIONS), rng.choice(codes)
        body = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 13)))
        lead = rng.choice("1234567899")
        cells.append((rng.choice([
            f"+{cc}{body}", f"00{cc}{body}", f"011{cc}{body}", f"0{body}", body, f"+{cc} {body[:3]} {body[3:]}",
            f"0{lead} {body[:2]} {body[2:4]} {body[4:6]} {body[6:8]}", f"0{lead}{body[:8]}", f"+33 {lead} {body[:8]}",
            f"0{body[:1]}.{body[1:5]}.{body[5:]} x12", f"{body} poste 3", f"{body}a", f"+800{body[:8]}",
            f"+39 0{body[:9]}", f"'{body}", f" ({body[:3]}) {body[3:]} ", "", "  ", f"{body}*",
        ]), region))
    return cells


def test_normalize_equals_the_previous_normalize() -> None:
    answers: dict[str, int] = {}
    for raw, region in _cells(random.Random(18), 8000):
        new, old = phones.normalize(raw, region), reference_phones.normalize(raw, region)
        assert _key(new) == _key(old), (raw, region)
        name = "valid" if isinstance(new, phones.Phone) else new.reason
        answers[name] = answers.get(name, 0) + 1
    # the comparison covered accepted cells and every family of refusal
    assert answers["valid"] > 1000, answers
    for reason in ("invalid_number", "invalid_length", "phone_has_letters", "phone_too_short", "missing_phone",
                   "phone_unparseable", "invalid_country_code"):
        assert answers.get(reason, 0) > 5, (reason, answers)


def test_number_type_equals_phonenumbers() -> None:
    rng = random.Random(7)
    codes = list(COUNTRY_CODE_TO_REGION_CODE)
    compared = valid = 0
    for _ in range(30000):
        body = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 13)))
        try:
            number = phonenumbers.parse(f"+{rng.choice(codes)}{body}", None)
        except phonenumbers.NumberParseException:
            continue
        expected = phonenumbers.number_type(number)
        assert phones.region_of(number) == phonenumbers.region_code_for_number(number)
        assert phones.number_type(number, phones.region_of(number)) == expected, number
        compared += 1
        valid += expected != phonenumbers.PhoneNumberType.UNKNOWN
    assert compared > 20000 and valid > 1000


@pytest.mark.parametrize("seed", [1, 2])
def test_rows_and_staged_rows_equal_the_previous_ones(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole rows: same judgement (phones, fields, errors, rejection) with the old normalize swapped in, and the
    staged tuples of add_result equal to add(contact_data(...)), JSON text byte for byte."""
    rng = random.Random(seed)
    header = ["Téléphone", "Portable", "Prénom", "Nom", "Code postal", "priority", "Ville", "Pays"]
    plan = plan_columns(header, Mapping(keep=["Ville", "priority"]), None)
    cells = _cells(rng, 6000)
    names = ["Zoé", "Noël \"le\" Grand", "back\\slash", "tab\there", "", "émoji 🙂", "line\nbreak", "x" * 30]
    records = []
    for i in range(3000):
        records.append([cells[2 * i][0], cells[2 * i + 1][0], rng.choice(names), rng.choice(names),
                        f"{rng.randrange(1000, 96000):05d}", rng.choice(["", "", "7", "12", "-3", "x"]),
                        rng.choice(names), rng.choice(["", "FR", "US"])])
    new_results = [rows.process_record(r, i + 2, i + 2, plan, "FR") for i, r in enumerate(records)]
    def old_normalize(raw: str, region: str) -> phones.Phone | phones.PhoneError:  # in the classes rows checks
        answer = reference_phones.normalize(raw, region)
        kind = phones.Phone if isinstance(answer, reference_phones.Phone) else phones.PhoneError
        return kind(*dataclasses.astuple(answer))

    monkeypatch.setattr(rows, "normalize", old_normalize)
    old_results = [rows.process_record(r, i + 2, i + 2, plan, "FR") for i, r in enumerate(records)]
    staged_new = staging.StagedRows(None, "t1", "imp", "a1")  # type: ignore[arg-type]
    staged_old = staging.StagedRows(None, "t1", "imp", "a1")  # type: ignore[arg-type]
    kept = 0
    for i, (new, old) in enumerate(zip(new_results, old_results, strict=True)):
        assert [(c, _key(p)) for c, p in new.phones] == [(c, _key(p)) for c, p in old.phones]
        assert (new.fields, new.consent, new.errors, new.rejected) == (old.fields, old.consent, old.errors,
                                                                       old.rejected)
        if not new.rejected:
            kept += 1
            cid = f"imp-{i + 2}"
            staged_new.add_result(new, cid, "leads", "spring" if i % 2 else "", i + 2, i + 3)
            staged_old.add(staging.contact_data(new, cid, "leads", "spring" if i % 2 else "", "imp", i + 2),
                           i + 2, i + 3)
    assert staged_new.contacts == staged_old.contacts
    assert staged_new.phones == staged_old.phones
    assert 500 < kept < 2900  # both kept and rejected rows were compared
    assert any(row[10] for row in staged_new.contacts)  # a priority was read
