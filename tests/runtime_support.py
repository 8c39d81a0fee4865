"""Shared set-up for the runtime tests and bench: a tenant, a Bloctel copy, contacts imported through the real
contacts import, a started campaign, and an AMI observer counting what the PBX was asked to originate."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import redis

from dialer.ami.client import AMIClient
from dialer.campaigns import CampaignStore
from dialer.config import Config, load_config
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.pacing.abandons import RedisAbandonCounter
from dialer.registry.loader import load_registry
from dialer.runtime.engine import pbx_group_of
from dialer.runtime.identity import identity_key
from dialer.runtime.trunk import server_address

SECRET_KEY = "runtime-test-key"
PARIS = timezone(timedelta(hours=1))
# Tuesday 3 March 2026, 10:00 in Paris: inside the French weekday window 10:00-13:00, not a holiday.
AT = datetime(2026, 3, 3, 10, 0, tzinfo=PARIS)
BLOCTEL = ("+33145678999", "+33612345678")


def numbers(count: int, base: str = "+331456700") -> list[str]:
    """Valid French numbers whose last digits cycle 0-9 (the sandbox's last-digit callee behaviours)."""
    return [f"{base}{i:02d}" for i in range(count)]


def seen_group(client: redis.Redis, port: int, host: str = "127.0.0.1") -> str:
    """The pacing group of processes dialing through one server, named by the identity the server gave (engines
    publish address -> identity in Redis)."""
    identity = client.get(identity_key(server_address(host, port)))
    assert identity is not None, "no engine has read this server's identity yet"
    return pbx_group_of([identity.decode()])


def engine_config(redis_url: str) -> Config:
    return load_config(env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY})


def setup_campaign(client: redis.Redis, directory: Path, phones: list[str], *, tenant: str = "acme",
                   list_id: str = "leads", at: datetime = AT, answered_before: int = 0, **config: Any) -> str:
    """Tenant, Bloctel copy (2 days old), contacts imported as a list, campaign created and started.
    answered_before: live answers (none abandoned) the campaign already had an hour before `at`, so its legal
    window has room for an abandon and power or predictive may overdial from the start (dialer.pacing.guard's
    room-for-one-more rule holds a young campaign to calls with an agent reserved)."""
    client.sadd("tenants", tenant)
    bloctel = directory / "bloctel.txt"
    bloctel.write_text("".join("0" + p[3:] + "\n" for p in BLOCTEL))
    load_registry(client, "bloctel", bloctel, loaded_at=at - timedelta(days=2))
    csv = directory / f"{list_id}.csv"
    csv.write_text("phone,postal_code,country\n" + "".join(f"{p},75011,FR\n" for p in phones))
    ticket = create_import(client, tenant, csv, list_id, region="FR")
    status = run_import_inline(client, tenant, ticket.import_id)
    assert status["status"] == "committed", status
    settings = {"name": "spring", "caller_id": "+33162000000", "seller_name": "Acme", "lists": [list_id],
                "queue": "dialer", "pacing_mode": "progressive", **config}
    store = CampaignStore(client)
    campaign = store.create(tenant, settings, by="tester", at=at)
    store.control(tenant, campaign.id, "start", by="tester", at=at)
    counter = RedisAbandonCounter(client, tenant)
    for i in range(answered_before):
        counter.record(campaign.id, f"earlier-{i}", at.timestamp() - 3600, False)
    return campaign.id


_NUMBER = re.compile(r"(\+\d+)@")


class OriginateObserver:
    """A separate AMI session that counts OriginateResponse events per number: what the PBX really originated,
    whichever dialer process asked."""

    def __init__(self, port: int) -> None:
        self.client = AMIClient("127.0.0.1", port, "dialer", "dialer-secret", name="observer", events="call")
        self.by_number: Counter[str] = Counter()
        self.call_ids: Counter[str] = Counter()

    def _seen(self, message: Any) -> None:
        found = _NUMBER.search(message.get("Channel") or "")
        if found:
            self.by_number[found.group(1)] += 1
        self.call_ids[message.get("ActionID") or ""] += 1

    async def __aenter__(self) -> OriginateObserver:
        await self.client.connect()
        self.client.on_event(self._seen, names=["OriginateResponse"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


async def eventually(predicate: Any, timeout: float = 60.0, interval: float = 0.1) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)
