"""`dialer gate check` as a user runs it: a subprocess, JSON lines in, JSON lines out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EXAMPLE = {
    "id": "example-1", "at": "2026-01-12T08:30:00Z",
    "contact": {"phone": "+33145678901", "country": "FR", "postal_code": "75011", "state": None},
    "campaign": {"id": "c1", "tenant": "t1", "purpose": "telemarketing", "audience": "consumer", "voice": "human",
                 "recording": False, "caller_id": "+33162000000"},
    "consent": [],
    "relationships": [{"kind": "purchase", "at": "2025-06-01T00:00:00Z"}],
    "lists": {"national": False, "company": False, "campaign": False},
    "registry_copies": {"national": "2026-01-02T00:00:00Z"},
    "history": [{"at": "2026-01-05T10:00:00Z", "campaign": "c1", "outcome": "no_answer"}],
}


def run(args: list[str], stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "dialer", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=full_env, timeout=60)


def test_gate_check_stdin_in_order_with_a_malformed_line():
    allowed = dict(EXAMPLE, id="ok", at="2026-01-12T09:00:00Z")
    lines = [json.dumps(EXAMPLE), '{"id": "broken", "at": ', "", json.dumps(allowed),
             json.dumps(dict(EXAMPLE, id="bad-outcome", history=[{"at": "2026-01-05T10:00:00Z", "outcome": "x"}])),
             json.dumps(dict(EXAMPLE, id="bad-phone", contact={"phone": "12"}))]
    result = run(["gate", "check"], "\n".join(lines) + "\n")
    assert result.returncode == 1, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 5  # the blank line yields nothing
    first = out[0]
    assert first["id"] == "example-1" and first["allowed"] is False
    assert first["reasons"][0]["code"] == "OUTSIDE_CALLING_HOURS"
    assert first["reasons"][0]["rule"] == "fr/hours" and "D.223-9" in first["reasons"][0]["source"]
    assert first["next_allowed_at"] == "2026-01-12T09:00:00Z"
    assert first["packs"] == [{"id": "fr", "version": "2026.3"}]
    assert out[1] == {"line": 2, "id": None, "error": {"code": "BAD_SCENARIO", "message": out[1]["error"]["message"]}}
    assert "invalid JSON" in out[1]["error"]["message"]
    assert out[2]["id"] == "ok" and out[2]["allowed"] is True and out[2]["reasons"] == []
    assert out[3]["line"] == 5 and out[3]["id"] == "bad-outcome"
    assert out[3]["error"]["message"].startswith("history[0].outcome: expected one of")
    assert out[4]["id"] == "bad-phone" and out[4]["allowed"] is False  # a bad number is a decision, not an error
    assert out[4]["reasons"][0]["code"] == "INVALID_NUMBER"


def test_gate_check_file_and_errors(tmp_path: Path):
    scenarios = tmp_path / "s.jsonl"
    scenarios.write_text(json.dumps(dict(EXAMPLE, at="2026-01-12T09:00:00Z")) + "\n")
    result = run(["gate", "check", str(scenarios)])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["allowed"] is True
    missing = run(["gate", "check", str(tmp_path / "nope.jsonl")])
    assert missing.returncode == 1 and "nope.jsonl" in missing.stderr and "Traceback" not in missing.stderr
    # a broken pack in rules.packs_dir is a one-line start-up error naming file and field
    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "zz.toml").write_text('id = "zz"\nversion = "1"\njurisdiction = "ZZ"\ntimezone = "UTC"\n'
                                   '[[rules]]\nid = "zz/h"\nkind = "calling_hours"\nsource = "t"\n'
                                   'windows = { mon = ["9-5"] }\n')
    broken = run(["gate", "check", str(scenarios)], env={"DIALER_RULES_PACKS_DIR": str(packs)})
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert 'zz.toml: rules[0].windows.mon[0]: expected "HH:MM-HH:MM"' in broken.stderr


def test_docs_examples_are_what_the_command_prints():
    doc = (ROOT / "docs" / "gate.md").read_text()
    inputs = [line for line in doc.splitlines() if line.startswith('{"id": "example-2"')]
    outputs = [line for line in doc.splitlines() if line.startswith('{"id":"example-')]
    assert len(inputs) == 1 and len(outputs) == 2
    result = run(["gate", "check"], inputs[0] + "\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(outputs[1])
    # example-1 is the scenario, shown on several lines in the doc
    result = run(["gate", "check"], json.dumps(dict(EXAMPLE, lists={"national": True, "company": False,
                                                                    "campaign": False},
                                                    consent=[{"given_at": "2025-12-01T10:00:00Z",
                                                              "purpose": "telemarketing", "written": True,
                                                              "expires_at": None, "withdrawn_at": None,
                                                              "source": "web form", "evidence": "ref-123"}])) + "\n")
    assert json.loads(result.stdout) == json.loads(outputs[0])


def test_gate_packs_lists_rules_and_flags_unconfirmed():
    result = run(["gate", "packs"])
    assert result.returncode == 0, result.stderr
    assert "fr/opt-in" in result.stdout and "[2026-08-11 00:00+02:00 .. ...)" in result.stdout
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("us-ok/hours"))
    assert "UNCONFIRMED" in line
