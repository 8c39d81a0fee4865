"""The recording notice: played when the campaign records AND the contact's jurisdiction requires it (data table
rules/data/recording_notice.toml), fail closed when the jurisdiction is unknown; end to end through the runtime's
Originate to the sandbox PBX."""

from __future__ import annotations

import asyncio

import pytest

from dialer.runtime.engine import offset_clock
from rules import recording
from rules.engine import situate
from rules.geo import normalize
from rules.recording import RecordingTableError, load_table, notice_required, recording_notice
from tests.runtime_support import AT, numbers, setup_campaign
from tests.test_runtime_engine import run_until_completed, start_pbx


def codes(phone: str, country: str | None = None, state: str | None = None, postal: str | None = None):
    return situate(normalize(phone), country, state, postal).codes


@pytest.mark.parametrize("phone", ["+14155550123", "+13055550123", "+13125550123", "+14105550123",
                                   "+16175550123", "+14065550123", "+16035550123", "+12155550123",
                                   "+12065550123"])  # CA FL IL MD MA MT NH PA WA
def test_two_party_consent_states_require_the_notice(phone):
    assert notice_required(codes(phone))
    assert recording_notice(True, codes(phone))
    assert not recording_notice(False, codes(phone))  # a campaign that does not record never announces


def test_a_one_party_state_does_not_unless_the_address_is_in_a_two_party_state():
    new_york = codes("+12125550123")
    assert new_york == ("US", "US-NY") and not notice_required(new_york)
    assert not recording_notice(True, new_york)
    # a New York mobile whose owner lives in California: the stricter place wins
    assert recording_notice(True, codes("+12125550123", "US", "CA"))


@pytest.mark.parametrize("phone", ["+442079460000", "+33145670000", "+4930901820", "+14165550123",
                                   "+15145550123"])  # GB FR DE, Canada (ON, QC)
def test_gb_fr_de_and_canada_require_the_notice(phone):
    assert recording_notice(True, codes(phone))


def test_unknown_jurisdiction_fails_closed():
    assert notice_required(())
    assert notice_required(("",))
    assert recording_notice(True, ())


def test_every_entry_names_its_source_and_bad_tables_are_refused(tmp_path):
    table = load_table()
    assert {"US-CA", "US-FL", "US-IL", "US-MD", "US-MA", "US-MT", "US-NH", "US-PA", "US-WA",
            "GB", "FR", "DE", "CA"} <= set(table)
    assert "US" not in table  # federal law is one-party consent
    assert all(entry["source"].strip() for entry in table.values())
    bad = tmp_path / "bad.toml"
    bad.write_text('[US-CA]\nunconfirmed = true\n')
    with pytest.raises(RecordingTableError, match=r"\[US-CA\]"):
        load_table(bad)
    bad.write_text('[US-CA]\nsource = "x"\nplays = true\n')
    with pytest.raises(RecordingTableError, match=r"plays"):
        load_table(bad)


async def notice_flags(redis_url, redis_client, tmp_path, **campaign) -> list[str]:
    """Run a small French campaign; the DIALER_RECORDING_NOTICE of every Originate the PBX received."""
    phones = [p for p in numbers(6, base="+331456720") if p[-1] not in "2347"]
    campaign_id = setup_campaign(redis_client, tmp_path, phones, **campaign)
    pbx = await start_pbx()
    flags: list[str] = []
    originate = pbx.pbx.originate

    def seen(req):  # the real PBX handles the request; we only note what the dialer asked for
        flags.append(req.variables.get("DIALER_RECORDING_NOTICE", "<missing>"))
        return originate(req)

    pbx.pbx.originate = seen
    try:
        await run_until_completed(redis_url, redis_client, "acme", campaign_id, pbx, offset_clock(AT, 60.0))
        await asyncio.sleep(0.1)
    finally:
        await pbx.stop()
    assert len(flags) == len(phones)
    return flags


async def test_runtime_plays_the_notice_for_a_recording_campaign_in_france(redis_url, redis_client, tmp_path):
    assert set(await notice_flags(redis_url, redis_client, tmp_path, recording=True)) == {"1"}


async def test_runtime_never_plays_it_when_the_campaign_does_not_record(redis_url, redis_client, tmp_path):
    assert set(await notice_flags(redis_url, redis_client, tmp_path, recording=False)) == {"0"}


async def test_runtime_follows_the_table_not_only_the_campaign_flag(redis_url, redis_client, tmp_path,
                                                                   monkeypatch):
    # counsel removes France from the table: a recording French campaign no longer announces
    table = tmp_path / "recording_notice.toml"
    table.write_text('[US-CA]\nsource = "Cal. Penal Code 632"\n')
    monkeypatch.setattr(recording, "TABLE", table)
    monkeypatch.setattr(recording.load_table, "__defaults__", (table,))
    recording._codes.cache_clear()
    try:
        assert set(await notice_flags(redis_url, redis_client, tmp_path, recording=True)) == {"0"}
    finally:
        recording._codes.cache_clear()
