"""The console shows the API's errors in the user's language: every error answers a stable `code`, field errors
also the `rule` they broke and its `params`, and the console words them from its catalogues (api.js
errorMessage: error.rule.RULE, else error.CODE, else the server's own English message for a code it does not know).
These tests hold the catalogues to the gateway: every code the gateway can answer (found by reading its source,
tests/error_codes.py), every rule, every pattern's name and every import reason code has its English and French
text. A real gateway answers rules and figures; the browser side is in tests/test_console_campaigns_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.validation import PATTERNS
from tests.error_codes import rules, scan
from tests.gateway_support import start_gateway, stop_gateway

ROOT = Path(__file__).resolve().parent.parent
EN = json.loads((ROOT / "gateway" / "static" / "i18n" / "en.json").read_text())
FR = json.loads((ROOT / "gateway" / "static" / "i18n" / "fr.json").read_text())


def _worded(key: str) -> bool:
    return bool(EN.get(key)) and bool(FR.get(key))


def test_every_error_code_the_gateway_can_answer_has_words_in_english_and_french():
    codes, unreadable = scan()
    assert unreadable == [], "codes this scan cannot read: list them in tests/error_codes.py"
    assert {"unknown_list", "unknown_queue", "campaign_incomplete", "bad_credentials", "not_found",
            "too_many_attempts", "no_phone_column", "bad_state"} <= codes  # the scan reads every kind of source
    assert sorted(c for c in codes if not _worded(f"error.{c}")) == []
    untranslated = sorted(c for c in codes if EN[f"error.{c}"] == FR[f"error.{c}"])
    assert untranslated == []


def test_every_rule_and_pattern_has_words_in_english_and_french():
    found = rules()
    assert {"maximum", "pattern", "needs_caller_id", "window_order", "password"} <= found
    assert sorted(r for r in found if not _worded(f"error.rule.{r}")) == []
    for name, words in PATTERNS.values():
        assert EN[f"error.form.{name}"] == words  # the gateway's English, word for word
        assert FR[f"error.form.{name}"] and FR[f"error.form.{name}"] != words, name
    for kind in ("array", "boolean", "integer", "number", "object", "string"):
        assert _worded(f"error.type.{kind}")


def test_every_import_reason_code_has_words_in_english_and_french():
    table = (ROOT / "docs" / "contacts.md").read_text().split("### Error codes", 1)[1].split("\n## ", 1)[0]
    codes = {c for line in table.splitlines() if line.startswith("| ") and not line.startswith("| code")
             for c in re.findall(r"[a-z_]+", line.split("|")[1])}
    assert len(codes) > 25
    assert sorted(c for c in codes if not (_worded(f"import.{c}") or _worded(f"error.{c}"))) == []


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


async def test_field_errors_carry_their_rule_and_figures(gw):
    async def refused(body: dict, path: str = "/v1/campaigns", method: str = "post") -> dict:
        resp = await getattr(gw.client, method)(path, json=body, headers=gw.auth("acme", "supervisor"))
        assert resp.status == 422, await resp.text()
        return (await resp.json())["error"]

    error = await refused({"name": "x", "pacing_ratio": 50})
    assert (error["code"], error["field"], error["rule"], error["params"]) == (
        "invalid_field", "pacing_ratio", "maximum", {"limit": 20})
    error = await refused({"name": "x", "caller_id": "0162000000"})
    assert (error["rule"], error["params"]) == ("pattern", {"form": "e164"})
    error = await refused({"name": "x", "schedule_windows": [{"days": ["mon"], "start": "18:00", "end": "09:00"}]})
    assert (error["field"], error["rule"]) == ("schedule_windows[0].end", "window_order")
    error = await refused({"name": "x", "schedule_windows": [{"days": ["mon"], "start": "9h", "end": "12:00"}]})
    assert (error["field"], error["rule"], error["params"]) == ("schedule_windows[0].start", "pattern",
                                                                {"form": "hhmm"})
    error = await refused({"name": "x", "lists": ["l404"]})
    assert (error["code"], error["params"]) == ("unknown_list", {"list": "l404"})
    # A campaign that lacks what it needs to start says which rule, not only which field.
    made = await (await gw.client.post("/v1/campaigns", json={"name": "x"}, headers=gw.auth("acme", "supervisor")
                                       )).json()
    resp = await gw.client.post(f"/v1/campaigns/{made['id']}/start", headers=gw.auth("acme", "supervisor"))
    error = (await resp.json())["error"]
    assert (resp.status, error["code"], error["rule"]) == (409, "campaign_incomplete", f"needs_{error['field']}")
    # An error without a rule has none: clients fall back to the code's words.
    resp = await gw.client.get("/v1/campaigns/c404", headers=gw.auth("acme", "supervisor"))
    assert (await resp.json())["error"].keys() == {"code", "message"}
