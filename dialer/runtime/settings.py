"""The runtime's settings (`RuntimeSettings`, from the config's runtime.* values), each server's trunk ceilings
(`trunk_of`) and the clocks the engine can be given (`wall_clock`, `offset_clock`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dialer.config import AsteriskServer, Config
from dialer.runtime.agents import WrapupTable
from dialer.runtime.trunk import Trunk, server_address

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


def offset_clock(start: datetime, speed: float = 1.0) -> Clock:
    """A clock that starts at `start` and advances `speed` times as fast as the wall clock (a testing and demo
    aid: run a French campaign at a Paris weekday 10:00 whatever the real time)."""
    if start.tzinfo is None:
        raise ValueError("the clock start needs a time zone offset")
    origin = time.monotonic()

    def now() -> datetime:
        return start + timedelta(seconds=(time.monotonic() - origin) * speed)

    return now


@dataclass(frozen=True)
class RuntimeSettings:
    dial_template: str = "PJSIP/{number}@trunk"
    trunk_channels: int = 0  # per server (an [[asterisk]] table's own value wins); 0: no limit
    calls_per_second: float = 0.0  # per server (likewise); 0: no limit
    ring_timeout: int = 30
    unknown_cooloff: timedelta = timedelta(hours=24)  # as long as an answered call's (the call may have been one)
    lease_seconds: float = 20.0
    ai_sessions: int = 2
    tick_seconds: float = 0.1
    agent_poll_seconds: float = 1.0
    stats_seconds: float = 1.0
    recover_seconds: float = 1.0
    reload_seconds: float = 60.0
    window: int = 2000  # contacts per campaign window read from the record (dialer/runtime/window.py); 0: whole lists
    window_seconds: float = 1.0  # how often a window below half full is topped up
    campaigns_seconds: float = 0.5
    drain_seconds: float = 60.0  # how long a clean shutdown waits for calls in flight
    max_batch: int = 256  # contacts claimed and decided per campaign per tick
    tenants: tuple[str, ...] = ()  # empty: every tenant of the `tenants` set
    clock_skew_warn: float = 0.25  # seconds between this machine's clock and Redis's (dialer/runtime/clockguard.py)
    clock_skew_stop: float = 2.0
    wrapup: WrapupTable = field(default_factory=WrapupTable)  # queues' wrapuptime (dialer/runtime/agents.py)

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> RuntimeSettings:
        values = dict(
            dial_template=config["runtime.dial_template"], trunk_channels=config["runtime.trunk_channels"],
            calls_per_second=config["runtime.calls_per_second"], ring_timeout=config["runtime.ring_timeout"],
            unknown_cooloff=timedelta(minutes=config["runtime.unknown_cooloff_minutes"]),
            lease_seconds=config["runtime.lease_seconds"], ai_sessions=config["runtime.ai_sessions"],
            clock_skew_warn=config["runtime.clock_skew_warn_ms"] / 1000,
            clock_skew_stop=config["runtime.clock_skew_stop_ms"] / 1000, window=config["record.window"],
            wrapup=WrapupTable.parse(config["runtime.wrapup_seconds"], config["runtime.queue_wrapup"]))
        values.update(overrides)
        return cls(**values)

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.5, self.lease_seconds / 4)


def trunk_of(server: AsteriskServer, settings: RuntimeSettings) -> Trunk:
    """A server's trunk ceilings: its [[asterisk]] table's own values, else the runtime.* ones."""
    channels = server.trunk_channels if server.trunk_channels is not None else settings.trunk_channels
    cps = server.calls_per_second if server.calls_per_second is not None else settings.calls_per_second
    return Trunk(server_address(server.host, server.port), channels, cps, settings.ai_sessions)
