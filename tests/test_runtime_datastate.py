"""Issue 16, fault 1: a Redis that comes back with older data, or none. Faults injected on a real redis-server
(restarted from a snapshot, restarted empty, reloaded from an older snapshot without a restart); the engine dials
through the sandbox PBX. Dialing stops at once with one CRITICAL line and resumes only after an operator's
`dialer runtime resume --after-data-loss`."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis as redislib

from dialer.audit import AuditLog
from dialer.campaigns import CampaignStore
from dialer.cli import main
from dialer.facts import FactStore
from dialer.runtime.datastate import MARKER, DataState, guarded_claim, marker, persistence_of
from dialer.runtime.engine import offset_clock
from dialer.runtime.queues import ContactQueue, QueuedContact
from dialer.suppression import configure
from tests.runtime_support import AT, SECRET_KEY, OriginateObserver, eventually, numbers, setup_campaign
from tests.test_runtime_engine import engine_task, start_pbx


@pytest.fixture(autouse=True)
def restore_process_state():
    """dialer.cli.main configures logging and the process's suppression key: put both back."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    configure(b"")


def stopped_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]


async def run_and_lose_data(redis_factory, tmp_path, caplog, *, snapshot: bool):
    """A campaign dialing on a redis-server without persistence; a snapshot taken (or not) mid-campaign; then more
    calls and two opt-outs; then Redis is killed and restarted (from the snapshot, or empty). Returns what the PBX
    originated before and after the restart, the opted-out numbers and the engine's data-state."""
    caplog.set_level(logging.INFO, logger="dialer")
    (tmp_path / "redis").mkdir()
    server = redis_factory.start(persistent=False, directory=str(tmp_path / "redis"))
    client = redislib.Redis.from_url(server.url)
    phones = [p for p in numbers(40, base="+331456750") if p[-1] not in "2347"][:24]
    campaign = setup_campaign(client, tmp_path, phones)
    pbx = await start_pbx(time_scale=0.1, queues={"dialer": 3})
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(server.url, pbx, offset_clock(AT, 1.0))
            await eventually(lambda: sum(observer.by_number.values()) >= 3, timeout=30)
            if snapshot:
                client.save()  # the snapshot the server comes back from
            at_snapshot = sum(observer.by_number.values())
            await eventually(lambda: sum(observer.by_number.values()) >= at_snapshot + 3, timeout=30)
            # two people not yet called say stop in the seconds that will be lost
            called = set(observer.by_number)
            opted = [p for p in phones if p not in called][-2:]
            facts = FactStore(client)
            for phone in opted:
                facts.add_optout("acme", phone, at=AT, source="api")
            server.kill()
            # Count the Originate actions the PBX received, not the OriginateResponses: a call placed just before
            # the kill answers seconds later. An action the engine sent before the kill may still be on its way:
            # with Redis down nothing new can be claimed, so wait until the count stays still.
            before = await originates_settled(pbx)
            server.start()
            await asyncio.sleep(6.0)  # > 4 heartbeats (lease 5 s): time enough to dial again if it would
            after = pbx.pbx.originates
            stop.set()
            engine = await task
            dialed = dict(observer.by_number)
    finally:
        await pbx.stop()
        client.close()
    return server, before, after, opted, engine, campaign, dialed


async def originates_settled(pbx, quiet: float = 1.5, timeout: float = 30.0) -> int:
    """The PBX's count of Originate actions once it has not moved for `quiet` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    count, since = pbx.pbx.originates, loop.time()
    while loop.time() - since < quiet:
        assert loop.time() < deadline, "the PBX kept receiving Originates with Redis down"
        await asyncio.sleep(0.1)
        if pbx.pbx.originates != count:
            count, since = pbx.pbx.originates, loop.time()
    return count


async def test_redis_restored_from_an_older_snapshot_stops_dialing(redis_factory, tmp_path, caplog):
    server, before, after, opted, engine, _, dialed = await run_and_lose_data(redis_factory, tmp_path, caplog,
                                                                              snapshot=True)
    assert after == before  # not one Originate once Redis came back older
    assert all(n == 1 for n in dialed.values()), dialed  # nobody dialed twice
    assert not any(phone in dialed for phone in opted)  # the lost opt-outs were not dialed over
    lines = stopped_lines(caplog)
    assert len(lines) == 1, lines  # ONE line, naming what was detected
    # the counter the claims bump went back (checked before the restart itself, which the line names too)
    assert "DIALING STOPPED" in lines[0] and "went back in time" in lines[0] and "run id" in lines[0]
    assert engine.dialing_stopped()
    client = redislib.Redis.from_url(server.url)
    assert marker(client).get("halted")  # every other process, and any started later, stops too
    assert DataState(client, who="late").beat() is False
    client.close()


async def test_redis_restarted_empty_stops_dialing_and_writes_no_history(redis_factory, tmp_path, caplog):
    server, before, after, _, _, _, dialed = await run_and_lose_data(redis_factory, tmp_path, caplog,
                                                                 snapshot=False)
    assert after == before  # not one Originate once Redis came back empty
    assert all(n == 1 for n in dialed.values()), dialed
    lines = stopped_lines(caplog)
    assert len(lines) == 1, lines
    assert "Redis data vanished" in lines[0] or "Redis restarted" in lines[0], lines
    client = redislib.Redis.from_url(server.url)
    assert CampaignStore(client).list("acme") == []
    assert not list(client.scan_iter(match="t:{acme}:campaign:*:q:*"))  # no stray queue rebuilt in the empty Redis
    client.close()


def snapshot(client: redislib.Redis) -> list[tuple[bytes, int, bytes]]:
    return [(key, max(0, client.pttl(key)), client.dump(key)) for key in client.scan_iter(count=1000)]


def restore(client: redislib.Redis, saved: list[tuple[bytes, int, bytes]]) -> None:
    """The data set goes back to `saved` on the same server run (what a stale replica promoted behind the same
    address, or an operator's restore into a running server, look like): the run id does not change."""
    client.flushdb()
    for key, ttl, value in saved:
        client.restore(key, ttl, value)


def test_data_rewound_without_a_restart_is_caught_in_the_claim(redis_client):
    """Same server run (run id unchanged), so only the counter the claims bump can tell: the claim made in the
    same MULTI as the check is given back and dialing stops."""
    queue = ContactQueue(redis_client, "acme", "c1")
    queue.add([QueuedContact(f"k{i}", f"+3314567000{i}") for i in range(4)], at=AT.timestamp())
    state = DataState(redis_client, who="p1")
    assert state.beat()
    older = snapshot(redis_client)
    first = guarded_claim(state, queue, 1, owner="p1", now=AT.timestamp(), lease_until=time.time() + 20,
                          call_ids=["a"], servers=["s"])
    assert [c.contact.contact_id for c in first] == ["k0"]
    restore(redis_client, older)  # back before that claim: k0 is ready again
    assert queue.state_of("k0") == "ready"
    again = guarded_claim(state, queue, 1, owner="p1", now=AT.timestamp(), lease_until=time.time() + 20,
                          call_ids=["b"], servers=["s"])
    assert again == []  # k0 would have been called twice
    assert state.halted and "went back in time" in state.halted and "same Redis run" in state.halted
    assert queue.state_of("k0") == "ready" and queue.claims() == {}  # the claim just made was given back


def test_a_restart_that_loses_nothing_goes_on(redis_factory, tmp_path, caplog):
    """AOF with appendfsync always: a restart loses no acknowledged write; dialing goes on (a warning says so)."""
    caplog.set_level(logging.INFO, logger="dialer")
    (tmp_path / "r").mkdir()
    server = redis_factory.start(persistent=True, directory=str(tmp_path / "r"))
    client = redislib.Redis.from_url(server.url)
    assert persistence_of(client).loses_nothing
    state = DataState(client, who="p1")
    assert state.beat()
    server.kill()
    server.start()
    assert state.beat() and state.halted is None
    assert any("Redis restarted" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert not stopped_lines(caplog)
    client.close()


def test_resume_after_data_loss_needs_the_operator_and_is_audited(redis_url, redis_client, monkeypatch, capsys):
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.setenv("DIALER_SECRET_KEY", SECRET_KEY)
    redis_client.sadd("tenants", "acme", "globex")
    engine_a, engine_b = DataState(redis_client, who="a"), DataState(redis_client, who="b")
    assert engine_a.beat() and engine_b.beat()
    redis_client.hset(MARKER, "seq", 0)  # as a restore from an older snapshot would leave it
    assert engine_a.beat() is False and engine_b.beat() is False
    assert main(["runtime", "status"]) == 3
    assert "DIALING STOPPED" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["runtime", "resume", "--after-data-loss"]) == 1  # no terminal, no --yes: refused
    assert engine_a.beat() is False
    assert main(["runtime", "resume", "--after-data-loss", "--yes", "--reason", "checked the lost calls"]) == 0
    assert engine_a.beat() and engine_b.beat()  # both adopt the confirmed data set
    assert DataState(redis_client, who="new").beat()
    for tenant in ("acme", "globex"):
        entries = [e for e in AuditLog(redis_client, SECRET_KEY).entries(tenant) if e.kind == "runtime_resume"]
        assert len(entries) == 1
        assert entries[0].payload["reason"] == "checked the lost calls"
        assert "went back in time" in entries[0].payload["detected"]


def test_config_check_warns_when_redis_keeps_nothing(redis_factory, tmp_path, monkeypatch, capsys):
    bare = redis_factory.start(persistent=False)
    monkeypatch.setenv("DIALER_REDIS_URL", bare.url)
    assert main(["config", "check"]) == 0
    assert "WARNING: redis persistence: no persistence" in capsys.readouterr().out
    (tmp_path / "aof").mkdir()
    safe = redis_factory.start(persistent=True, directory=str(tmp_path / "aof"))
    monkeypatch.setenv("DIALER_REDIS_URL", safe.url)
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "redis persistence: AOF appendfsync always" in out and "WARNING" not in out
