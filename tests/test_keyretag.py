"""`dialer redis retag` (dialer/keyretag.py): a Redis of the old key layout becomes the tagged one, nothing lost."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from dialer.audit import AuditLog
from dialer.cli import main
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.contacts.store import Keys, list_member_ids
from dialer.keyretag import new_name, retag
from tests.runtime_support import SECRET_KEY, numbers


@pytest.mark.parametrize(("old", "new"), [
    (b"t:acme:p:+33612345678:att", b"t:{acme}:p:+33612345678:att"),
    (b"t:acme:audit", b"t:{acme}:audit"),
    (b"tenant:acme", b"tenant:{acme}"),
    (b"reg:bloctel:v3:chunk:12", b"reg:{bloctel}:v3:chunk:12"),
    (b"dialer:agents:a1e3fe67eadd:dialer:owner", b"dialer:agents:{a1e3fe67eadd}:dialer:owner"),
    (b"dialer:trunk:pbx1.example:5038:channels", b"dialer:trunk:{pbx1.example:5038}:channels"),
    (b"login:fail:0a1b", b"login:fail:{0a1b}"),
    (b"dialer:agentboard:sales", b"dialer:agentboard:{sales}"),
    (b"dialer:agentboard:sales:waiting", b"dialer:agentboard:{sales}:waiting"),
    (b"t:{acme}:audit", None), (b"reg:index", None), (b"tenants", None), (b"dialer:datastate", None),
    (b"dialer:trunk:identity:pbx1:5038", None), (b"token:abc", None), (b"session:abc", None),
])
def test_new_names(old: bytes, new: bytes | None) -> None:
    assert new_name(old) == new


def _untag(client) -> None:
    """Turn today's layout back into the old one (what a Redis written before issue 18 holds)."""
    for key in list(client.scan_iter(count=1000)):
        old = re.sub(rb"\{([^}]*)\}", rb"\1", key)
        if old != key:
            client.rename(key, old)


def test_an_old_redis_is_retagged_with_nothing_lost(redis_url, redis_client, tmp_path, monkeypatch, capsys) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("phone,postal_code\n" + "".join(f"{p},75011\n" for p in numbers(12)))
    ticket = create_import(redis_client, "acme", csv, "leads", region="FR")
    assert run_import_inline(redis_client, "acme", ticket.import_id)["status"] == "committed"
    audit = AuditLog(redis_client, SECRET_KEY)
    audit.append("acme", "api", "tester", {"n": 1}, datetime(2026, 3, 3, tzinfo=UTC))
    redis_client.set("t:{acme}:short", "x", ex=3000)
    redis_client.xadd("wh:outbox", {"id": "evt_1", "tenant": "acme", "type": "import.finished", "key": "k",
                                    "body": "{}"})
    redis_client.zadd("wh:due", {"acme|ep1|k": 5.0})
    before = sorted(redis_client.scan_iter(count=1000))
    _untag(redis_client)
    assert not list(redis_client.scan_iter(match="t:{*", count=1000))  # the old layout: nothing tagged
    assert not redis_client.exists(Keys("acme").list("leads"))  # today's code cannot see the list

    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.setenv("DIALER_SECRET_KEY", SECRET_KEY)
    assert main(["redis", "retag", "--dry-run"]) == 0
    assert "would rename" in capsys.readouterr().out
    assert main(["redis", "retag"]) == 0
    assert "renamed: " in capsys.readouterr().out
    assert retag(redis_client) == {}  # twice: nothing left to do

    after = sorted(redis_client.scan_iter(count=1000))
    expected = [*(k for k in before if k not in (b"wh:outbox", b"wh:due")), b"t:{acme}:wh:due", b"t:{acme}:wh:outbox"]
    assert after == sorted(expected)
    assert redis_client.hget(Keys("acme").list("leads"), "imports") == b"1"
    assert len(list(list_member_ids(redis_client, "acme", "leads"))) == 12  # its contacts: in the record
    assert audit.verify("acme").ok
    assert 0 < redis_client.ttl("t:{acme}:short") <= 3000  # time to live kept
    assert redis_client.zscore("t:{acme}:wh:due", "acme|ep1|k") == 5.0
    [(_, fields)] = redis_client.xrange("t:{acme}:wh:outbox")
    assert fields[b"id"] == b"evt_1"
