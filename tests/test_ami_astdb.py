"""Keypress opt-outs kept in AstDB survive an AMI outage (real sandbox PBX over TCP, real redis-server)."""

from __future__ import annotations

import asyncio
import logging

import redis

from dialer.ami.astdb import FAMILY, parse_entry
from dialer.ami.optouts import OptOutRecorder
from dialer.ami.pool import AMIPool
from dialer.ami.protocol import Message
from dialer.facts import FactStore, optout_log_key
from dialer.gate import Gate, call_index_key
from tests.sandbox_client import RawAmi
from tests.test_ami_client import eventually, request, sandbox_digit, server_config, start_pbx

NUMBER = "+33100000007"


def number_resolver(client: redis.Redis):
    """What the runtime passes: the gate's call index (t:{T}:call:{call_id})."""
    return Gate(client, None, None, secret_key="k").number_of


def optout_entries(pbx) -> dict[str, str]:
    """The opt-out family only: answered calls also leave their final outcome (dialer_outcome), which only the
    runtime reads and deletes (dialer/runtime/pbx_outcomes.py)."""
    return {k: v for k, v in pbx.pbx.astdb.entries.items() if k.startswith(f"/{FAMILY}/")}


# --- the sandbox speaks AstDB as Asterisk 22 does -----------------------------------------------------------

async def test_sandbox_astdb_actions_over_tcp():
    pbx = await start_pbx()
    ami = await RawAmi.connect(pbx.port)
    try:
        await ami.login()
        await ami.send("DBPut", "p1", [("Family", FAMILY), ("Key", "call-1"), ("Val", "1795400000,camp1,acme")])
        assert (await ami.response("p1"))["Message"] == "Updated database successfully"
        await ami.send("DBPut", "p2", [("Family", "other"), ("Key", "x"), ("Val", "y")])
        await ami.response("p2")
        await ami.send("DBGet", "g1", [("Family", FAMILY), ("Key", "call-1")])
        assert (await ami.response("g1"))["EventList"] == "start"
        got = await ami.wait_for(lambda m: m.name == "DBGetResponse")
        assert [k for k, _ in got.fields] == ["Event", "Family", "Key", "Val", "ActionID"]
        assert got["Val"] == "1795400000,camp1,acme"
        await ami.send("DBGetTree", "t1", [("Family", FAMILY)])
        start = await ami.response("t1")
        assert (start["Response"], start["EventList"], start["Message"]) == ("Success", "start", "Result will follow")
        tree = await ami.wait_for(lambda m: m.name == "DBGetTreeResponse")
        assert [k for k, _ in tree.fields] == ["Event", "Key", "Val", "ActionID"]
        assert tree["Key"] == f"/{FAMILY}/call-1"  # the full key, as main/db.c sends it
        done = await ami.wait_for(lambda m: m.name == "DBGetTreeComplete")
        assert (done["EventList"], done["ListItems"], done.action_id) == ("Complete", "1", "t1")
        await ami.send("DBDel", "d1", [("Family", FAMILY), ("Key", "call-1")])
        assert (await ami.response("d1"))["Message"] == "Key deleted successfully"
        await ami.send("DBDel", "d2", [("Family", FAMILY), ("Key", "call-1")])
        missing = await ami.response("d2")
        assert (missing["Response"], missing["Message"]) == ("Error", "Database entry not found")
        await ami.send("DBDelTree", "dt", [("Family", "other")])
        assert (await ami.response("dt"))["Message"] == "Key tree deleted successfully"
        assert pbx.pbx.astdb.entries == {}
    finally:
        await ami.close()
        await pbx.stop()


async def test_sandbox_enforces_the_astdb_action_classes():
    pbx = await start_pbx(write=("originate", "call", "reporting"))
    ami = await RawAmi.connect(pbx.port)
    try:
        await ami.login()
        await ami.send("DBGetTree", "t1", [("Family", FAMILY)])
        assert (await ami.response("t1"))["Response"] == "Success"  # reporting is enough to read
        await ami.send("DBDel", "d1", [("Family", FAMILY), ("Key", "x")])
        assert (await ami.response("d1"))["Message"] == "Permission denied"  # deleting needs system
    finally:
        await ami.close()
        await pbx.stop()


def test_entries_are_parsed_from_both_key_forms_and_bad_ones_are_named():
    full = Message([("Event", "DBGetTreeResponse"), ("Key", f"/{FAMILY}/abc"), ("Val", "1795400000,c1,acme")])
    bare = Message([("Event", "DBGetTreeResponse"), ("Family", FAMILY), ("Key", "abc"), ("Val", "1795400000,c1,acme")])
    assert parse_entry(full) == parse_entry(bare)
    assert parse_entry(full).tenant == "acme" and parse_entry(full).at == 1795400000.0
    assert "not an id" in parse_entry(Message([("Key", f"/{FAMILY}/abc"), ("Val", "1,c1,t:x")]))
    assert "not an epoch" in parse_entry(Message([("Key", f"/{FAMILY}/abc"), ("Val", "soon,c1,acme")]))
    assert "not in family" in parse_entry(Message([("Key", "/other/abc"), ("Val", "1,c1,acme")]))


# --- the pool reads them back ----------------------------------------------------------------------------------

async def test_keypress_while_the_dialer_is_disconnected_is_recorded_after_reconnect(redis_client):
    store = FactStore(redis_client)
    recorder = OptOutRecorder.for_fact_store(store)
    pbx = await start_pbx(time_scale=0.2)  # answer after 1 s (0.2 s wall), the key 0.5 s later
    optout_events = []
    try:
        pool = AMIPool([server_config(pbx)], on_optout=recorder, resolve_number=number_resolver(redis_client),
                       backoff_initial=1.5, backoff_max=1.5)
        async with pool:
            pool.clients["sbx"].on_event(lambda m: optout_events.append(m), names=["UserEvent"])
            req = request(sandbox_digit(optout=True), ai_disclosure=True)
            redis_client.set(call_index_key("acme", req.call_id), req.contact)  # as the gate's reservation does
            assert (await pool.originate("sbx", req)).status == "queued"
            pbx.drop_connections()  # the network cut: the call goes on, its events are lost
            await eventually(lambda: optout_entries(pbx), timeout=5)  # the person pressed 9 meanwhile
            assert not pool.clients["sbx"].connected
            await eventually(lambda: store.optout("acme", req.contact) is not None, timeout=10)
            await eventually(lambda: optout_entries(pbx) == {}, timeout=5)  # deleted once stored
            assert pool.astdb["sbx"].recorded == 1
    finally:
        await pbx.stop()
    assert not any(m.get("UserEvent") == "DialerOptOut" for m in optout_events)  # the event itself was lost
    entry = store.optout("acme", req.contact)
    assert (entry.source, entry.call_id, entry.campaign, entry.scope) == ("keypress", req.call_id, "camp1", "company")


async def test_entries_written_while_no_dialer_ran_are_read_at_first_login(redis_client):
    store = FactStore(redis_client)
    pbx = await start_pbx()
    pbx.pbx.astdb.put(FAMILY, "early-call", "1795400000,camp1,acme")
    redis_client.set(call_index_key("acme", "early-call"), NUMBER)
    try:
        async with AMIPool([server_config(pbx)], on_optout=OptOutRecorder.for_fact_store(store),
                           resolve_number=number_resolver(redis_client)):
            await eventually(lambda: optout_entries(pbx) == {}, timeout=5)
    finally:
        await pbx.stop()
    entry = store.optout("acme", NUMBER)
    assert entry.call_id == "early-call" and entry.at.timestamp() == 1795400000.0


async def test_an_entry_is_deleted_only_after_it_is_stored(redis_factory):
    server = redis_factory.start()
    port = server.port
    client = redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.5)
    store = FactStore(client)
    recorder = OptOutRecorder.for_fact_store(store, retry_initial=0.05, retry_max=0.2)
    server.kill()
    pbx = await start_pbx()
    pbx.pbx.astdb.put(FAMILY, "call-r", "1795400000,camp1,acme")
    try:
        async with AMIPool([server_config(pbx)], on_optout=recorder,
                           resolve_number=lambda tenant, call_id: NUMBER):
            await asyncio.sleep(0.6)
            assert "call-r" in recorder.pending  # Redis is down: not stored, still retried
            assert f"/{FAMILY}/call-r" in pbx.pbx.astdb.entries  # so not deleted
            redis_factory.start(port=port)
            await eventually(lambda: optout_entries(pbx) == {}, timeout=10)
            assert store.optout("acme", NUMBER).call_id == "call-r"
    finally:
        await pbx.stop()
        client.close()


async def test_duplicates_are_harmless(redis_client, caplog):
    """The event and its AstDB copy, and the same entry read twice: one DNC entry, one evidence record, one log line
    (and no "read back from AstDB" warning: nothing was lost)."""
    caplog.set_level(logging.INFO, logger="dialer.ami")
    store = FactStore(redis_client)
    recorder = OptOutRecorder.for_fact_store(store)
    pbx = await start_pbx()
    try:
        async with AMIPool([server_config(pbx)], on_optout=recorder, resolve_number=number_resolver(redis_client),
                           astdb_interval=0.2) as pool:
            req = request(sandbox_digit(optout=True), ai_disclosure=True)
            redis_client.set(call_index_key("acme", req.call_id), req.contact)
            await pool.originate("sbx", req)
            await eventually(lambda: store.optout("acme", req.contact) is not None)
            await eventually(lambda: optout_entries(pbx) == {}, timeout=5)
            pbx.pbx.astdb.put(FAMILY, req.call_id, "1795400000,camp1,acme")  # read again, as after a crash
            await eventually(lambda: optout_entries(pbx) == {}, timeout=5)
            assert recorder.recorded == 1  # heard through both paths, stored once by this process ...
    finally:
        await pbx.stop()
    assert redis_client.xlen(optout_log_key("acme")) == 1  # ... and once in Redis
    assert redis_client.hlen("t:{acme}:dnc") == 1
    lines = [r.getMessage() for r in caplog.records]
    assert sum("opt-out of call" in line and "recorded" in line for line in lines) == 1, lines
    assert not any("read back from AstDB" in line for line in lines), lines


async def test_unusable_entries_are_kept_and_named(redis_client, caplog):
    pbx = await start_pbx()
    pbx.pbx.astdb.put(FAMILY, "lost-call", "1795400000,camp1,acme")  # no call index: number unknown
    pbx.pbx.astdb.put(FAMILY, "bad-call", "garbage")
    try:
        with caplog.at_level(logging.ERROR, logger="dialer.ami.astdb"):
            async with AMIPool([server_config(pbx)], on_optout=OptOutRecorder.for_fact_store(FactStore(redis_client)),
                               resolve_number=number_resolver(redis_client)) as pool:
                await eventually(lambda: pool.astdb["sbx"].passes >= 1, timeout=5)
    finally:
        await pbx.stop()
    assert set(optout_entries(pbx)) == {f"/{FAMILY}/lost-call", f"/{FAMILY}/bad-call"}
    assert "lost-call" in caplog.text and "number unknown" in caplog.text and "bad-call" in caplog.text


async def test_without_the_system_class_entries_are_recorded_and_kept(redis_client, caplog):
    store = FactStore(redis_client)
    pbx = await start_pbx(write=("originate", "call", "reporting"))
    pbx.pbx.astdb.put(FAMILY, "call-p", "1795400000,camp1,acme")
    try:
        with caplog.at_level(logging.ERROR, logger="dialer.ami.astdb"):
            async with AMIPool([server_config(pbx)], on_optout=OptOutRecorder.for_fact_store(store),
                               resolve_number=lambda tenant, call_id: NUMBER):
                await eventually(lambda: store.optout("acme", NUMBER) is not None, timeout=5)
                await eventually(lambda: "write = system" in caplog.text, timeout=5)
    finally:
        await pbx.stop()
    assert f"/{FAMILY}/call-p" in pbx.pbx.astdb.entries


async def test_a_sync_refused_while_asterisk_shuts_down_asks_for_no_permission(redis_client, caplog):
    """During a restart every action is refused 'Asterisk is shutting down': the AstDB read is retried later, with
    no error asking to grant the AMI user more rights (issue 14)."""
    caplog.set_level(logging.INFO, logger="dialer.ami")
    recorder = OptOutRecorder.for_fact_store(FactStore(redis_client))
    pbx = await start_pbx()
    try:
        async with AMIPool([server_config(pbx)], on_optout=recorder, resolve_number=number_resolver(redis_client),
                           astdb_interval=0.2):
            await asyncio.sleep(0.3)
            pbx.shutting_down = True  # the sandbox's ast_shutting_down(): every action answered Error
            await asyncio.sleep(0.8)
            pbx.shutting_down = False
    finally:
        await pbx.stop()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any("AstDB opt-out sync refused" in m and "Asterisk is shutting down" in m for _, m in lines), lines
    assert not any("grant" in m or lvl >= logging.ERROR for lvl, m in lines), lines
