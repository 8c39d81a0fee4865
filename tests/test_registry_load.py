"""Loading registry files into a real redis-server: full, change, malformed, empty, duplicates, mixed forms."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.registry.loader import MAX_REPORTED_ERRORS, LoadRefused, drop_versions, load_registry
from dialer.registry.store import (
    RegistryNotLoaded,
    RegistryStore,
    RegistryUnavailable,
    key_chunk,
    key_current,
    key_lock,
)
from tests.registry_files import e164_fr, e164_nanp, french_numbers, nanp_numbers, write_lines

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def store(client: redis.Redis) -> RegistryStore:
    s = RegistryStore(client, refresh_interval=0.0)  # re-read the pointer on every call
    s.forget()
    return s


def registry_keys(client: redis.Redis, name: str) -> dict[bytes, bytes | dict]:
    """Every key of a registry with its value: to prove a refused load changed nothing."""
    out: dict[bytes, bytes | dict] = {}
    for key in sorted(client.scan_iter(match=f"reg:{{{name}}}:*")):
        out[key] = client.hgetall(key) if client.type(key) == b"hash" else client.get(key)
    return out


def test_full_load_then_lookups(redis_client: redis.Redis, tmp_path: Path) -> None:
    numbers = nanp_numbers(5000)
    path = write_lines(tmp_path / "dnc-full.txt", numbers)
    report = load_registry(redis_client, "us_dnc", path, loaded_at=T0)
    v = report.version
    assert v is not None and v.version == 1 and v.rows == 5000 and v.added == 5000 and v.removed == 0
    assert v.invalid == 0 and v.kind == "full" and v.file_name == "dnc-full.txt" and v.format == "us_dnc"
    assert v.source_hash == hashlib.sha256(path.read_bytes()).hexdigest()

    s = store(redis_client)
    assert s.status("us_dnc") == v
    assert s.loaded_at("us_dnc") == T0
    assert s.contains("us_dnc", e164_nanp(numbers[0]))
    absent = [e164_nanp(n) for n in nanp_numbers(200, seed=99) if n not in set(numbers)]
    queries = [e164_nanp(n) for n in numbers[::50]] + absent
    assert s.contains_many("us_dnc", queries) == [True] * len(numbers[::50]) + [False] * len(absent)
    assert s.names() == ["us_dnc"]


def test_second_full_load_replaces_and_counts_added_removed(redis_client: redis.Redis, tmp_path: Path) -> None:
    first = nanp_numbers(3000, seed=1)
    second = first[1000:] + nanp_numbers(500, seed=7)
    load_registry(redis_client, "us_dnc", write_lines(tmp_path / "a.txt", first), loaded_at=T0)
    report = load_registry(redis_client, "us_dnc", write_lines(tmp_path / "b.txt", second), loaded_at=T1,
                           force=True)  # drops a third of the numbers
    v = report.version
    expected = set(second)
    assert v is not None and v.version == 2 and v.rows == len(expected)
    assert v.added == len(expected - set(first)) and v.removed == len(set(first) - expected)
    s = store(redis_client)
    assert s.contains_many("us_dnc", [e164_nanp(n) for n in first[:1000]]) == [n in expected for n in first[:1000]]
    assert s.loaded_at("us_dnc") == T1
    # The replaced version is gone from Redis: only v2's keys remain.
    assert {k.split(b":")[2] for k in redis_client.scan_iter(match=b"reg:{us_dnc}:v*")} == {b"v2"}


def test_change_file_adds_and_deletes(redis_client: redis.Redis, tmp_path: Path) -> None:
    base = nanp_numbers(2000)
    load_registry(redis_client, "us_dnc", write_lines(tmp_path / "full.txt", base), loaded_at=T0)
    new = [n for n in nanp_numbers(300, seed=5) if n not in set(base)][:100]
    gone = base[:50]
    lines = [f"A,{n}" for n in new] + [f"{n[:3]},{n[3:]},2026-11-02,D" for n in gone]
    lines += [f"D,{new[0]}", f"A,{new[0]}"]  # last line wins
    lines += [f"D,{nanp_numbers(1, seed=1234)[0]}"]  # deleting a number that is not listed: no effect
    report = load_registry(redis_client, "us_dnc", write_lines(tmp_path / "chg.txt", lines), delta=True,
                           loaded_at=T1)
    v = report.version
    assert v is not None and v.kind == "delta" and v.base_version == 1 and v.version == 2
    assert v.added == 100 and v.removed == 50 and v.rows == 2000 + 100 - 50
    s = store(redis_client)
    assert all(s.contains_many("us_dnc", [e164_nanp(n) for n in new]))
    assert not any(s.contains_many("us_dnc", [e164_nanp(n) for n in gone]))
    assert all(s.contains_many("us_dnc", [e164_nanp(n) for n in base[50:]]))
    assert s.loaded_at("us_dnc") == T1


def test_change_file_without_live_version_is_refused(redis_client: redis.Redis, tmp_path: Path) -> None:
    with pytest.raises(LoadRefused, match="no live version"):
        load_registry(redis_client, "us_dnc", write_lines(tmp_path / "c.txt", ["A,2125551234"]), delta=True)
    assert registry_keys(redis_client, "us_dnc").keys() <= {b"reg:{us_dnc}:seq"}
    assert redis_client.get(key_lock("us_dnc")) is None


def test_malformed_lines_counted_with_line_numbers(redis_client: redis.Redis, tmp_path: Path) -> None:
    good = nanp_numbers(30_000)
    lines = list(good)
    bad_at = list(range(10, 30_000, 200))  # 150 bad lines = 0.5 %
    for i in bad_at:
        lines.insert(i, "212-55X-0000")
    report = load_registry(redis_client, "us_dnc", write_lines(tmp_path / "m.txt", lines))
    assert report.invalid == len(bad_at) and report.version is not None and report.version.invalid == len(bad_at)
    assert len(report.bad_lines) == MAX_REPORTED_ERRORS
    assert [b.line for b in report.bad_lines] == [i + 1 for i in bad_at[:MAX_REPORTED_ERRORS]]
    assert all("unexpected characters" in b.reason for b in report.bad_lines)
    assert report.version.rows == len(good)


def test_bad_share_above_threshold_refuses_and_changes_nothing(redis_client: redis.Redis, tmp_path: Path) -> None:
    load_registry(redis_client, "us_dnc", write_lines(tmp_path / "ok.txt", nanp_numbers(1000)), loaded_at=T0)
    before = registry_keys(redis_client, "us_dnc")
    lines = nanp_numbers(1000, seed=3) + ["not a number"] * 11  # 1.09 % bad
    with pytest.raises(LoadRefused, match="malformed") as info:
        load_registry(redis_client, "us_dnc", write_lines(tmp_path / "bad.txt", lines), loaded_at=T1)
    assert info.value.report.invalid == 11 and not info.value.report.committed
    assert [b.line for b in info.value.report.bad_lines] == list(range(1001, 1012))
    after = registry_keys(redis_client, "us_dnc")
    assert after == {**before, b"reg:{us_dnc}:seq": before[b"reg:{us_dnc}:seq"]}
    assert store(redis_client).loaded_at("us_dnc") == T0
    # A looser threshold accepts the same file.
    report = load_registry(redis_client, "us_dnc", tmp_path / "bad.txt", max_bad_share=0.02, loaded_at=T1,
                           force=True)
    assert report.version is not None and report.version.rows == 1000


def test_empty_full_file_is_refused(redis_client: redis.Redis, tmp_path: Path) -> None:
    load_registry(redis_client, "bloctel", write_lines(tmp_path / "f.txt", french_numbers(100)), loaded_at=T0)
    before = registry_keys(redis_client, "bloctel")
    for content in ("", "\n\n# nothing today\n"):
        (tmp_path / "empty.txt").write_text(content)
        with pytest.raises(LoadRefused, match="no numbers"):
            load_registry(redis_client, "bloctel", tmp_path / "empty.txt")
    write_lines(tmp_path / "junk.txt", ["junk"] * 5)  # even with every line allowed to be bad
    with pytest.raises(LoadRefused, match="no numbers"):
        load_registry(redis_client, "bloctel", tmp_path / "junk.txt", max_bad_share=1.0)
    assert registry_keys(redis_client, "bloctel") == before


def test_empty_change_file_records_a_refresh(redis_client: redis.Redis, tmp_path: Path) -> None:
    load_registry(redis_client, "bloctel", write_lines(tmp_path / "f.txt", french_numbers(100)), loaded_at=T0)
    (tmp_path / "none.txt").write_text("")
    report = load_registry(redis_client, "bloctel", tmp_path / "none.txt", delta=True, loaded_at=T1)
    assert report.version is not None and report.version.rows == 100
    assert report.version.added == report.version.removed == 0
    assert store(redis_client).loaded_at("bloctel") == T1


def test_duplicates_are_counted_once(redis_client: redis.Redis, tmp_path: Path) -> None:
    numbers = french_numbers(500)
    lines = numbers + numbers[:200] + [e164_fr(n) for n in numbers[:100]]
    report = load_registry(redis_client, "bloctel", write_lines(tmp_path / "d.txt", lines))
    assert report.version is not None and report.version.rows == 500
    assert report.duplicates == 300 and report.lines == 800


def test_mixed_forms_in_one_file_are_one_number(redis_client: redis.Redis, tmp_path: Path) -> None:
    lines = ["0145678901", "01 45 67 89 01", "01.45.67.89.01", "+33145678901", "+33 1 45 67 89 01", "0033145678901",
             "+33 (0)1 45 67 89 01", "0612345678", "06-12-34-56-78", "0262123456", "", "# comment"]
    report = load_registry(redis_client, "bloctel", write_lines(tmp_path / "mixed.txt", lines))
    assert report.version is not None and report.version.rows == 3 and report.invalid == 0
    s = store(redis_client)
    assert s.contains_many("bloctel", ["+33145678901", "+33612345678", "+262262123456", "+33145678902"]) == [
        True, True, True, False]
    # An overseas number is found under either spelling a contact list may have normalised it to.
    assert s.contains("bloctel", "+33262123456") and s.contains_many("bloctel", ["+33262123456"]) == [True]
    assert s.contains_many("bloctel", ["+33262123457", "+262262123457", "+590262123456"]) == [False, False, False]


def test_us_area_code_file_and_mixed_nanp_forms(redis_client: redis.Redis, tmp_path: Path) -> None:
    lines = ["212,5551234", "2125551235", "1-212-555-1236", "(212) 555-1237", "+12125551238"]
    report = load_registry(redis_client, "us_dnc", write_lines(tmp_path / "212.txt", lines))
    assert report.version is not None and report.version.rows == 5
    assert all(store(redis_client).contains_many("us_dnc", [f"+121255512{i}" for i in range(34, 39)]))


def test_generic_csv_registry(redis_client: redis.Redis, tmp_path: Path) -> None:
    lines = ["phone,country", "0145678901,FR", "2125551234,US", "+442079460018,", "0612345678,"]
    report = load_registry(redis_client, "acme_dnc", write_lines(tmp_path / "acme.csv", lines), country="FR")
    assert report.version is not None and report.version.rows == 4 and report.version.format == "csv"
    s = store(redis_client)
    assert s.contains_many("acme_dnc", ["+33145678901", "+12125551234", "+442079460018", "+33612345678",
                                        "+33612345679"]) == [True, True, True, True, False]


def test_csv_without_phone_column_is_refused(redis_client: redis.Redis, tmp_path: Path) -> None:
    with pytest.raises(LoadRefused, match="phone"):
        load_registry(redis_client, "acme_dnc", write_lines(tmp_path / "x.csv", ["number", "0145678901"]))
    assert redis_client.get(key_current("acme_dnc")) is None


def test_tps_and_ctps_are_separate_registries(redis_client: redis.Redis, tmp_path: Path) -> None:
    load_registry(redis_client, "tps", write_lines(tmp_path / "tps.txt", ["02079460018", "07700900123"]))
    load_registry(redis_client, "ctps", write_lines(tmp_path / "ctps.txt", ["01632960001"]))
    s = store(redis_client)
    assert s.contains_many("tps", ["+442079460018", "+447700900123", "+441632960001"]) == [True, True, False]
    assert s.contains("ctps", "+441632960001")
    assert s.names() == ["ctps", "tps"]


def test_a_second_import_while_one_runs_is_refused(redis_client: redis.Redis, tmp_path: Path) -> None:
    redis_client.set(key_lock("us_dnc"), "someone-else", px=60_000)
    with pytest.raises(LoadRefused, match="another import"):
        load_registry(redis_client, "us_dnc", write_lines(tmp_path / "a.txt", nanp_numbers(10)))
    assert redis_client.get(key_current("us_dnc")) is None


def test_unreadable_file_and_bad_name_are_refused(redis_client: redis.Redis, tmp_path: Path) -> None:
    with pytest.raises(LoadRefused, match="cannot read"):
        load_registry(redis_client, "us_dnc", tmp_path / "missing.txt")
    with pytest.raises(LoadRefused, match="registry name"):
        load_registry(redis_client, "US DNC!", write_lines(tmp_path / "a.txt", nanp_numbers(10)))


def test_orphan_staging_keys_are_cleaned_by_the_next_load(redis_client: redis.Redis, tmp_path: Path) -> None:
    load_registry(redis_client, "us_dnc", write_lines(tmp_path / "a.txt", nanp_numbers(10)))
    redis_client.set(key_chunk("us_dnc", 7, 0), b"half-written", ex=3600)  # as a killed import leaves them
    report = load_registry(redis_client, "us_dnc", write_lines(tmp_path / "b.txt", nanp_numbers(20)))
    assert report.version is not None
    versions = {k.split(b":")[2] for k in redis_client.scan_iter(match=b"reg:{us_dnc}:v*")}
    assert versions == {f"v{report.version.version}".encode()}
    assert drop_versions(redis_client, "us_dnc", keep={report.version.version}) == 0


def test_readers_fail_closed(redis_client: redis.Redis, tmp_path: Path) -> None:
    s = store(redis_client)
    assert s.status("us_dnc") is None and s.loaded_at("us_dnc") is None
    with pytest.raises(RegistryNotLoaded):
        s.contains("us_dnc", "+12125551234")
    with pytest.raises(ValueError):
        s.contains("us_dnc", "2125551234")
    load_registry(redis_client, "us_dnc", write_lines(tmp_path / "a.txt", nanp_numbers(10)))
    # A damaged chunk is detected by the checksum, never answered from.
    s.forget()
    redis_client.setrange(key_chunk("us_dnc", 1, 0), 0, b"\xff\xff")
    with pytest.raises(RegistryUnavailable, match="damaged"):
        s.contains("us_dnc", "+12125551234")


def test_large_bitmap_is_split_into_chunks(redis_client: redis.Redis, tmp_path: Path) -> None:
    numbers = nanp_numbers(20_000)
    report = load_registry(redis_client, "us_dnc", write_lines(tmp_path / "a.txt", numbers), chunk_bytes=1000)
    assert report.version is not None and report.version.chunks > 5
    s = store(redis_client)
    assert all(s.contains_many("us_dnc", [e164_nanp(n) for n in numbers]))


def test_commit_refused_when_the_lock_was_taken_over(redis_client: redis.Redis, tmp_path: Path) -> None:
    load_registry(redis_client, "us_dnc", write_lines(tmp_path / "a.txt", nanp_numbers(100)), loaded_at=T0)
    before = registry_keys(redis_client, "us_dnc")

    def take_over(stage: str, done: int, total: int) -> None:
        if stage == "commit":  # e.g. this importer stalled past its lock's expiry and another one started
            redis_client.set(key_lock("us_dnc"), "another-importer")

    with pytest.raises(LoadRefused, match="LOCKLOST"):
        load_registry(redis_client, "us_dnc", write_lines(tmp_path / "b.txt", nanp_numbers(200, seed=4)),
                      progress=take_over, force=True)
    after = registry_keys(redis_client, "us_dnc")
    assert after.pop(key_lock("us_dnc").encode()) == b"another-importer"  # not released: not ours
    assert after == {**before, b"reg:{us_dnc}:seq": b"2"}  # staged v2 deleted, v1 untouched


def test_full_load_repairs_a_damaged_live_version_but_a_change_file_is_refused(redis_client: redis.Redis,
                                                                               tmp_path: Path) -> None:
    load_registry(redis_client, "us_dnc", write_lines(tmp_path / "a.txt", nanp_numbers(100)))
    redis_client.setrange(key_chunk("us_dnc", 1, 0), 0, b"\xff\xff")
    with pytest.raises(LoadRefused, match="damaged"):
        load_registry(redis_client, "us_dnc", write_lines(tmp_path / "c.txt", ["A,2125551234"]), delta=True)
    report = load_registry(redis_client, "us_dnc", write_lines(tmp_path / "b.txt", nanp_numbers(50, seed=8)))
    assert report.version is not None and report.version.version == 2 and report.version.added == 50
    s = store(redis_client)
    assert all(s.contains_many("us_dnc", [e164_nanp(n) for n in nanp_numbers(50, seed=8)]))


def test_overlong_lines_are_malformed_and_not_buffered(redis_client: redis.Redis, tmp_path: Path) -> None:
    numbers = nanp_numbers(300)
    path = tmp_path / "long.txt"
    with open(path, "w") as fh:
        fh.write("\n".join(numbers[:100]) + "\n")
        fh.write("9" * 3_000_000 + "\n")  # one 3 MB line, across several read blocks
        fh.write("\n".join(numbers[100:]) + "\n")
        fh.write("7" * 5000)  # and a long last line without a newline
    report = load_registry(redis_client, "us_dnc", path, max_bad_share=0.01)
    assert report.invalid == 2 and [b.line for b in report.bad_lines] == [101, 302]
    assert all("longer than" in b.reason for b in report.bad_lines)
    assert report.version is not None and report.version.rows == 300


UNIVERSE = nanp_numbers(60, seed=42)
_full = st.tuples(st.just("full"), st.sets(st.sampled_from(UNIVERSE), min_size=1))
_delta = st.tuples(st.just("delta"), st.lists(st.tuples(st.booleans(), st.sampled_from(UNIVERSE)), max_size=30))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_full, _delta), min_size=1, max_size=6))
def test_any_sequence_of_loads_matches_a_set_model(redis_client: redis.Redis, tmp_path: Path, ops) -> None:
    redis_client.flushdb()
    RegistryStore.forget_all()
    model: set[str] | None = None
    for i, (kind, payload) in enumerate(ops):
        path = tmp_path / f"op{i}.txt"
        if kind == "full":
            write_lines(path, sorted(payload))
            report = load_registry(redis_client, "us_dnc", path, force=True)
            new = set(payload)
        else:
            write_lines(path, [f"{'A' if add else 'D'},{n}" for add, n in payload])
            if model is None:
                with pytest.raises(LoadRefused):
                    load_registry(redis_client, "us_dnc", path, delta=True)
                continue
            report = load_registry(redis_client, "us_dnc", path, delta=True)
            new = set(model)
            for add, n in payload:  # the last line of a number wins
                (new.add if add else new.discard)(n)
        v = report.version
        assert v is not None and v.rows == len(new)
        assert v.added == len(new - (model or set())) and v.removed == len((model or set()) - new)
        model = new
        answers = store(redis_client).contains_many("us_dnc", [e164_nanp(n) for n in UNIVERSE])
        assert answers == [n in model for n in UNIVERSE]


def test_gzip_and_zip_files(redis_client: redis.Redis, tmp_path: Path) -> None:
    import gzip
    import zipfile

    numbers = nanp_numbers(20_000)
    text = "".join(n + "\n" for n in numbers).encode()
    (tmp_path / "dnc.txt.gz").write_bytes(gzip.compress(text))
    seen: list[tuple[str, int, int]] = []
    report = load_registry(redis_client, "us_dnc", tmp_path / "dnc.txt.gz", progress=lambda *a: seen.append(a))
    assert report.version is not None and report.version.rows == 20_000
    assert report.source_hash == hashlib.sha256((tmp_path / "dnc.txt.gz").read_bytes()).hexdigest()
    reads = [s for s in seen if s[0] == "read"]
    assert reads[-1][1] == reads[-1][2] == (tmp_path / "dnc.txt.gz").stat().st_size

    with zipfile.ZipFile(tmp_path / "dnc.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("212.txt", text[: len(text) // 2 // 11 * 11])  # whole lines only
    report = load_registry(redis_client, "us_dnc", tmp_path / "dnc.zip", force=True)  # half the numbers
    assert report.version is not None and report.version.rows == len(text) // 2 // 11
    assert all(store(redis_client).contains_many("us_dnc", [e164_nanp(n) for n in numbers[:100]]))

    before = registry_keys(redis_client, "us_dnc")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("212/", "")  # a folder, no file
    with pytest.raises(LoadRefused, match="holds no file"):
        load_registry(redis_client, "us_dnc", tmp_path / "empty.zip")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(text)[:-5000])  # a truncated download
    with pytest.raises(LoadRefused, match="decompress"):
        load_registry(redis_client, "us_dnc", tmp_path / "cut.gz")
    assert registry_keys(redis_client, "us_dnc") == before


def test_full_load_that_shrinks_the_registry_drastically_is_refused(redis_client: redis.Redis,
                                                                      tmp_path: Path) -> None:
    numbers = nanp_numbers(10_000)
    load_registry(redis_client, "us_dnc", write_lines(tmp_path / "full.txt", numbers), loaded_at=T0)
    before = registry_keys(redis_client, "us_dnc")
    # A download cut off after 3,000 lines: every line is valid, so only the shrink reveals it.
    truncated = write_lines(tmp_path / "cut.txt", numbers[:3000])
    with pytest.raises(LoadRefused, match=r"would remove 7000 of the 10000 numbers .*70\.00%.*--force") as info:
        load_registry(redis_client, "us_dnc", truncated, loaded_at=T1)
    assert not info.value.report.committed and info.value.report.invalid == 0
    assert registry_keys(redis_client, "us_dnc") == {**before, b"reg:{us_dnc}:seq": before[b"reg:{us_dnc}:seq"]}
    assert store(redis_client).loaded_at("us_dnc") == T0
    # Within the allowed share (a normal month: some numbers leave), or with a looser threshold: loaded.
    report = load_registry(redis_client, "us_dnc", write_lines(tmp_path / "m.txt", numbers[1000:]), loaded_at=T1)
    assert report.version is not None and report.version.removed == 1000
    report = load_registry(redis_client, "us_dnc", truncated, max_shrink_share=0.8, loaded_at=T1)
    assert report.version is not None and report.version.rows == 3000
    # Forced: a registry that really shrank.
    report = load_registry(redis_client, "us_dnc", write_lines(tmp_path / "s.txt", numbers[:10]), force=True)
    assert report.version is not None and report.version.rows == 10 and report.version.removed == 2990
    # Change files are not limited: their deletions are explicit.
    deletes = write_lines(tmp_path / "d.txt", [f"D,{n}" for n in numbers[:9]])
    report = load_registry(redis_client, "us_dnc", deletes, delta=True)
    assert report.version is not None and report.version.rows == 1


def test_zip_of_area_code_files_is_one_version(redis_client: redis.Redis, tmp_path: Path) -> None:
    """The DNCL (and a bundle of FTC area-code files) comes as one zip holding one file per area code."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "dncl.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("416.txt", "416,2345678\n416,2345679")  # no newline at the end: not glued to the next file
        zf.writestr("905.txt", "905,2345678\n905,0345678\n905,2345670\n")
    report = load_registry(redis_client, "dncl", tmp_path / "dncl.zip", max_bad_share=0.5)
    assert report.version is not None and report.version.rows == 4 and report.lines == 5
    assert report.source_hash == hashlib.sha256((tmp_path / "dncl.zip").read_bytes()).hexdigest()
    assert [(b.file, b.line) for b in report.bad_lines] == [("905.txt", 2)]  # numbered within its file
    assert report.as_dict()["bad_lines"] == [{"line": 2, "reason": report.bad_lines[0].reason, "file": "905.txt"}]
    assert store(redis_client).contains_many("dncl", ["+14162345678", "+14162345679", "+19052345670",
                                                      "+19052345678", "+14162345670"]) == [True] * 4 + [False]

    # CSV files: each file's header is its own.
    with zipfile.ZipFile(tmp_path / "lists.zip", "w") as zf:
        zf.writestr("a.csv", "phone,country\n0145678901,FR\n")
        zf.writestr("b.csv", "name,phone\nx,+442079460018\n")
    report = load_registry(redis_client, "acme", tmp_path / "lists.zip")
    assert report.version is not None and report.version.rows == 2 and report.invalid == 0

    # A damaged second file refuses the whole archive: nothing changes.
    good = zipfile.ZipFile(tmp_path / "dncl.zip").read("416.txt")
    with zipfile.ZipFile(tmp_path / "bad.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("416.txt", good)
        zf.writestr("905.txt", "905,2345678\n" * 5000)
    raw = bytearray((tmp_path / "bad.zip").read_bytes())
    second = raw.index(b"905.txt") + 7 + 40  # inside the second file's compressed data
    raw[second:second + 40] = b"\xff" * 40
    (tmp_path / "bad.zip").write_bytes(bytes(raw))
    before = registry_keys(redis_client, "dncl")
    with pytest.raises(LoadRefused, match=r"905\.txt"):
        load_registry(redis_client, "dncl", tmp_path / "bad.zip", force=True)
    assert registry_keys(redis_client, "dncl") == before
