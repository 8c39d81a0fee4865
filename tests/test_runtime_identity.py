"""Issue 16, fault 5: one PBX reached by two addresses. A server is identified by what Asterisk says after login
(AMI Getvar SYSTEMNAME / ENTITYID / ASTETCDIR, the sandbox answering as Asterisk 22 does), so two `dialer run`
processes reaching one sandbox PBX as 127.0.0.1 and as localhost share one trunk; two names for one server in one
process are refused."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from dialer.ami.client import AMIClient
from dialer.config import AsteriskServer
from dialer.runtime.engine import Engine, build_gate, pbx_group_of
from dialer.runtime.identity import ServerIdentity, read_identity
from tests import test_realpbx
from tests.runtime_support import engine_config, numbers, seen_group, setup_campaign
from tests.test_runtime_engine import SETTINGS, start_pbx
from tests.test_runtime_trunk import run_two_dialers

# Asterisk 22.10.1 (the lab, /work/shared/asterisk-lab, default asterisk.conf), user `dialer`:
#   Getvar Variable=SYSTEMNAME -> Success, Value empty;  ENTITYID -> Success, Value 02:fc:00:00:00:01 (the MAC)
#   Getvar Variable=NOSUCHVAR -> Success, Value empty;   no Variable -> Error "No variable specified"
#   Getvar Channel=<none such> -> Error "No such channel"
asterisk_lab = test_realpbx.asterisk_lab  # the realpbx tier's fixture: the lab, built (or the test is skipped)
REAL = {"SYSTEMNAME": ("Success", ""), "NOSUCHVAR": ("Success", ""), "": ("Error", "No variable specified")}


async def getvar(client: AMIClient, fields: dict[str, str]):
    from dialer.ami.client import ActionFailed

    try:
        response = await client.action("Getvar", fields, timeout=5.0)
    except ActionFailed as exc:
        return "Error", exc.response.get("Message")
    return response.get("Response"), response.get("Value")


async def check_getvar(port: int) -> None:
    client = AMIClient("127.0.0.1", port, "dialer", "dialer-secret", name="probe", events="off")
    try:
        await client.connect()
        for variable, expected in REAL.items():
            assert await getvar(client, {"Variable": variable} if variable else {}) == expected, variable
        assert await getvar(client, {"Variable": "ENTITYID", "Channel": "Local/nope-1;1"}) == ("Error",
                                                                                            "No such channel")
        status, eid = await getvar(client, {"Variable": "ENTITYID"})
        assert status == "Success" and re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", eid)
        identity = await read_identity(client)
        assert identity.entity_id == eid and identity.etc_dir
    finally:
        await client.close()


async def test_the_sandbox_answers_getvar_like_asterisk_22():
    pbx = await start_pbx()
    try:
        await check_getvar(pbx.port)
    finally:
        await pbx.stop()


@pytest.mark.realpbx
async def test_the_real_asterisk_answers_getvar_so(asterisk_lab):
    from tests.realpbx_lab import Instance

    instance = Instance.start(*asterisk_lab)
    try:
        await check_getvar(instance.port)
    finally:
        instance.stop()


def test_identity_keys():
    assert ServerIdentity("pbx-paris-1", "02:fc:00:00:00:01", "/etc/asterisk").key == "asterisk:pbx-paris-1"
    a = ServerIdentity("", "02:fc:00:00:00:01", "/etc/asterisk")
    b = ServerIdentity("", "02:fc:00:00:00:01", "/srv/pbx2/etc")  # a second instance on the same machine
    assert a.key != b.key and a.key.startswith("asterisk:02:fc:00:00:00:01:")


async def test_one_pbx_reached_by_two_addresses_is_one_trunk(redis_url, redis_client, tmp_path):
    """Process acme dials through 127.0.0.1, process beta through localhost: one trunk of 3 channels."""
    peak, sent, logs = await run_two_dialers(redis_url, redis_client, tmp_path, "+331456860",
                                             hosts={"acme": "127.0.0.1", "beta": "localhost"},
                                             DIALER_RUNTIME_TRUNK_CHANNELS="3")
    assert len(sent) == 10
    assert peak == 3  # counted as one trunk whatever the address (each process alone would have taken 3)
    for text in logs.values():
        assert "trunk counted as asterisk:" in text


async def test_two_names_for_one_server_are_refused(redis_url, redis_client, caplog):
    caplog.set_level(logging.INFO, logger="dialer")
    pbx = await start_pbx()
    servers = [AsteriskServer("paris", "127.0.0.1", pbx.port, "dialer", "dialer-secret", "md5"),
               AsteriskServer("paris-bis", "localhost", pbx.port, "dialer", "dialer-secret", "md5")]
    engine = Engine(redis_client, build_gate(redis_client, engine_config(redis_url)), servers, settings=SETTINGS,
                    process_id="twice")
    try:
        await engine.pool.start()
        await engine.identities.refresh()
        assert engine._dialable() == ["paris"]
        assert engine.identities.refused == {"paris-bis": "paris"}
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("are one Asterisk" in m and "paris-bis is not used" in m for m in errors), errors
    finally:
        await engine.pool.close()
        await pbx.stop()
    await asyncio.sleep(0)


async def test_processes_reaching_one_pbx_by_two_addresses_pace_a_campaign_once(redis_url, redis_client, tmp_path,
                                                                                 caplog):
    """Process p1 dials through 127.0.0.1, p2 through localhost: one PBX, one set of agents, so one of them paces
    the campaign (both pacing it would each place calls for the same agents)."""
    caplog.set_level(logging.INFO, logger="dialer")
    pbx = await start_pbx()
    campaign = setup_campaign(redis_client, tmp_path, numbers(3), max_attempts=1)
    engines = [Engine(redis_client, build_gate(redis_client, engine_config(redis_url)),
                      [AsteriskServer("pbx", host, pbx.port, "dialer", "dialer-secret", "md5")], settings=SETTINGS,
                      process_id=name) for name, host in (("p1", "127.0.0.1"), ("p2", "localhost"))]
    assert engines[0].pbx != engines[1].pbx  # by address they look like two PBXs
    try:
        for engine in engines:
            await engine.pool.start()
            await engine.identities.refresh()
            engine._regroup(pbx_group_of(engine.identities.group_names()))
        assert engines[0].pbx == engines[1].pbx == seen_group(redis_client, pbx.port)
        for engine in engines:
            engine._active = engine._active_campaigns()
            engine._hold_leases()
        held = [e.id for e in engines if e.runners.get(("acme", campaign)) and e.runners[("acme", campaign)].held]
        assert len(held) == 1, held
        assert any("servers identified; pacing group" in r.getMessage() for r in caplog.records)
    finally:
        for engine in engines:
            await engine.pool.close()
        await pbx.stop()
    await asyncio.sleep(0)


@pytest.mark.realpbx
async def test_the_real_asterisk_reached_by_two_addresses_is_one_trunk(asterisk_lab, redis_url, redis_client,
                                                                        tmp_path):
    """Two `dialer run` processes on the lab Asterisk, one configured with 127.0.0.1, the other with localhost, one
    campaign, a 3-channel trunk: never more than 3 calls up on the PBX."""
    import time

    from dialer.campaigns import CampaignStore
    from tests.realpbx_lab import Instance, LiveCalls
    from tests.runtime_support import numbers, setup_campaign
    from tests.test_realpbx import start_dialer, stop_dialer, write_config

    instance = Instance.start(*asterisk_lab)
    procs = []
    live = LiveCalls(instance.port)
    try:
        await live.__aenter__()  # before any dialer: every call's Newchannel is seen
        phones = [p for p in numbers(40, base="+331456736") if p[-1] in "05"][:10]  # answered: 4 s and 10 s
        campaign = setup_campaign(redis_client, tmp_path, phones, max_attempts=1, recording=False)
        for name, host in (("d1", "127.0.0.1"), ("d2", "localhost")):
            (tmp_path / name).mkdir()
            config = write_config(tmp_path / name, instance, trunk="trunk_channels = 3")
            config.write_text(config.read_text().replace('host = "127.0.0.1"', f'host = "{host}"'))
            procs.append(await start_dialer(redis_url, config, name, tmp_path))
        store = CampaignStore(redis_client)
        deadline = time.monotonic() + 240
        while store.get("acme", campaign).status != "completed":
            assert time.monotonic() < deadline, "campaign not completed in time"
            await asyncio.sleep(0.2)
        peak = live.peak
        for proc in procs:
            assert await stop_dialer(proc) == 0
        calls = instance.calls_by_number()  # (its logs go with the instance)
    finally:
        await live.__aexit__()
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        instance.stop()
    assert sum(calls.values()) == len(phones)
    assert 2 <= peak <= 3, peak  # one trunk, whatever the address
    for name in ("d1", "d2"):
        assert "trunk counted as asterisk:" in (tmp_path / f"{name}.err").read_text()
