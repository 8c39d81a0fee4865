"""Sandbox PBX settings: a TOML file (`[sandbox]` tables) plus command-line overrides.

Example (docs/sandbox-pbx.md has the full reference):

    [sandbox]
    port = 5038
    username = "dialer"
    secret = "dialer-secret"
    seed = 42
    time_scale = 0.05          # 0.05: a 10 s call lasts 0.5 s
    callee_mode = "profile"    # or "last-digit" (the reference's [sim-callee] behaviours)
    ai_sessions = 2

    [sandbox.queues]           # queue name -> number of agents
    dialer = 5

    [sandbox.callee]           # CalleeProfile fields
    answer = 0.6
    ring = { kind = "lognormal", median = 6, sigma = 0.5, low = 1, high = 40 }

    [sandbox.agents]           # AgentProfile fields (human queue members)
    talk = { kind = "lognormal", median = 120, sigma = 0.6 }
    wrapup = [5, 20]

    [sandbox.ai_agents]        # AgentProfile fields (AI-agent sessions)
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dialer.sandbox.behaviour import AgentProfile, CalleeProfile, Duration, ProfileError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIALPLAN = REPO_ROOT / "asterisk" / "extensions_dialer.conf"


class SettingsError(ValueError):
    """A sandbox setting is wrong; the message names it."""


def _default_ai() -> AgentProfile:
    return AgentProfile(ring=Duration.fixed(0.2), talk=Duration.lognormal(60.0, 0.6, low=5.0, high=900.0))


@dataclass(frozen=True)
class SandboxSettings:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "dialer"
    secret: str = field(default="dialer-secret", repr=False)
    seed: int | None = None
    time_scale: float = 1.0
    callee_mode: str = "last-digit"  # "last-digit" (reference behaviours) or "profile"
    callee: CalleeProfile = field(default_factory=CalleeProfile)
    agents: AgentProfile = field(default_factory=AgentProfile)
    ai_agents: AgentProfile = field(default_factory=_default_ai)
    queues: Mapping[str, int] = field(default_factory=lambda: {"dialer": 3})
    ai_sessions: int = 2
    channelvars: tuple[str, ...] = ("DIALER_CALL_ID", "DIALER_CAMPAIGN_ID")
    dialplans: tuple[Path, ...] = (DEFAULT_DIALPLAN,)
    read: tuple[str, ...] = ("all",)  # manager.conf read= classes of the AMI user
    write: tuple[str, ...] = ("all",)  # manager.conf write= classes of the AMI user
    amd_machine_seconds: float = 2.5  # how long AMD() listens before answering MACHINE
    amd_human_seconds: float = 1.0
    # What the PBX says it is (AMI Getvar SYSTEMNAME / ENTITYID / ASTETCDIR), like asterisk.conf's systemname and
    # entityid: empty systemname by default; the entity id defaults to this machine's MAC address (two instances
    # on one machine share it, as two real Asterisks do) and the config directory is the instance's own.
    system_name: str = ""
    entity_id: str = ""
    # Share of AgentComplete events (caller hung up first) sent without channel fields, as the real PBX sometimes
    # does; 0 in the reference comparisons (the reference transcript always had them).
    bare_agent_complete: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.time_scale, (int, float)) and 0 < self.time_scale <= 1000):
            raise SettingsError(f"sandbox.time_scale: expected a positive number, got {self.time_scale!r}")
        if self.callee_mode not in ("last-digit", "profile"):
            raise SettingsError(f"sandbox.callee_mode: expected 'last-digit' or 'profile', got {self.callee_mode!r}")
        if not 0 <= self.port < 65536:
            raise SettingsError(f"sandbox.port: expected a TCP port, got {self.port!r}")
        for name, count in self.queues.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise SettingsError(f"sandbox.queues.{name}: expected a number of agents, got {count!r}")
        if sum(self.queues.values()) > 2999:
            raise SettingsError("sandbox.queues: at most 2999 agents in all")
        if not 0 <= self.bare_agent_complete <= 1:
            raise SettingsError(f"sandbox.bare_agent_complete: expected a share 0..1, got {self.bare_agent_complete!r}")
        if self.ai_sessions < 0:
            raise SettingsError("sandbox.ai_sessions: must be >= 0")
        if not self.username or not self.secret:
            raise SettingsError("sandbox.username and sandbox.secret are required")

    def with_overrides(self, **changes: Any) -> SandboxSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def scaled(self, simulated_seconds: float) -> float:
        """Wall-clock seconds for a simulated duration."""
        if math.isinf(simulated_seconds):
            return math.inf
        return max(0.0, simulated_seconds) * self.time_scale


_KEYS = {
    "host",
    "port",
    "username",
    "secret",
    "seed",
    "time_scale",
    "callee_mode",
    "ai_sessions",
    "channelvars",
    "dialplans",
    "amd_machine_seconds",
    "amd_human_seconds",
    "system_name",
    "entity_id",
    "bare_agent_complete",
    "read",
    "write",
    "queues",
    "callee",
    "agents",
    "ai_agents",
}


def load_settings(path: str | Path | None = None, base: SandboxSettings | None = None) -> SandboxSettings:
    """Settings from a TOML file's `[sandbox]` table (unknown keys are errors)."""
    settings = base or SandboxSettings()
    if path is None:
        return settings
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"sandbox config {path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"sandbox config {path}: invalid TOML: {exc}") from None
    table = doc.get("sandbox", {})
    if not isinstance(table, dict):
        raise SettingsError(f"sandbox config {path}: expected a [sandbox] table")
    unknown = set(table) - _KEYS
    if unknown:
        raise SettingsError(f"sandbox.{sorted(unknown)[0]} in {path}: unknown setting")
    changes: dict[str, Any] = {}
    try:
        for key, value in table.items():
            if key == "callee":
                changes[key] = CalleeProfile.from_mapping(value, "sandbox.callee")
            elif key in ("agents", "ai_agents"):
                changes[key] = AgentProfile.from_mapping(value, f"sandbox.{key}")
            elif key == "queues":
                changes[key] = dict(value)
            elif key in ("read", "write"):
                changes[key] = tuple(part.strip() for part in str(value).split(",") if part.strip())
            elif key == "channelvars":
                changes[key] = tuple(str(v) for v in value)
            elif key == "dialplans":
                base_dir = Path(path).parent
                changes[key] = tuple((base_dir / str(v)).resolve() for v in value)
            else:
                changes[key] = value
        return replace(settings, **changes)
    except ProfileError as exc:
        raise SettingsError(f"{exc} (in {path})") from None
    except TypeError as exc:
        raise SettingsError(f"sandbox config {path}: {exc}") from None
