"""The `realpbx` tier (issue 14): `dialer run`, unchanged, against a real Asterisk 22.10.1 (../shared/asterisk-lab:
the project's own extensions_dialer.conf, the least-privilege AMI user of manager.conf.sample, simulated callees and
agents on Local channels). Ground truth is Asterisk's own full.log, never the dialer's view.

Each test starts its own instance (fresh CONFDIR: clean AstDB and logs, free AMI port) and stops it. The lab is
built into a cache directory once (tests/realpbx_lab.py); without a build, and without DIALER_REALPBX=1, the tier is
skipped with one line. docs/realpbx.md lists what each test proves and how long the tier takes.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dialer.ami.client import AMIClient
from dialer.campaigns import CampaignStore
from dialer.facts import FactStore
from dialer.runtime.engine import campaign_lease_key
from dialer.runtime.queues import ContactQueue
from dialer.runtime.servers import draining_servers
from tests import realpbx_lab as lab
from tests.runtime_support import AT, SECRET_KEY, eventually, numbers, seen_group, setup_campaign

pytestmark = pytest.mark.realpbx

LIVE = ("answered", "abandoned", "opted_out")


@pytest.fixture(scope="session")
def asterisk_lab() -> tuple[Path, Path]:
    """(lab directory, install prefix): built or reused; skipped when neither built nor DIALER_REALPBX=1."""
    required = os.environ.get("DIALER_REALPBX") == "1"
    directory, where = lab.lab_dir(), lab.prefix()
    if directory is None:
        if required:
            pytest.fail("DIALER_REALPBX=1 but no asterisk-lab found (set DIALER_ASTERISK_LAB)")
        pytest.skip("realpbx: no ../shared/asterisk-lab (set DIALER_ASTERISK_LAB)")
    if not lab.built(where) and not required:
        pytest.skip(f"realpbx: Asterisk lab not built in {where} (run {directory}/build.sh {where}, or set "
                    "DIALER_REALPBX=1)")
    lab.build(directory, where)  # idempotent: returns at once when built
    return directory, where


@pytest.fixture
def pbx(asterisk_lab: tuple[Path, Path]) -> Iterator[lab.Instance]:
    instance = lab.Instance.start(*asterisk_lab)
    try:
        yield instance
    finally:
        instance.stop(keep=os.environ.get("DIALER_REALPBX_KEEP") == "1")


def write_config(directory: Path, pbx: lab.Instance, *, trunk: str = "", runtime: str = "") -> Path:
    """The README's dialer settings for the lab (production path: a TOML file with an [[asterisk]] table)."""
    path = directory / "dialer.toml"
    path.write_text(f"""
[runtime]
dial_template = "Local/{{number}}@sim-callee"
ring_timeout = 15
{runtime}

[[asterisk]]
name = "lab"
host = "127.0.0.1"
port = {pbx.port}
username = "dialer"
secret = "dialer-secret"
auth = "md5"
{trunk}
""")
    return path


async def start_dialer(redis_url: str, config: Path, name: str, log_dir: Path,
                       lease: float = 20.0) -> asyncio.subprocess.Process:
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY,
           "DIALER_RUNTIME_LEASE_SECONDS": str(lease), "DIALER_LOG_LEVEL": "INFO", "PYTHONPATH": str(lab.ROOT)}
    env.pop("DIALER_CONFIG", None)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialer", "--config", str(config), "run", "--process-id", name,
        "--clock-start", AT.isoformat(), "--clock-speed", "1", "--drain", "30",
        cwd=str(lab.ROOT), env=env, stdout=(log_dir / f"{name}.out").open("w"),
        stderr=(log_dir / f"{name}.err").open("w"))


async def stop_dialer(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            return await proc.wait()
    return proc.returncode


async def until_completed(redis_client, campaign: str, timeout: float) -> None:
    store = CampaignStore(redis_client)
    await eventually(lambda: store.get("acme", campaign).status == "completed", timeout=timeout, interval=0.5)


def outcomes_of(redis_client, phones: list[str]) -> dict[str, list[str]]:
    facts = FactStore(redis_client)
    return {phone: [a.outcome for a in facts.attempts("acme", phone)] for phone in phones}


def dialer_log(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.err").read_text()


@pytest.fixture
async def running(redis_url, tmp_path) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Dialer processes a test starts; any still running at the end are stopped (killed if they hang)."""
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- every outcome, by the callee number's last digit ----------------------------------------------------------


async def test_every_outcome_and_the_keypress_optout(pbx, redis_url, redis_client, tmp_path, running):
    # 1 answers (20 s), 2 busy, 3 never answers (15 s ring timeout), 4 congestion, 5 answers (4 s), 6 presses 9
    # during the recording notice (3 s), 7 and 0 answer (10 s); one attempt each
    phones = [f"+3314567320{d}" for d in "12345670"]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=True)
    running.append(await start_dialer(redis_url, write_config(tmp_path, pbx), "d1", tmp_path))
    await until_completed(redis_client, campaign, timeout=120)
    assert await stop_dialer(running[0]) == 0
    assert pbx.calls_by_number() == dict.fromkeys(phones, 1)  # each reached Asterisk exactly once
    expected = {"1": "answered", "2": "busy", "3": "no_answer", "4": "congestion", "5": "answered", "6": "opted_out",
                "7": "answered", "0": "answered"}
    assert outcomes_of(redis_client, phones) == {p: [expected[p[-1]]] for p in phones}
    text = pbx.log_text()
    assert "Executing [optout@dialer-outbound:1]" in text  # the opt-out extension ran on the real PBX
    facts = FactStore(redis_client)
    assert facts.optout("acme", phones[5]) is not None  # the keypress reached the company DNC
    assert [p for p in phones if p != phones[5] and facts.optout("acme", p)] == []
    # the opt-out's AstDB copy (kept in case the event was lost) is deleted at the dialer's next AstDB read
    optout_call = facts.attempts("acme", phones[5])[0].call_id
    assert set(pbx.astdb("dialer_optout")) <= {optout_call}
    assert pbx.astdb("dialer_outcome") == {}  # every answered call's stored outcome deleted once recorded
    log_text = dialer_log(tmp_path, "d1")
    assert "Traceback" not in log_text
    # One line per real event at the right level (issue 14 section 4): the opt-out once, nothing "read back from
    # AstDB" (nothing was lost), no registry or permission complaint, no "connection lost" at the clean shutdown;
    # the only WARNING is the test clock's own.
    assert log_text.count("opt-out of call") == 1, log_text
    loud = [line for line in log_text.splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    assert [line for line in loud if "clock starts at" not in line] == [], loud


# --- abandon: no agent within the 2 s connect timeout ------------------------------------------------------------


async def test_abandon_when_the_agents_are_gone(pbx, redis_url, redis_client, tmp_path, running):
    # Progressive pacing dials only for free agents, so the campaign starts with the five agents of `dialer` free
    # and they go away (devstate UNAVAILABLE) while the calls ring and play the 3 s recording notice: every
    # answered call then waits 2 s in the queue for nobody and takes the abandon path (information message).
    phones = [f"+3314567321{d}" for d in "5709"]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=True)
    running.append(await start_dialer(redis_url, write_config(tmp_path, pbx), "d1", tmp_path))
    await eventually(lambda: sum(pbx.calls_by_number().values()) >= 4, timeout=60, interval=0.05)
    for agent in range(7001, 7006):
        pbx.cli(f"devstate change Custom:{agent} UNAVAILABLE")
    await until_completed(redis_client, campaign, timeout=90)
    assert await stop_dialer(running[0]) == 0
    text = pbx.log_text()
    # 7, 0, 9 wait the 2 s for nobody and take the abandon path; 5 hangs up (4 s) while still waiting: abandoned
    # too, as the h extension tells from app_queue's ANSWEREDTIME (0: no agent ever took it)
    assert text.count("DialerAbandon,CallID") == 3
    assert text.count("ended: abandoned\")") == 4
    assert outcomes_of(redis_client, phones) == {p: ["abandoned"] for p in phones}
    assert pbx.astdb("dialer_outcome") == {}


# --- wrap-up: progressive with one agent and wrapuptime 5 must never abandon -------------------------------------


async def test_progressive_with_one_agent_in_wrap_up_abandons_none(pbx, redis_url, redis_client, tmp_path, running):
    phones = [f"+331456742{i}5" for i in range(10)]  # 5: answers after 1 s, hangs up after 4 s
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False, queue="solo")
    running.append(await start_dialer(redis_url, write_config(tmp_path, pbx), "d1", tmp_path))
    await until_completed(redis_client, campaign, timeout=240)
    assert await stop_dialer(running[0]) == 0
    assert sum(pbx.calls_by_number().values()) == 10
    assert pbx.log_text().count("DialerAbandon,CallID") == 0  # 0 abandons of 10
    assert outcomes_of(redis_client, phones) == {p: ["answered"] for p in phones}


# --- core restart now mid-campaign uses up no contact ------------------------------------------------------------


async def test_restart_mid_campaign_uses_up_no_contact(pbx, redis_url, redis_client, tmp_path, running):
    # short answered calls (4-10 s); 15 contacts, 6 reached before the restart (24 until the tier neared 8 min)
    phones = [f"+331456733{i}{d}" for i in range(5) for d in "570"]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False)
    running.append(await start_dialer(redis_url, write_config(tmp_path, pbx), "d1", tmp_path))
    await eventually(lambda: sum(pbx.calls_by_number().values()) >= 6, timeout=60, interval=0.1)
    pbx.cli("core restart now")
    await asyncio.sleep(2.0)
    pbx.wait_booted()
    await until_completed(redis_client, campaign, timeout=180)
    assert await stop_dialer(running[0]) == 0
    reached = pbx.calls_by_number()
    outcomes = outcomes_of(redis_client, phones)
    # calls the restart cut were hung up by Asterisk, which ran the h extension: settled from AstDB, not unknown
    assert [p for p, outs in outcomes.items() if "unknown" in outs] == []
    used_up = [p for p in phones if not reached[p]]  # final without a call ever reaching Asterisk
    assert used_up == []
    for phone, outs in outcomes.items():
        assert len(outs) == reached[phone], phone  # no attempt recorded without a call
    # the drain said once at WARNING, nothing else above INFO (issue 14 section 4; before: an ERROR asking to grant
    # `system` for a DBDel that Asterisk refused while shutting down)
    loud = [line for line in dialer_log(tmp_path, "d1").splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    assert [line for line in loud if "clock starts at" not in line and "is draining" not in line] == [], loud


# --- core restart gracefully: Originates refused while the last calls end, none an attempt -----------------------


async def test_a_graceful_restart_drains_the_server_and_uses_up_no_contact(pbx, redis_url, redis_client, tmp_path,
                                                                             running):
    # An agentless campaign (the lab's AI answers and talks 8 s) with 3 AI sessions and 1 originate a second: the
    # restart is asked as soon as the first call reaches Asterisk, so the next Originates meet "Asterisk is shutting
    # down" for as long as the calls up last (5-9 s). Issue 14 measured `core stop gracefully` using up 33 of 40.
    phones = [p for p in numbers(40, base="+331456738") if p[-1] in "05"][:6]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False, agent_kind="ai",
                              ai_endpoint="Local/ai@sim-ai")
    config = write_config(tmp_path, pbx, trunk="calls_per_second = 1", runtime="ai_sessions = 3")
    running.append(await start_dialer(redis_url, config, "d1", tmp_path))
    await eventually(lambda: sum(pbx.calls_by_number().values()) >= 1, timeout=60, interval=0.05)
    pbx.cli("core restart gracefully")
    address = {"lab": f"127.0.0.1:{pbx.port}"}
    seen: list[dict] = []
    store = CampaignStore(redis_client)
    while store.get("acme", campaign).status != "completed":  # what `dialer trunk status` and the dashboard read
        seen.append(await asyncio.to_thread(draining_servers, redis_client, address))
        await asyncio.sleep(0.2)
        assert len(seen) < 900, "campaign not completed within 3 minutes"
    assert await stop_dialer(running[0]) == 0
    err = dialer_log(tmp_path, "d1")
    draining = [line for line in err.splitlines() if "is draining" in line]
    assert len(draining) == 1 and " WARNING " in draining[0], draining  # one line, at WARNING
    assert "server lab is draining: Asterisk refused an Originate (Asterisk is shutting down)" in draining[0], draining
    resumed = re.search(r"server lab is fully booted again: dialing resumes \(drained [\d.]+ s, (\d+) Originates "
                        r"refused and given back\)", err)
    assert resumed and int(resumed.group(1)) >= 1, err[-3000:]
    assert any(d.get("lab", {}).get("message") == "Asterisk is shutting down" for d in seen)  # shown while it lasted
    reached = pbx.calls_by_number()
    outcomes = outcomes_of(redis_client, phones)
    assert [p for p in phones if not reached[p]] == []  # no contact used up by a refusal
    for phone in phones:
        assert len(outcomes[phone]) == reached[phone] == 1, (phone, outcomes[phone])  # no attempt without a call
        assert outcomes[phone] in (["answered"], ["abandoned"]), (phone, outcomes[phone])
    assert "Traceback" not in err
    # nothing else said louder than INFO: no AstDB entry "cannot be deleted ... grant `system`" for the DBDel that
    # Asterisk refused while shutting down (the sweep after the re-login deletes it)
    loud = [line for line in err.splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    assert [line for line in loud if "clock starts at" not in line and "is draining" not in line] == [], loud


# --- kill -9 of the pacing process: the successor settles its calls from AstDB -----------------------------------


async def test_kill_9_takeover_settles_answered_calls_with_their_real_outcome(pbx, redis_url, redis_client,
                                                                               tmp_path, running):
    # answered calls only (5: 4 s, 0 and 9: 10 s, 1: 20 s); two processes, 3 s leases. The pacing one is killed 3 s
    # after a 4 s call was answered; the other takes the calls over 2-4 s later: that call has ended (only AstDB
    # knows how), the long ones are still up (tracked to their end).
    phones = [p for p in numbers(40, base="+331456734") if p[-1] in "0159"][:14]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False)
    config = write_config(tmp_path, pbx)
    for name in ("da", "db"):
        running.append(await start_dialer(redis_url, config, name, tmp_path, lease=3.0))
    procs = dict(zip(("da", "db"), running, strict=True))
    await eventually(lambda: re.search(r"Executing \[s@dialer-outbound:1\] NoOp\(\"Local/\+\d+5@", pbx.log_text()),
                     timeout=60, interval=0.1)
    await asyncio.sleep(3.0)
    group = seen_group(redis_client, pbx.port)
    holder = redis_client.get(campaign_lease_key("acme", campaign, group)).decode()
    procs[holder].send_signal(signal.SIGKILL)
    await procs[holder].wait()
    survivor = next(n for n in procs if n != holder)
    await until_completed(redis_client, campaign, timeout=150)
    assert await stop_dialer(procs[survivor]) == 0
    err = dialer_log(tmp_path, survivor)
    assert "taking over call" in err and "Traceback" not in err
    reached = pbx.calls_by_number()
    assert max(reached.values()) == 1  # no second call to anyone
    outcomes = outcomes_of(redis_client, phones)
    for phone in phones:
        if reached[phone]:  # answered (every callee here answers): settled with the real outcome, never unknown
            assert outcomes[phone] and all(o in LIVE for o in outcomes[phone]), (phone, outcomes[phone])
    assert "read back from AstDB" in err  # at least one ended while nobody listened, and AstDB told how
    assert len(pbx.astdb("dialer_outcome")) <= 2  # deleted once recorded (the killed process's last ones aside)
    assert len(ContactQueue(redis_client, "acme", campaign).final_states()) == len(phones)


# --- shared trunk ceilings, sampled from Asterisk ----------------------------------------------------------------


async def test_trunk_ceilings_hold_on_the_real_pbx(pbx, redis_url, redis_client, tmp_path, running):
    phones = [p for p in numbers(30, base="+331456735") if p[-1] in "05"][:8]  # 4 s and 10 s answered calls
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False)
    config = write_config(tmp_path, pbx, trunk="trunk_channels = 3\ncalls_per_second = 2")
    monitor = AMIClient("127.0.0.1", pbx.port, "monitor", "monitor-secret", name="monitor", events="call")
    starts: list[float] = []

    def seen(message) -> None:  # the originated channel's creation: Local/<number>@sim-callee-...;1
        channel = message.get("Channel") or ""
        if "@sim-callee-" in channel and channel.endswith(";1"):
            starts.append(time.monotonic())

    await monitor.connect()
    monitor.on_event(seen, names=["Newchannel"])
    try:
        async with lab.LiveCalls(pbx.port) as live:
            running.append(await start_dialer(redis_url, config, "d1", tmp_path))
            store = CampaignStore(redis_client)
            while store.get("acme", campaign).status != "completed":
                await asyncio.sleep(0.2)
        assert await stop_dialer(running[0]) == 0
    finally:
        await monitor.close()
    peak = live.peak
    assert sum(pbx.calls_by_number().values()) == len(phones)
    assert 2 <= peak <= 3  # the channel ceiling was reached and held
    starts.sort()
    # at most 2 originates in any second (0.2 s allowed for the event's way to us under load)
    assert all(later - first >= 0.8 for first, later in zip(starts, starts[2:], strict=False)), starts


# --- AI voice agent: a bridged AI session is a connected call ------------------------------------------------------


async def test_ai_calls_count_as_connected(pbx, redis_url, redis_client, tmp_path, running):
    # [sim-ai] answers at once and talks 8 s; the callees (0) stay 10 s: for about 7 s of each call an AI session
    # is bridged to the person, and the live figures must say so (issue 14 section 4)
    phones = ["+33145673600", "+33145673610"]
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False, agent_kind="ai",
                              ai_endpoint="Local/ai@sim-ai")
    running.append(await start_dialer(redis_url, write_config(tmp_path, pbx), "d1", tmp_path))
    store, peak = CampaignStore(redis_client), 0.0
    key = f"t:{{acme}}:campaign:{campaign}:stats"
    while store.get("acme", campaign).status != "completed":
        peak = max(peak, float(redis_client.hget(key, "connected") or 0))
        await asyncio.sleep(0.3)
    assert await stop_dialer(running[0]) == 0
    assert "Executing [ai@sim-ai:1]" in pbx.log_text()  # the AI endpoint really took the calls
    assert outcomes_of(redis_client, phones) == {p: ["answered"] for p in phones}
    assert peak >= 1


# --- a campaign on a queue the PBX does not have (issue 16 point 11) -----------------------------------------------

SALES_QUEUE = """
[sales]
strategy = rrmemory
timeout = 15
autofill = yes
retry = 1
timeoutpriority = app
wrapuptime = 0
ringinuse = no
joinempty = yes
leavewhenempty = no
context = dialer-outbound
member => Local/7007@sim-agent/n,0,Agent 7,Custom:7007
"""


async def test_a_campaign_on_a_missing_queue_is_refused_until_a_queue_reload(pbx, redis_url, redis_client, tmp_path,
                                                                             running):
    phones = ["+33145673705", "+33145673715"]  # answered after 1 s, 4 s
    campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False, queue="sales")
    running.append(await start_dialer(redis_url, write_config(tmp_path, pbx), "d1", tmp_path))
    stats = f"t:{{acme}}:campaign:{campaign}:stats"
    await eventually(lambda: redis_client.hget(stats, "pacing_reason") == b"QUEUE_MISSING", timeout=60, interval=0.3)
    await asyncio.sleep(3.0)  # several polls and ticks
    assert pbx.calls_by_number() == {}  # nothing reached Asterisk
    assert CampaignStore(redis_client).get("acme", campaign).status == "running"
    assert redis_client.hget(stats, "refused_code") == b"QUEUE_MISSING"
    queues = pbx.conf / "queues.conf"
    if os.access(queues, os.W_OK):  # the lab's CONFDIR is the test's own: add the queue, `queue reload all`
        queues.write_text(queues.read_text() + SALES_QUEUE)
        pbx.cli("queue reload all")
        await until_completed(redis_client, campaign, timeout=90)
        assert pbx.calls_by_number() == dict.fromkeys(phones, 1)
        assert outcomes_of(redis_client, phones) == {p: ["answered"] for p in phones}
        assert redis_client.hget(stats, "refused_code") is None
    assert await stop_dialer(running[0]) == 0
    log_text = dialer_log(tmp_path, "d1")
    assert log_text.count("QUEUE_MISSING: queue 'sales' does not exist on server lab") == 1, log_text[-3000:]
    if os.access(queues, os.W_OK):
        assert "queue 'sales' found on lab; dialing resumes" in log_text
