"""Issue 16 point 6: one import cannot fill the shared Redis. Against a real redis-server: the error report
keeps the first 10,000 entries and counts the rest by reason, a hopeless file stops early with nothing
imported, and the import's Redis footprint stays a small multiple of what it accepted."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import redis

from dialer.contacts.jobs import create_import, run_import_inline
from dialer.contacts.limits import ERRORS_KEPT
from dialer.contacts.report import write_error_report
from dialer.contacts.store import Keys, list_count

T = "acme"


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _report(client: redis.Redis, import_id: str) -> list[dict[str, str]]:
    out = io.StringIO()
    write_error_report(client, T, import_id, out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def test_error_report_is_capped_and_the_rest_counted_by_reason(redis_client: redis.Redis, tmp_path: Path) -> None:
    # 16,000 good rows and 14,000 bad ones (47%: below the hopeless share), plus 2,000 duplicates.
    lines = ["phone,name"]
    for i in range(16_000):
        lines.append(f"+3361{i:07d},ok")
        if i % 8 == 0:
            lines.append(f"+3361{i:07d},dup")
        if i % 8 < 7:
            lines.append(f"06 AB {i},bad")
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(lines) + "\n")
    before = _used(redis_client)
    ticket = create_import(redis_client, T, path, "leads")
    status = run_import_inline(redis_client, T, ticket.import_id)
    assert status["status"] == "committed", status
    summary = status["summary"]
    assert summary["invalid"] == 14_000 and summary["contacts_added"] == 16_000 and summary["duplicates"] == 2_000
    keys = Keys(T, ticket.import_id)
    assert redis_client.llen(keys.errors) == ERRORS_KEPT
    not_listed = summary["errors_not_listed"]
    assert sum(not_listed.values()) == 14_000 + 2_000 - ERRORS_KEPT
    assert set(not_listed) <= {"phone_has_letters", "duplicate_in_file"}
    rows = _report(redis_client, ticket.import_id)
    assert len(rows) == ERRORS_KEPT + len(not_listed)
    tail = [r for r in rows if r["severity"] == "not_listed"]
    assert {r["reason"] for r in tail} == set(not_listed)
    assert all("not listed" in r["message"] for r in tail)
    # Footprint: the contacts are in the record (docs/record.md); what Redis keeps of the whole import is its
    # status and its report (10,000 entries, about 170 B each), nothing per contact.
    assert list_count(T, "leads") == 16_000
    assert not list(redis_client.scan_iter(match=f"t:{{{T}}}:contact:*"))
    assert _used(redis_client) - before < 250 * ERRORS_KEPT
    assert not list(redis_client.scan_iter(match=keys.stg + "*"))


def test_a_hopeless_file_stops_early_and_leaves_nothing(redis_client: redis.Redis, tmp_path: Path) -> None:
    # 200,000 rows, every one bad: the import is judged after 10,000 rows, not read to its end.
    path = tmp_path / "bad.csv"
    path.write_text("phone,name\n" + "not a number,x\n" * 200_000)
    before = _used(redis_client)
    ticket = create_import(redis_client, T, path, "leads")
    status = run_import_inline(redis_client, T, ticket.import_id)
    assert status["status"] == "failed" and status["error_code"] == "too_many_bad_rows", status
    assert "nothing was imported" in status["error"] and "phone" in status["error"]
    assert status["rows_done"] < 50_000  # stopped early
    keys = Keys(T, ticket.import_id)
    assert not list(redis_client.scan_iter(match=keys.stg + "*"))
    assert redis_client.llen(keys.errors) == 0
    assert not redis_client.exists(keys.list_members("leads"))
    assert _used(redis_client) - before < 2 * 1024 * 1024  # a status hash, not 200,000 entries


def test_the_bad_share_limit_is_a_setting(redis_client: redis.Redis, tmp_path: Path) -> None:
    lines = ["phone"] + [f"+3361{i:07d}" if i % 3 == 0 else "nope" for i in range(12_000)]
    path = tmp_path / "twothirds.csv"
    path.write_text("\n".join(lines) + "\n")
    strict = run_import_inline(redis_client, T, create_import(redis_client, T, path, "a").import_id)
    assert strict["status"] == "failed" and strict["error_code"] == "too_many_bad_rows"
    lenient = run_import_inline(redis_client, T, create_import(redis_client, T, path, "b",
                                                               max_bad_share=0.9).import_id)
    assert lenient["status"] == "committed" and lenient["summary"]["contacts_added"] == 4_000


def _gzip_bomb(path: Path, out_bytes: int) -> Path:
    """A gzip file of `out_bytes` of one repeated line: about 1,000 times smaller than what it expands to."""
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"0145678901\n" * (1 << 16)
    with path.open("wb") as fh:
        for _ in range(out_bytes // len(block)):
            fh.write(comp.compress(block))
        fh.write(comp.flush())
    return path


def test_a_registry_archive_that_expands_too_far_is_refused_quickly(redis_client: redis.Redis,
                                                                    tmp_path: Path) -> None:
    import time
    import zipfile

    import pytest

    from dialer.registry.loader import LoadRefused, load_registry

    bomb = _gzip_bomb(tmp_path / "bomb.txt.gz", 256 << 20)
    assert bomb.stat().st_size < 1 << 20
    started = time.process_time()
    with pytest.raises(LoadRefused, match="expands more than 100 times"):
        load_registry(redis_client, "bloctel", bomb)
    assert time.process_time() - started < 10  # stopped near 16 MiB out, not after 256 MiB
    assert not list(redis_client.scan_iter(match="reg:{bloctel}:*"))

    # A zip declaring a member larger than the limit is refused before any byte is decompressed.
    from dialer.registry import sources

    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.txt", b"0145678901\n" * 2000)
    with pytest.raises(sources.SourceError, match="above the limit of 1000 bytes"):
        sources.Source(archive, max_bytes=1000)
