"""The registry as the gate sees it, end to end: real files loaded into a real redis-server, read through
RegistryStore by the Gate with the real US pack (16 CFR 310.4(b)(3)(iv): a copy at most 31 days old)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from dialer.gate import Gate
from dialer.registry.loader import load_registry
from dialer.registry.store import RegistryStore
from rules import load_packs
from rules.model import Campaign, Contact

PACKS = load_packs()
KEY = "registry-gate-test-key"
# Tuesday 3 March 2026, 10:00 in New York: inside the US calling hours.
AT = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
LISTED = Contact(phone="+12125551234", country="US", postal_code="10001")
FREE = Contact(phone="+12125559876", country="US", postal_code="10001")
SALES = Campaign(id="us1", tenant="t1", purpose="telemarketing", audience="consumer", voice="human",
                 caller_id="+12025550123")


def gate(client: redis.Redis) -> Gate:
    return Gate(client, PACKS, RegistryStore(client, refresh_interval=0.0), secret_key=KEY)


def load_us(client: redis.Redis, tmp_path: Path, loaded_at: datetime) -> None:
    path = tmp_path / "212.txt"
    path.write_text("212,5551234\n212,5550000\n")  # the FTC's area-code form
    load_registry(client, "us_dnc", path, loaded_at=loaded_at, force=True)


def test_a_us_registry_copy_older_than_31_days_denies_us_calls(redis_client: redis.Redis, tmp_path: Path) -> None:
    RegistryStore.forget_all()
    assert "REGISTRY_STALE" in gate(redis_client).check(FREE, SALES, AT).codes()  # never loaded: deny

    load_us(redis_client, tmp_path, AT - timedelta(days=2))
    fresh = gate(redis_client)
    assert fresh.check(FREE, SALES, AT).allowed
    listed = fresh.check(LISTED, SALES, AT)
    assert not listed.allowed and "REGISTRY_STALE" not in listed.codes()
    assert listed.codes() == ["NATIONAL_REGISTRY"]

    load_us(redis_client, tmp_path, AT - timedelta(days=32))  # the version's load date drives freshness
    stale = gate(redis_client).check(FREE, SALES, AT)
    assert not stale.allowed and "REGISTRY_STALE" in stale.codes()
    [reason] = [r for r in stale.reasons if r.code == "REGISTRY_STALE"]
    assert "us_dnc" in reason.text and "32.0 days old" in reason.text
    # 31 days is still within the rule; a day later it is not.
    load_us(redis_client, tmp_path, AT - timedelta(days=31))
    assert gate(redis_client).check(FREE, SALES, AT).allowed


def test_freshness_counts_from_when_the_file_was_obtained(redis_client: redis.Redis, tmp_path: Path) -> None:
    """Importing today a file downloaded 40 days ago must not make the copy look fresh."""
    RegistryStore.forget_all()
    path = tmp_path / "212.txt"
    path.write_text("212,5551234\n")
    load_registry(redis_client, "us_dnc", path, loaded_at=AT - timedelta(hours=1),
                  obtained_at=AT - timedelta(days=40))
    status = RegistryStore(redis_client).status("us_dnc")
    assert status is not None and status.loaded_at == AT - timedelta(hours=1)
    assert status.obtained_at == AT - timedelta(days=40) and status.copy_date == status.obtained_at
    denied = gate(redis_client).check(FREE, SALES, AT)
    assert "REGISTRY_STALE" in denied.codes()
    [reason] = [r for r in denied.reasons if r.code == "REGISTRY_STALE"]
    assert "40.0 days old" in reason.text
    # Obtained recently: fresh. Without the date, the load date counts.
    load_registry(redis_client, "us_dnc", path, loaded_at=AT - timedelta(hours=1), obtained_at=AT - timedelta(days=3))
    assert gate(redis_client).check(FREE, SALES, AT).allowed
    load_registry(redis_client, "us_dnc", path, loaded_at=AT - timedelta(hours=1))
    assert RegistryStore(redis_client).loaded_at("us_dnc") == AT - timedelta(hours=1)


def test_a_registry_only_some_audiences_need_is_not_consulted_for_the_others(redis_client, caplog) -> None:
    """A registry whose rules apply to one audience only is neither looked up nor warned about for a campaign of
    another audience (issue 14: a registry nobody needed warned 19 times in one run). The GB pack now consults TPS
    and CTPS whatever the audience (PECR reg. 21: one register), so the rule here is made up; an unusable registry a
    campaign does need is warned about once, not once a minute."""
    import logging
    from types import SimpleNamespace

    from dialer.gate import registry_audiences
    from dialer.registry.store import RegistryError

    def rule(name: str, audiences: frozenset[str] | None) -> SimpleNamespace:
        return SimpleNamespace(kind="national_registry", params={"registry": name}, audiences=audiences)

    made_up = SimpleNamespace(packs=[SimpleNamespace(rules=[rule("biz", frozenset({"business"})), rule("all", None),
                                                            rule("both", frozenset({"consumer"})),
                                                            rule("both", frozenset({"business"}))])])
    assert registry_audiences(made_up) == {"biz": frozenset({"business"}), "all": None,
                                           "both": frozenset({"consumer", "business"})}
    assert registry_audiences(PACKS)["ctps"] is None  # GB: CTPS for every audience

    class Spy:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def contains_many(self, name: str, e164s: list[str]) -> list[bool]:
            self.asked.append(name)
            if name == "ctps":
                raise RegistryError("no ctps copy loaded")
            return [False] * len(e164s)

        def loaded_at(self, name: str) -> datetime | None:
            if name == "ctps":
                raise RegistryError("no ctps copy loaded")
            return AT - timedelta(days=1)

    caplog.set_level(logging.WARNING, logger="dialer.gate")
    spy = Spy()
    checker = Gate(redis_client, PACKS, spy, secret_key=KEY)
    uk = Contact(phone="+442079460123", country="GB", postal_code="EC1A 1BB")
    consumer = Campaign(id="gb1", tenant="t1", purpose="telemarketing", audience="consumer", voice="human")
    for _ in range(5):
        assert not checker.check(uk, consumer, AT).allowed  # no usable CTPS copy: denied, fail closed
    assert "ctps" in spy.asked and "tps" in spy.asked
    warned = [r.getMessage() for r in caplog.records if "ctps" in r.getMessage()]
    assert len(warned) == 1 and "registry ctps not usable" in warned[0], warned
