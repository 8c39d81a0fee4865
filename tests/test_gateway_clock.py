"""The gateway's "now" is Redis's clock (gateway/clock.py): a gateway machine whose clock runs 3 hours fast still
decides what-if gate checks, opt-outs and consents at Redis's time."""

from __future__ import annotations

import datetime as real_datetime
from datetime import UTC, datetime, timedelta

import pytest

import gateway.api.facts
import gateway.api.gatecheck
from tests.gateway_support import start_gateway, stop_gateway


class FastClock(datetime):
    """This machine's clock, 3 hours ahead of everyone else's."""

    @classmethod
    def now(cls, tz=None):
        return real_datetime.datetime.now(tz) + timedelta(hours=3)


@pytest.fixture
def fast_machine_clock(monkeypatch):
    for module in (gateway.api.facts, gateway.api.gatecheck):
        monkeypatch.setattr(module, "datetime", FastClock)


async def redis_time(gw) -> datetime:
    seconds, micros = await gw.redis.time()
    return datetime.fromtimestamp(int(seconds) + int(micros) / 1e6, UTC)


def parsed(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_checks_and_opt_outs_are_stamped_on_redis_time(redis_url, fast_machine_clock):
    gw = await start_gateway(redis_url)
    try:
        campaign = (await gw.ready_campaign())["id"]
        sup = gw.auth("acme", "supervisor")
        before = await redis_time(gw)
        resp = await gw.client.post("/v1/gate/check", headers=sup, json={"campaign": campaign,
                                                                       "phone": "+33145678901"})
        assert resp.status == 200, await resp.text()
        at = parsed((await resp.json())["decision"]["at"])
        resp = await gw.client.post("/v1/optouts", headers=gw.auth(), json={"phone": "+33145678902",
                                                                          "source": "api"})
        assert resp.status == 201, await resp.text()
        optout_at = parsed((await resp.json())["at"])
        after = await redis_time(gw)
        for stamped in (at, optout_at):
            assert before - timedelta(seconds=1) <= stamped <= after + timedelta(seconds=1), (before, stamped)
    finally:
        await stop_gateway(gw)
