"""Issue 16, fault 2: the dialing machine's clock is wrong. The engine decides on Redis's clock (its offset is
measured at each heartbeat), warns beyond runtime.clock_skew_warn_ms and stops dialing beyond
runtime.clock_skew_stop_ms. Real redis-server, real gate, sandbox PBX; the machine's clock is skewed through the
engine's injected clocks (the campaign clock and the local time it measures the offset with)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import pytest

from dialer.campaigns import CampaignStore
from dialer.config import ConfigError, load_config
from dialer.runtime.clockguard import OK, STOP, WARN, SkewLimits, assess
from dialer.runtime.engine import Engine, RuntimeSettings, build_gate
from dialer.runtime.queues import ContactQueue
from tests.runtime_support import AT, OriginateObserver, engine_config, eventually, numbers, setup_campaign
from tests.test_runtime_engine import SETTINGS, sandbox, start_pbx

FAST = timedelta(hours=3, minutes=10)


def skewed_engine(redis_url, client, pbx, clock, ahead: float) -> Engine:
    """An engine on a machine whose clock runs `ahead` seconds fast: both the campaign clock it is given and the
    local time it compares with Redis's TIME."""
    engine = Engine(client, build_gate(client, engine_config(redis_url)), [sandbox(pbx)], settings=SETTINGS,
                    clock=clock, process_id="fast")
    engine._local_time = lambda: time.time() + ahead
    return engine


async def test_a_machine_clock_hours_fast_stops_dialing_until_it_is_fixed(redis_url, redis_client, tmp_path, caplog):
    """The machine believes it is Tuesday 10:00 in Paris (calling hours); Redis's clock says 06:50. Nobody is
    dialed, one CRITICAL line says why; once the machine's clock is right again, dialing resumes."""
    caplog.set_level(logging.INFO, logger="dialer")
    phones = [p for p in numbers(12, base="+331456770") if p[-1] not in "2347"]
    campaign = setup_campaign(redis_client, tmp_path, phones)
    pbx = await start_pbx(queues={"dialer": 3})
    real = time.monotonic()

    def machine_clock():  # what this (fast) machine's wall clock reads
        return AT + timedelta(seconds=time.monotonic() - real)

    engine = skewed_engine(redis_url, redis_client, pbx, machine_clock, FAST.total_seconds())
    stop = asyncio.Event()
    try:
        async with OriginateObserver(pbx.port) as observer:
            task = asyncio.create_task(engine.run(stop))
            await asyncio.sleep(4.0)
            assert sum(observer.by_number.values()) == 0  # nobody dialed at a real 06:50
            assert ContactQueue(redis_client, "acme", campaign).counts()["inflight"] == 0
            lines = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
            assert len(lines) == 1 and "DIALING STOPPED" in lines[0], lines
            assert "is 3 h 10 min ahead of Redis's clock" in lines[0]
            assert engine.dialing_stopped()
            engine._local_time = time.time  # NTP fixed it (the simulated campaign clock stays in the hours)
            await eventually(lambda: sum(observer.by_number.values()) > 0, timeout=20)
            assert any("dialing resumes" in r.getMessage() for r in caplog.records)
            stop.set()
            await task
    finally:
        await pbx.stop()
    assert CampaignStore(redis_client).get("acme", campaign).status in ("running", "completed")


async def test_a_second_of_skew_warns_and_decides_on_redis_clock(redis_url, redis_client, tmp_path, caplog):
    """The machine's clock reads 10:00:00.5 in Paris, 1 s fast: on Redis's clock it is 09:59:59.5, before the
    French calling hours. The gate decides at Redis's instant (the contact waits for 10:00); a warning says why."""
    caplog.set_level(logging.INFO, logger="dialer")
    phones = [p for p in numbers(4, base="+331456780") if p[-1] not in "2347"]
    campaign = setup_campaign(redis_client, tmp_path, phones)
    pbx = await start_pbx(queues={"dialer": 3})
    frozen = AT + timedelta(milliseconds=500)
    engine = skewed_engine(redis_url, redis_client, pbx, lambda: frozen, 1.0)
    stop = asyncio.Event()
    queue = ContactQueue(redis_client, "acme", campaign)
    try:
        async with OriginateObserver(pbx.port) as observer:
            task = asyncio.create_task(engine.run(stop))
            await eventually(lambda: queue.counts()["waiting"] == len(phones), timeout=20)
            stop.set()
            await task
            assert sum(observer.by_number.values()) == 0
    finally:
        await pbx.stop()
    assert not engine.dialing_stopped()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Redis's clock" in
                r.getMessage()]
    assert warnings and "ahead of Redis's clock" in warnings[0]
    held = list(queue.held_entries())
    assert held
    for contact in held:
        step = queue.last_step(contact.contact_id)
        assert step["step"] == "retry" and abs(step["due"] - AT.timestamp()) < 1e-3, step  # waits for 10:00


def test_offsets_are_said_in_words_a_log_mask_leaves_alone():
    from dialer.logs import mask_phone
    from dialer.runtime.clockguard import describe

    for skew, said in ((-11400.2, "3 h 10 min ahead of"), (0.3127, "0.313 s behind"), (-61.0, "1 min 1 s ahead of")):
        assert said in describe(skew) and mask_phone(describe(skew)) == describe(skew)


def test_skew_levels_count_only_what_is_certain():
    limits = SkewLimits(0.25, 2.0)
    assert assess(0.01, 0.001, limits) == OK
    assert assess(-0.3, 0.001, limits) == WARN
    assert assess(0.3, 0.2, limits) == OK  # +-0.1 s of measurement: maybe only 0.2 s off
    assert assess(-2.5, 0.001, limits) == STOP
    assert assess(2.5, 1.2, limits) == WARN  # a slow round trip: not certainly beyond 2 s
    assert assess(-11400.0, 0.002, limits) == STOP


def test_skew_limits_are_settings():
    config = load_config(env={"DIALER_RUNTIME_CLOCK_SKEW_WARN_MS": "100", "DIALER_RUNTIME_CLOCK_SKEW_STOP_MS": "500"})
    settings = RuntimeSettings.from_config(config)
    assert (settings.clock_skew_warn, settings.clock_skew_stop) == (0.1, 0.5)
    with pytest.raises(ConfigError, match="clock_skew"):
        load_config(env={"DIALER_RUNTIME_CLOCK_SKEW_WARN_MS": "3000"})
