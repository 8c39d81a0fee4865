"""`dialer gate check` streamed and batched (dialer/commands/gate_stream.py) answers exactly as the line-by-line
reference (dialer/commands/gate.check_lines): byte for byte, on a mixed file with the awkward cases."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dialer.commands import gate_stream
from dialer.commands.gate import check_lines
from dialer.commands.gate_stream import check_stream
from rules import load_packs

ROOT = Path(__file__).resolve().parents[1]
PACKS = load_packs()
NUMBERS = [
    {"phone": "+33145678901", "country": "FR", "postal_code": "75011"}, {"phone": "+33612345678"},
    {"phone": "+33388123456", "country": "FR", "postal_code": "67000"}, {"phone": "01 45 67 89 02", "country": "FR"},
    {"phone": "+12125551234", "country": "US", "postal_code": "10001"}, {"phone": "+13055550123", "state": "FL"},
    {"phone": "+12055550123"}, {"phone": "+18005550123"}, {"phone": "+14165550123", "country": "CA"},
    {"phone": "+442079460000"}, {"phone": "+493012345678", "country": "DE"}, {"phone": "+262262123456"},
    {"phone": "+33 12"}, {"phone": "+12125551234", "country": "US", "postal_code": "1000"},
]
CAMPAIGNS = [
    {"id": "c1", "tenant": "t1", "caller_id": "+33162000000"}, {"id": "c1"},
    {"id": "c2", "purpose": "informational", "caller_id": "+12025550123"},
    {"id": "c3", "audience": "business", "caller_id": "+33612345678", "recording": True},
    {"id": "c4", "voice": "artificial", "caller_id": ""},
]


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def random_lines(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    moments = [start + timedelta(minutes=97 * k) for k in range(60)]
    out = []
    for i in range(n):
        at = rng.choice(moments)
        s = {"id": i, "at": iso(at), "contact": rng.choice(NUMBERS), "campaign": rng.choice(CAMPAIGNS)}
        if rng.random() < 0.6:
            s["history"] = [{"at": iso(at - timedelta(hours=rng.randrange(1, 100))),
                             "outcome": rng.choice(["no_answer", "refused", "abandoned", "opted_out", "answered"]),
                             **({"campaign": "c2"} if rng.random() < 0.3 else {})} for _ in range(rng.randrange(4))]
        if rng.random() < 0.4:
            s["consent"] = [{"given_at": iso(at - timedelta(days=rng.randrange(1, 50))), "written": rng.random() < .5,
                             "source": "form", "evidence": "e1"}]
        if rng.random() < 0.2:
            s["relationships"] = [{"kind": rng.choice(["purchase", "contract", "inquiry"]),
                                   "at": iso(at - timedelta(days=rng.randrange(1, 600)))}]
        roll = rng.random()
        s["lists"] = ({"national": {"us_dnc": rng.random() < .3, "bloctel": False}} if roll < 0.2 else
                      {"national": rng.random() < .3, "company": rng.random() < .05} if roll < 0.9 else {})
        if rng.random() < 0.9:
            s["registry_copies"] = {"national": iso(at - timedelta(days=rng.randrange(0, 40)))}
        out.append(json.dumps(s, ensure_ascii=rng.random() < 0.5))
    return out


AWKWARD = [
    "", "   ", '{"id": "broken", "at": ', "[1, 2]", "null", '"text"', "NaN",
    '{"id": NaN, "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}}',
    '{"id": 123456789012345678901234567890, "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, '
    '"campaign": {"id": "c1"}}',
    '{"id": [123456789012345678901234567890, 1e400], "at": "2026-01-05T10:00:00Z", '
    '"contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}}',
    '{"id": 1e100, "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}}',
    '{"id": 2.5, "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901", "postal_code": '
    '123456789012345678901234}, "campaign": {"id": "c1"}}',
    '{"id": "p", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901", "postal_code": 75011}, '
    '"campaign": {"id": "c1"}}',
    '{"id": "q\\"uote\\\\ \\u0001 \\u2028 é", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, '
    '"campaign": {"id": "c1"}}',
    '{"id": {"nested": [1, true, null]}, "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, '
    '"campaign": {"id": "c1"}}',
    '{"id": "dup", "id": "dup2", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, '
    '"campaign": {"id": "c1", "caller_id": "+33162000000"}}',
    # the same consent once with true, then with 1: the second must be refused (caches keyed by type)
    '{"id": "t", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"consent": [{"given_at": "2025-12-01T00:00:00Z", "written": true}]}',
    '{"id": "one", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"consent": [{"given_at": "2025-12-01T00:00:00Z", "written": 1}]}',
    '{"id": "r", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, '
    '"campaign": {"id": "c1", "recording": true}}',
    '{"id": "r1", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, '
    '"campaign": {"id": "c1", "recording": 1}}',
    '{"id": "h", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"history": [{"at": "2026-01-04T10:00:00Z", "outcome": "x"}]}',
    '{"id": "h4", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"history": [{"at": "2026-01-05T08:00:00Z", "outcome": ""}]}',
    '{"id": "h5", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"history": [{"at": "2026-01-05T08:00:00Z", "call_id": " x1 "}, {"at": "2026-01-05T08:00:00Z", "campaign": 5}]}',
    '{"id": "h6", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"history": [{"at": "2026-01-05T08:00:00Z"}, {"outcome": "busy"}, {"at": "2026-01-05T08:00:00Z", "x": 1}]}',
    '{"id": "h7", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"history": [{"at": "2026-01-05T08:00:00Z", "outcome": "refused", "campaign": "c9"}, 3]}',
    '{"id": "h2", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"history": {"at": "2026-01-04T10:00:00Z"}}',
    '{"id": "h3", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"history": 0}',
    '{"id": "u", "histroy": [], "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+3314"}, "campaign": {"id": "c"}}',
    '{"id": "z", "at": "2026-01-05T10:00:00", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}}',
    '{"id": "z2", "at": 5, "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}}',
    '{"id": "cid", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, '
    '"campaign": {"id": "c1", "caller_id": "0162000000"}}',
    '{"id": "l", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"lists": {"national": {"bloctel": 1}}}',
    '{"id": "c", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}, '
    '"registry_copies": {"national": null, "bloctel": "2026-01-01T00:00:00+01:00"}}',
    '{"id": "nested", "at": "2026-01-05T10:00:00Z", "contact": {"phone": ["+33145678901"]}, "campaign": {"id": "c1"}}',
    '{"id": "deep", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901", "state": {"a": 1}}, '
    '"campaign": {"id": "c1"}}',
    '\t{"id": "ws", "at": "2026-01-05T10:00:00Z", "contact": {"phone": "+33145678901"}, "campaign": {"id": "c1"}}  ',
]


def reference(lines: list[str]) -> tuple[str, bool]:
    out, ok = [], True
    for obj, good in check_lines(lines, PACKS):
        ok = ok and good
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    return "".join(out), ok


def streamed(lines: list[str]) -> tuple[str, bool]:
    sink = io.StringIO()
    ok = check_stream(lines, sink, PACKS)
    return sink.getvalue(), ok


def test_mixed_file_answers_are_identical_to_the_line_by_line_path(monkeypatch):
    monkeypatch.setattr(gate_stream, "BATCH", 7)  # several batches, and a partial last one
    rng = random.Random(11)
    lines = random_lines(4000)
    for extra in AWKWARD * 3:  # awkward lines scattered, each several times (cache hits and misses)
        lines.insert(rng.randrange(len(lines)), extra)
    lines = [line + "\n" for line in lines]
    expected, expected_ok = reference(lines)
    got, ok = streamed(lines)
    assert ok is expected_ok is False
    assert got.split("\n") == expected.split("\n")  # (not splitlines: an id may hold U+2028)
    assert got == expected
    answers = [json.loads(x) for x in got.split("\n") if x]
    assert any(a.get("allowed") for a in answers) and any(a.get("allowed") is False for a in answers)
    assert {a["error"]["code"] for a in answers if "error" in a} == {"BAD_SCENARIO"}
    one = next(a for a in answers if a.get("id") == "one")
    assert one["error"]["message"] == "consent[0].written: expected true or false"  # not a cached `true`
    big = next(a for a in answers if a.get("id") == 123456789012345678901234567890)  # not a float
    assert "allowed" in big


def test_small_caches_give_the_same_answers(monkeypatch):
    monkeypatch.setattr(gate_stream, "CACHE_MAX", 3)  # caches cleared all the time: memory stays bounded
    monkeypatch.setattr(gate_stream, "PREPARED_MAX", 3)
    lines = [line + "\n" for line in random_lines(600, seed=9)]
    assert streamed(lines) == reference(lines)


def test_a_file_that_is_not_utf8_stops_as_the_reference_does(tmp_path: Path):
    good = random_lines(60)  # more than the text reader's first chunk: some answers come before the error
    path = tmp_path / "bad.jsonl"
    path.write_bytes(("\n".join(good) + "\n").encode() + b'{"id": "\xff"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    result = subprocess.run([sys.executable, "-m", "dialer", "gate", "check", str(path)], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 1 and "not UTF-8 text" in result.stderr and "Traceback" not in result.stderr
    printed = []
    with path.open(encoding="utf-8") as fh, pytest.raises(UnicodeDecodeError):  # the reference, on the same file
        for obj, _ok in check_lines(fh, PACKS):
            printed.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    assert printed and result.stdout == "".join(printed)


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_the_command_prints_what_the_reference_prints(tmp_path: Path, ending: str):
    lines = random_lines(300, seed=3) + AWKWARD
    path = tmp_path / "s.jsonl"
    path.write_text(ending.join(lines) + ending, encoding="utf-8", newline="")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    result = subprocess.run([sys.executable, "-m", "dialer", "gate", "check", str(path)], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    with path.open(encoding="utf-8") as fh:
        assert result.stdout == reference(list(fh))[0]


def test_a_generated_list_is_answered_as_the_line_by_line_path(tmp_path: Path, monkeypatch):
    """The benchmark's own file (bench/gate_check_bench.py: places, campaigns, histories, consents, registry flags,
    malformed lines and invalid numbers), with numbers repeated as in a list checked at several instants: every
    cache of the streamed path (scenario parts, prepared contacts, answer fragments) is hit and missed."""
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.gate_check_bench import generate

    path = tmp_path / "generated.jsonl"
    generate(path, 6000, 400, 12, seed=21)
    with path.open(encoding="utf-8") as fh:
        lines = list(fh)
    expected = reference(lines)
    assert streamed(lines) == expected
    answers = [json.loads(x) for x in expected[0].splitlines()]
    assert sum(1 for a in answers if a.get("allowed")) > 100 and sum(1 for a in answers if "error" in a) > 5
