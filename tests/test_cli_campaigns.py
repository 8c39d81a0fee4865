"""`dialer campaigns ...`, `dialer dnc check` and `dialer token create --json`: the whole path from the shell, with
machine-readable answers (issue 14), against a real redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from dialer.campaigns import CampaignStore
from dialer.facts import FactStore
from dialer.runtime.engine import offset_clock
from tests.runtime_support import AT, eventually, numbers, setup_campaign
from tests.test_runtime_engine import engine_task, start_pbx

ROOT = Path(__file__).resolve().parents[1]


def dialer(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": "cli-key"}
    env.pop("DIALER_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "dialer", *args], capture_output=True, text=True, env=env,
                          timeout=60, cwd=str(ROOT))


def test_campaigns_from_the_shell(redis_url, redis_client, tmp_path):
    phones = numbers(3, base="+331456950")
    setup_campaign(redis_client, tmp_path, phones)  # tenant acme, a Bloctel copy, the list "leads"
    spec = tmp_path / "spring.toml"
    spec.write_text('name = "Spring from the shell"\ncaller_id = "+33100000000"\nseller_name = "Acme"\n'
                    'lists = ["leads"]\nqueue = "dialer"\npacing_mode = "progressive"\n')
    done = dialer(redis_url, "campaigns", "create", "--tenant", "acme", str(spec), "--start", "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    cid = created["id"]
    assert created["status"] == "running" and created["name"] == "Spring from the shell"

    listing = json.loads(dialer(redis_url, "campaigns", "list", "--tenant", "acme", "--json").stdout)
    assert cid in [c["id"] for c in listing["items"]]
    shown = json.loads(dialer(redis_url, "campaigns", "show", "--tenant", "acme", cid, "--json").stdout)
    assert shown["status"] == "running" and "queue" in shown["figures"] and shown["figures"]["attempts"] == 0

    paused = dialer(redis_url, "campaigns", "pause", "--tenant", "acme", cid)
    assert paused.returncode == 0 and paused.stdout.strip() == f"campaign {cid}: pause -> paused"
    again = dialer(redis_url, "campaigns", "pause", "--tenant", "acme", cid)
    assert again.returncode == 1 and "cannot pause a paused campaign" in again.stderr
    assert "Traceback" not in again.stderr
    assert dialer(redis_url, "campaigns", "resume", "--tenant", "acme", cid).returncode == 0

    # No runtime here: nothing is loaded or dialed, so the wait times out (exit 1) with the counts.
    waited = dialer(redis_url, "campaigns", "wait", "--tenant", "acme", cid, "--timeout", "0.5", "--json")
    assert waited.returncode == 1 and json.loads(waited.stdout)["settled"] is False
    # nor idle: no contact is queued yet, the runtime has not started it (an empty queue is not a finished one)
    idle = dialer(redis_url, "campaigns", "wait", "--tenant", "acme", cid, "--until", "idle", "--timeout", "0.5")
    assert idle.returncode == 1 and "(timed out)" in idle.stdout, idle.stdout
    contacts = json.loads(dialer(redis_url, "campaigns", "contacts", "--tenant", "acme", cid, "--json").stdout)
    assert contacts == {"items": []}  # the runtime queues a campaign's lists when it first paces it

    missing = dialer(redis_url, "campaigns", "show", "--tenant", "acme", "cnope")
    assert missing.returncode == 1 and "no campaign cnope" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "pacing_mode": "preview"}')
    refused = dialer(redis_url, "campaigns", "create", "--tenant", "acme", str(bad))
    assert refused.returncode == 1 and "pacing_mode" in refused.stderr and "Traceback" not in refused.stderr
    assert dialer(redis_url, "campaigns", "list", "--tenant", "nobody-here", "--json").returncode == 0


def test_contacts_of_a_dialed_campaign_and_the_dnc_lookup(redis_url, redis_client, tmp_path):
    from dialer.runtime.loader import load_campaign
    from dialer.runtime.queues import ContactQueue

    phones = numbers(2, base="+331456960")
    cid = setup_campaign(redis_client, tmp_path, phones, list_id="few")
    load_campaign(redis_client, ContactQueue(redis_client, "acme", cid), ["few"], at=AT.timestamp())
    rows = json.loads(dialer(redis_url, "campaigns", "contacts", "--tenant", "acme", cid, "--json").stdout)["items"]
    assert len(rows) == 2 and {r["state"] for r in rows} == {"ready"} and all(r["attempts"] == 0 for r in rows)
    assert all(r["phone"].startswith("+") and "*" in r["phone"] for r in rows)  # masked by default
    full = json.loads(dialer(redis_url, "campaigns", "contacts", "--tenant", "acme", cid, "--json",
                             "--full-numbers").stdout)["items"]
    assert sorted(r["phone"] for r in full) == sorted(phones)

    FactStore(redis_client).add_optout("acme", phones[0], at=datetime.now(UTC), source="keypress", scope="company",
                                       campaign=cid, call_id="call-1")
    listed = json.loads(dialer(redis_url, "dnc", "check", "--tenant", "acme", phones[0], "--json").stdout)
    assert listed["listed"] is True and listed["source"] == "keypress" and listed["call_id"] == "call-1"
    free = dialer(redis_url, "dnc", "check", "--tenant", "acme", phones[1])
    assert free.returncode == 0 and free.stdout.strip() == f"{phones[1]}: not on the DNC"
    junk = dialer(redis_url, "dnc", "check", "--tenant", "acme", "12345")
    assert junk.returncode == 1 and "not a valid E.164 number" in junk.stderr


def test_token_create_json(redis_url):
    assert dialer(redis_url, "tenant", "create", "globex").returncode == 0
    done = dialer(redis_url, "token", "create", "--tenant", "globex", "--user", "ops", "--role", "admin", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["token"].startswith("dlr_") and data["user"] == "ops" and data["role"] == "admin" and data["id"]


def test_redis_down_is_one_line():
    for args in (["campaigns", "list", "--tenant", "acme"], ["dnc", "check", "--tenant", "acme", "+33145678901"]):
        done = dialer("redis://:hunter2@127.0.0.1:1/0", *args)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in done.stderr and "hunter2" not in done.stderr


async def test_a_script_waits_for_a_dialed_campaign_and_reads_each_calls_outcome(redis_url, redis_client, tmp_path):
    """The runtime dials (sandbox PBX): `campaigns wait` started before it is done returns 0 once the campaign is
    completed, and `campaigns contacts --json` gives each contact's calls with their outcomes, as the PBX ended them
    (2 busy, retried once; 7 opts out during the recording notice; 0 answers). `stop` from the shell ends another."""
    phones = ["+33145697000", "+33145697012", "+33145697027"]
    cid = setup_campaign(redis_client, tmp_path, phones, list_id="scripted", max_attempts=2, recording=True,
                         retry_rules={"busy": 1})
    other = setup_campaign(redis_client, tmp_path, numbers(2, base="+331456971"), list_id="other")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": "cli-key"}
    env.pop("DIALER_CONFIG", None)
    waiting = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialer", "campaigns", "wait", "--tenant", "acme", cid, "--timeout", "120", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT))
    stopped = await asyncio.to_thread(dialer, redis_url, "campaigns", "stop", "--tenant", "acme", other, "--json")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["status"] == "stopping", stopped.stderr
    pbx = await start_pbx()
    try:
        stop, task = engine_task(redis_url, pbx, offset_clock(AT, 60.0))
        out, err = await asyncio.wait_for(waiting.communicate(), 150)
        store = CampaignStore(redis_client)
        await eventually(lambda: store.get("acme", other).status == "completed", timeout=60)  # the stop, finished
        stop.set()
        await task
    finally:
        await pbx.stop()
    assert waiting.returncode == 0, err
    waited = json.loads(out)
    assert waited["settled"] is True and waited["status"] == "completed" and waited["queue"]["final"] == 3
    shown = await asyncio.to_thread(dialer, redis_url, "campaigns", "show", "--tenant", "acme", other, "--json")
    assert json.loads(shown.stdout)["status"] == "completed"
    rows = json.loads((await asyncio.to_thread(dialer, redis_url, "campaigns", "contacts", "--tenant", "acme", cid,
                                               "--json", "--full-numbers")).stdout)["items"]
    by_phone = {r["phone"]: r for r in rows}
    assert {p: [c["outcome"] for c in by_phone[p]["outcomes"]] for p in phones} == {
        phones[0]: ["answered"], phones[1]: ["busy", "busy"], phones[2]: ["opted_out"]}
    assert {p: by_phone[p]["final"]["reason"] for p in phones} == {
        phones[0]: "answered", phones[1]: "max_attempts", phones[2]: "opted_out"}
    assert all(c["call_id"] for r in rows for c in r["outcomes"])
    text = (await asyncio.to_thread(dialer, redis_url, "campaigns", "contacts", "--tenant", "acme", cid)).stdout
    assert "calls: busy, busy" in text and phones[1] not in text  # masked by default
    listed = await asyncio.to_thread(dialer, redis_url, "dnc", "check", "--tenant", "acme", phones[2], "--json")
    assert json.loads(listed.stdout)["source"] == "keypress"
    typo = await asyncio.to_thread(dialer, redis_url, "dnc", "check", "--tenant", "acmee", phones[2])
    assert typo.returncode == 1 and "no tenant acmee" in typo.stderr  # not "not on the DNC"
