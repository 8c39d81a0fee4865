"""The slot audit itself (tests/slot_audit.py) sees what a Redis Cluster would refuse, and only that."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis

from tests.slot_audit import SlotAudit, known_scripts


def test_the_audit_flags_cross_slot_scripts_and_transactions(redis_url: str) -> None:
    url = urlsplit(redis_url)
    client = redis.Redis.from_url(redis_url)
    with SlotAudit(url.hostname or "127.0.0.1", url.port or 6379) as audit:
        builds = client.register_script("redis.call('SET', KEYS[1], 1) return redis.call('GET', ARGV[1])")
        builds(keys=["t:{a}:x"], args=["t:{a}:y"])  # built inside, same tag: fine
        builds(keys=["t:{a}:x"], args=["t:{b}:y"])  # built inside, another slot: flagged
        client.eval("return redis.call('GET', 't:{a}:z')", 0)  # touches a key, declares none: flagged
        pipe = client.pipeline(transaction=True)
        pipe.set("t:{a}:1", 1)
        pipe.set("t:{a}:2", 2)
        pipe.execute()  # one slot: fine
        pipe = client.pipeline(transaction=True)
        pipe.set("t:{a}:1", 1)
        pipe.set("t:{b}:2", 2)
        pipe.execute()  # two slots: flagged
    problems = audit.problems()
    assert len(problems) == 3, problems
    assert any("keys in 2 hash slots" in p and "t:{b}:y" in p for p in problems)
    assert any("declares none" in p for p in problems)
    assert any(p.startswith("MULTI: keys in 2 hash slots") for p in problems)
    client.close()


def test_known_scripts_finds_our_lua() -> None:
    names = set(known_scripts().values())
    assert {"dialer.gate._RESERVE", "dialer.gate._READ", "dialer.contacts.store.FINALIZE",
            "dialer.runtime.datastate._CHECK"} <= names


def test_no_tenant_key_is_built_without_its_hash_tag() -> None:
    """Every tenant key is `t:{T}:...` (docs/redis.md): an f-string `t:{tenant}:` (one pair of braces: no tag)
    would put the key in another cluster slot than the tenant's, and a script or MULTI with it would fail there.
    Same for the tenant record, registry, agent pool, trunk and agent board keys."""
    import re
    from pathlib import Path

    untagged = re.compile(r'f"(t|tenant|reg|dialer:agents|dialer:trunk|dialer:agentboard):\{(?!\{)[^}]*\}')
    allowed = re.compile(r'f"(reg:\{name\}:changed|dialer:trunk:identity)')  # a pub/sub channel; a single key
    root = Path(__file__).resolve().parent.parent
    found = [f"{path.relative_to(root)}:{n}: {line.strip()}"
             for package in ("dialer", "gateway") for path in sorted((root / package).rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if untagged.search(line) and not allowed.search(line)]
    assert found == [], found
