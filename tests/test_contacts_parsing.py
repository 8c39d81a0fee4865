"""Contact files: encodings, delimiters, headers, mappings, phone cells, record boundaries.

Every fixture file is written by the test itself (tmp_path)."""

from __future__ import annotations

import codecs
import csv
import io
import random
from pathlib import Path

import pytest

from dialer.contacts.chunks import iter_records, plan_chunks
from dialer.contacts.columns import Mapping, looks_like_data, parse_mapping, plan_columns
from dialer.contacts.phones import Phone, PhoneError, normalize
from dialer.contacts.sniff import FileError, sample_records, sniff
from rules import geo

ROWS = [
    ["Prénom", "Nom", "Téléphone", "Code postal"],
    ["Zoé", "Lefèvre", "01 45 67 89 01", "75011"],
    ["Jean-Noël", "Œuvre", "06 12 34 56 78", "13001"],
    ["Ana", "Müller; \"la grande\"", "+33 9 70 12 34 56", "69001"],
]
ENCODINGS = {
    "utf-8": b"",
    "utf-8-bom": codecs.BOM_UTF8,
    "utf-16-le-bom": codecs.BOM_UTF16_LE,
    "utf-16-be-bom": codecs.BOM_UTF16_BE,
    "cp1252": b"",
    "latin-1": b"",
}
CODEC = {"utf-8": "utf-8", "utf-8-bom": "utf-8", "utf-16-le-bom": "utf-16-le", "utf-16-be-bom": "utf-16-be",
         "cp1252": "cp1252", "latin-1": "latin-1"}


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8", delimiter: str = ",",
              newline: str = "\r\n") -> Path:
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator=newline).writerows(rows)
    path.write_bytes(ENCODINGS.get(encoding, b"") + text.getvalue().encode(CODEC.get(encoding, encoding)))
    return path


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_every_encoding_and_delimiter_reads_back_the_same_cells(tmp_path: Path, encoding: str,
                                                                 delimiter: str) -> None:
    rows = ROWS if encoding != "latin-1" else [[c.replace("Œ", "O") for c in r] for r in ROWS]
    path = write_csv(tmp_path / "list.csv", rows, encoding, delimiter)
    fmt = sniff(path)
    assert fmt.delimiter == delimiter
    assert fmt.encoding == CODEC[encoding] or (encoding == "latin-1" and fmt.encoding == "cp1252")
    assert fmt.bom == len(ENCODINGS[encoding])
    chunk = plan_chunks(str(path), fmt, has_header=True, target_bytes=10)
    cells = [r.cells for c in chunk for r in iter_records(str(path), fmt, c.start, c.end, c.first_row, c.first_line,
                                                          c.skip)]
    assert cells == rows[1:]
    assert sample_records(path, fmt)[0] == rows[0]


def test_cp1252_only_characters_are_read_as_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "win.csv"
    path.write_bytes("phone;nom\n0612345678;L’Œuvre – 5 €\n".encode("cp1252"))
    fmt = sniff(path)
    assert fmt.encoding == "cp1252"
    assert sample_records(path, fmt)[1] == ["0612345678", "L’Œuvre – 5 €"]


def test_latin1_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path: Path) -> None:
    path = tmp_path / "l1.csv"
    path.write_bytes(b"phone,nom\n0612345678,a\x81b\xe9\n")
    assert sniff(path).encoding == "latin-1"


def test_utf16_without_bom_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("phone;nom\r\n0612345678;Zoé\r\n".encode("utf-16-le"))
    fmt = sniff(path)
    assert (fmt.encoding, fmt.bom, fmt.delimiter) == ("utf-16-le", 0, ";")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(FileError) as exc:
        sniff(path)
    assert exc.value.code == "empty_file"


def test_whitespace_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_bytes(b"\r\n \r\n")
    with pytest.raises(FileError) as exc:
        sniff(path)
    assert exc.value.code == "empty_file"


_NOISE = random.Random(7)


@pytest.mark.parametrize("content", [
    bytes(_NOISE.randrange(256) for _ in range(5000)),  # noise, NULs included
    b"\x89PNG\r\n\x1a\n" + bytes(range(1, 32)) * 40,  # control characters without NUL
    b"PK\x03\x04" + b"\x00\x14\x00\x06\x00" * 100,  # a zip (xlsx) header
], ids=["noise", "png", "xlsx"])
def test_binary_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "list.xlsx"
    path.write_bytes(content)
    with pytest.raises(FileError) as exc:
        sniff(path)
    assert exc.value.code == "binary_file"


def test_quoted_fields_with_embedded_newlines_keep_row_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text('phone,note\n0612345678,"two\nlines"\n0612345679,"three\n\nlines"\n0612345670,end\n')
    fmt = sniff(path)
    for size in (1, 20, 1 << 20):  # chunk boundaries never cut a record
        chunks = plan_chunks(str(path), fmt, True, size)
        records = [r for c in chunks for r in iter_records(str(path), fmt, c.start, c.end, c.first_row,
                                                           c.first_line, c.skip)]
        assert [(r.row, r.line, r.cells[1]) for r in records] == [
            (2, 2, "two\nlines"), (3, 4, "three\n\nlines"), (4, 7, "end")]
        assert sum(c.rows for c in chunks) == 3


def test_chunks_cover_every_record_once(tmp_path: Path) -> None:
    rng = random.Random(1)
    rows = [["phone", "note"]] + [[f"06{rng.randrange(10**8):08d}", rng.choice(["a", "b,c", 'q"d', "x\ny"])]
                                  for _ in range(2000)]
    path = write_csv(tmp_path / "many.csv", rows, "utf-8-bom", ";")
    fmt = sniff(path)
    chunks = plan_chunks(str(path), fmt, True, 4096)
    assert len(chunks) > 5
    got = [r for c in chunks for r in iter_records(str(path), fmt, c.start, c.end, c.first_row, c.first_line, c.skip)]
    assert [r.cells for r in got] == rows[1:]
    assert [r.row for r in got] == list(range(2, 2002))


def test_runaway_quote_is_one_error_not_a_crash(tmp_path: Path) -> None:
    lines = ["phone,note", "0612345678,ok", '0612345679,"never closed'] + \
        [f"06123456{i:02d},filler {'x' * 3000}" for i in range(60)]
    path = tmp_path / "runaway.csv"
    path.write_text("\n".join(lines) + "\n0699999999,after\n")
    fmt = sniff(path)
    records = list(iter_records(str(path), fmt, 0, -1, 1, 1, skip=1))
    assert records[0].cells == ["0612345678", "ok"]
    assert records[1].cells is None and "field larger" in records[1].error
    assert records[1].row == 3


# ---- columns ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "field"), [
    ("Téléphone", "phone"), ("TELEPHONE PORTABLE", "phone"), ("Mobile", "phone"), ("tel", "phone"),
    ("Portable", "phone"), ("Phone Number", "phone"), ("Prénom", "first_name"), ("First Name", "first_name"),
    ("Nom", "last_name"), ("last_name", "last_name"), ("Code Postal", "postal_code"), ("ZIP", "postal_code"),
    ("Pays", "country"), ("Country", "country"), ("Région", "state"), ("Province", "state"), ("State", "state"),
    ("consent_given_at", "consent_given_at"), ("Date consentement", "consent_given_at"),
])
def test_header_auto_mapping(header: str, field: str) -> None:
    plan = plan_columns([header, "phone2"] if field != "phone" else [header], None)
    assert any(c.name == header and c.field == field for c in plan.columns)


def test_unmapped_columns_are_dropped_unless_kept() -> None:
    header = ["phone", "Notes internes", "Segment", "Salaire"]
    plan = plan_columns(header, None)
    assert [c.name for c in plan.columns] == ["phone"]
    assert set(plan.dropped) == {"Notes internes", "Segment", "Salaire"}
    kept = plan_columns(header, parse_mapping({"keep": ["Segment"]}))
    assert [(c.name, c.field) for c in kept.columns] == [("phone", "phone"), ("Segment", "keep:Segment")]


def test_explicit_mapping_by_name_and_position() -> None:
    mapping = parse_mapping({"columns": {"Numéro client": "external_id", "#3": "phone"}, "auto": False})
    plan = plan_columns(["Numéro client", "Nom", "Contact tel"], mapping)
    assert [(c.index, c.field) for c in plan.columns] == [(0, "external_id"), (2, "phone")]


@pytest.mark.parametrize("doc", [[], {"columns": {"a": "nonsense"}}, {"colums": {}}, {"keep": "a"},
                                 {"header": "yes"},
                                 {"columns": {"Segment": "keep:"}}])  # was stored as a field named "x."
def test_bad_mapping_files_are_refused(doc: object) -> None:
    with pytest.raises(FileError) as exc:
        parse_mapping(doc)
    assert exc.value.code == "bad_mapping"


def test_duplicate_header_names_are_refused_with_positions() -> None:
    with pytest.raises(FileError) as exc:
        plan_columns(["phone", "nom", "Phone"], None)
    assert exc.value.code == "duplicate_header"
    assert "positions 1, 3" in exc.value.message


def test_duplicate_header_names_are_fine_when_mapped_by_position_or_dropped() -> None:
    plan = plan_columns(["Tel", "Notes", "Tel", "Notes"], Mapping(columns={"#1": "phone", "#3": "ignore"}))
    assert [(c.index, c.field) for c in plan.columns] == [(0, "phone")]
    assert plan.dropped.count("Notes") == 2


def test_no_phone_column_is_refused() -> None:
    with pytest.raises(FileError) as exc:
        plan_columns(["Nom", "Prénom"], None)
    assert exc.value.code == "no_phone_column"


def test_headerless_file_is_detected_and_its_phone_column_found() -> None:
    first = ["Dupont", "06 12 34 56 78", "75011"]
    assert looks_like_data(first)
    assert not looks_like_data(["Nom", "Téléphone", "Code postal"])
    plan = plan_columns(first, None, [["Martin", "0612345679", "13001"]])
    assert not plan.has_header
    assert [(c.index, c.field) for c in plan.columns] == [(1, "phone")]


# ---- phone cells ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "e164", "ext"), [
    ("01 45 67 89 01", "+33145678901", None),
    ("612345678", "+33612345678", None),  # leading zero lost by a spreadsheet
    ("0033612345678", "+33612345678", None),  # international prefix
    ("+33 (0)6 12 34 56 78", "+33612345678", None),
    ("'+33612345678", "+33612345678", None),  # our own export format
    ("06.12.34.56.78 x12", "+33612345678", "12"),
    ("01 45 67 89 01 poste 215", "+33145678901", "215"),
    ("+1 212 555 0100 ext. 7", "+12125550100", "7"),
])
def test_numbers_normalize(raw: str, e164: str, ext: str | None) -> None:
    phone = normalize(raw, "FR")
    assert isinstance(phone, Phone)
    assert (phone.e164, phone.extension) == (e164, ext)


@pytest.mark.parametrize(("raw", "reason"), [
    ("0612AB3456", "phone_has_letters"), ("1-800-FLOWERS", "phone_has_letters"), ("", "missing_phone"),
    ("12", "phone_too_short"), ("000612345678", "invalid_length"), ("+999 1234567", "invalid_country_code"),
    ("06 12 34 56 78 90 12 34 56 78", "phone_too_long"), ("06 12 34 * 56", "phone_unparseable"),
    ("+33 1 23", "invalid_length"), ("08 99 99 99 99 9", "invalid_length"),
])
def test_bad_numbers_get_a_reason(raw: str, reason: str) -> None:
    result = normalize(raw, "FR")
    assert isinstance(result, PhoneError)
    assert result.reason == reason


def test_line_types_zones_and_jurisdictions() -> None:
    mobile, voip, ny, jm = (normalize(r, "FR") for r in ("0612345678", "0970123456", "+12125550100", "+18765550100"))
    assert (mobile.line_type, mobile.timezones, mobile.country) == ("mobile", ("Europe/Paris",), "FR")
    assert voip.line_type == "voip"
    assert (ny.country, ny.subdivision, ny.timezones) == ("US", "NY", ("America/New_York",))
    assert jm.country == "JM" and "America/Jamaica" in jm.timezones


def test_normalization_agrees_with_rules_geo() -> None:
    rng = random.Random(11)
    raws = [f"+1{rng.randint(200, 999)}{rng.randint(200, 999)}{rng.randrange(10000):04d}" for _ in range(1500)]
    raws += [f"+33{rng.randint(1, 9)}{rng.randrange(10**8):08d}" for _ in range(1500)]
    raws += [f"+{rng.choice([44, 49, 7, 61, 55, 590, 262, 596])}{rng.randrange(10**9):09d}" for _ in range(1500)]
    checked = 0
    for raw in raws:
        phone = normalize(raw, "FR")
        if isinstance(phone, Phone):
            checked += 1
            assert (phone.country, phone.subdivision) == geo.jurisdiction_for_number(phone.e164), raw
            assert phone.timezones == geo.zones_for_number(phone.e164), raw
    assert checked > 1500


def test_fast_path_agrees_with_phonenumbers_parse() -> None:
    """normalize() skips phonenumbers.parse for clean +CC / 00CC / 0NSN cells; the answer must be the
    one the full parse (the slow path) gives, for valid and invalid numbers alike."""
    from dialer.contacts.phones import _slow

    rng = random.Random(5)
    regions = ["FR", "US", "GB", "DE", "IT", "BR", "AR", "MX", "ES", "BE", "CH", "CA", "AU", "JP", "IN"]
    checked = fast_valid = 0
    for _ in range(6000):
        region = rng.choice(regions)
        body = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 12)))
        cc = rng.choice(["1", "33", "44", "49", "39", "55", "54", "52", "34", "61", "81", "91", "590", "262"])
        raw = rng.choice([f"+{cc}{body}", f"00{cc}{body}", f"011{cc}{body}", f"0{body}", f"1{body}", body,
                          f"+{cc} {body[:3]} {body[3:]}", f"0{body[:1]}.{body[1:5]}.{body[5:]}"])
        fast, slow = normalize(raw, region), _slow(raw, region)
        assert fast == slow, (raw, region, fast, slow)
        checked += 1
        fast_valid += isinstance(fast, Phone)
    assert checked == 6000 and fast_valid > 500


def test_record_rules_cell_length_extra_cells_and_consent() -> None:
    from dialer.contacts.rows import process_record

    plan = plan_columns(["phone", "nom", "consent_given_at", "consent_written", "consent_purpose"], None)
    long = process_record(["0612345678", "x" * 1001, "", "", ""], 5, 7, plan, "FR")
    assert (long.rejected, long.errors[0].column, long.errors[0].row, long.errors[0].line) == \
        ("cell_too_long", "nom", 5, 7)
    extra = process_record(["0612345678", "a", "", "", "", "spill"], 6, 8, plan, "FR")
    assert extra.rejected == "field_count"
    trailing = process_record(["0612345678", "a", "", "", "", ""], 7, 9, plan, "FR")  # empty extra cells: fine
    assert trailing.rejected is None
    ok = process_record(["0612345678", "a", "31/05/2024", "oui", "survey"], 8, 10, plan, "FR")
    assert ok.consent is not None and ok.consent["written"] is True and ok.consent["purpose"] == "survey"
    assert ok.consent["given_at"] == "2024-05-31T00:00:00+00:00"
    odd = process_record(["0612345678", "a", "2024-05-31", "maybe", ""], 9, 11, plan, "FR")
    assert odd.consent is None and odd.errors[0].reason == "consent_bad_written"
    newsletter = process_record(["0612345678", "a", "2024-05-31", "", "newsletter"], 10, 12, plan, "FR")
    assert newsletter.consent is not None
    assert [(e.reason, e.severity) for e in newsletter.errors] == [("consent_unknown_purpose", "warning")]


@pytest.mark.parametrize(("content", "line"), [
    (b"\xef\xbb\xbfphone,name\n0612345201,Zo\xc3\xa9\n0612345202,H\xe9l\xe8ne\n", 3),  # BOM, then a CP1252 line
    ("phone,name\n0612345204,a\n".encode("utf-16") + b"A", 3),  # UTF-16 with an odd trailing byte
    ("phone,name\n0612345205,".encode("utf-16") + b"\x00\xd8" + "x\n".encode("utf-16-le"), 2),  # lone surrogate
    ("phone,name\n0612345206,a\n".encode("utf-16-le") + b"A\xdc", 3),  # no BOM, NUL pattern, lone surrogate
    ("téléphone;nom\n".encode() + b"".join(f"06{i:08d};Zoé\n".encode() for i in range(60000))
     + "0699999999;Hélène\n".encode("cp1252"), 60002),  # UTF-8 accents, then a CP1252 line past the sample
], ids=["utf8-bom", "utf16-odd", "utf16-surrogate", "utf16-nobom", "mixed"])
def test_encoding_broken_midway_is_refused_naming_the_line(tmp_path: Path, content: bytes, line: int) -> None:
    # These raised UnicodeDecodeError while parsing (internal_error and a traceback from the CLI), or, for
    # the mixed file, were read as CP1252: every accented name garbled and the header not recognized.
    path = tmp_path / "enc.csv"
    path.write_bytes(content)
    with pytest.raises(FileError) as exc:
        sniff(path)
    assert exc.value.code == "bad_encoding" and f"line {line} " in exc.value.message


def test_cp1252_with_accents_only_after_the_sample_is_still_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_bytes(b"phone;nom\n" + b"".join(f"06{i:08d};Zoe\n".encode() for i in range(60000))
                     + "0699999999;Hélène\n".encode("cp1252"))
    assert sniff(path).encoding == "cp1252"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_huge_line_is_refused_without_being_held_in_memory(tmp_path: Path, encoding: str) -> None:
    # A 60 MB line made the import hold all of it (176 MB RSS): memory grew with the input.
    import tracemalloc

    path = tmp_path / "huge.csv"
    with path.open("wb") as fh:
        fh.write(("phone,note\n0612345678,ok\n0612345679," + "a" * 12_000_000 + "\n0612345670,end\n")
                 .encode(encoding))
    fmt = sniff(path)
    tracemalloc.start()
    try:
        chunks = plan_chunks(str(path), fmt, True, 4 << 20)
        records = [r for c in chunks for r in iter_records(str(path), fmt, c.start, c.end, c.first_row,
                                                           c.first_line, c.skip)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(r.row, r.line, r.cells) for r in records if r.cells is not None] == \
        [(2, 2, ["0612345678", "ok"]), (4, 4, ["0612345670", "end"])]
    [bad] = [r for r in records if r.cells is None]
    assert (bad.row, bad.line) == (3, 3) and "longer than 1 MiB" in bad.error
    assert peak < 12 << 20, peak  # a few MiB of buffers, not the 12-48 MB line


def test_invalid_number_messages_name_the_country_they_were_read_in() -> None:
    # "wrong number of digits for this country" left a French list's uploader guessing which country.
    us_in_fr = normalize("(212) 555-0100", "FR")
    assert isinstance(us_in_fr, PhoneError) and us_in_fr.reason == "invalid_length"
    assert "FR (+33)" in us_in_fr.message and "national number of the list's region FR" in us_in_fr.message
    international = normalize("00612345604", "FR")
    assert isinstance(international, PhoneError) and international.reason == "invalid_number"
    assert "AU (+61)" in international.message and "list's region" not in international.message
