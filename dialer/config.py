"""Settings: one TOML file plus DIALER_* environment variables, validated at start.

Every setting is declared once in SETTINGS (name, type, default, environment variable).
A wrong or missing value raises ConfigError with a one-line message naming the setting;
the CLI prints that line and exits, never a traceback.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.redisconn import RedisURLError, check_url, is_cluster_url


class ConfigError(Exception):
    """A setting is missing or wrong. str(error) is one line naming the setting."""


@dataclass(frozen=True)
class Setting:
    name: str  # dotted: section.key
    kind: type
    default: Any
    env: str
    help: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting("redis.url", str, "redis://127.0.0.1:6379/0", "DIALER_REDIS_URL",
            "shared state for all processes: redis://host:port/db, or redis+cluster://host:port[,host:port...] "
            "for a Redis Cluster (docs/redis.md)"),
    Setting("redis.jobs_url", str, "", "DIALER_REDIS_JOBS_URL",
            "the plain Redis holding the RQ job queues; default: redis.url. Required when redis.url is a cluster "
            "(RQ does not run on one)"),
    Setting("gateway.host", str, "127.0.0.1", "DIALER_GATEWAY_HOST", "HTTP bind address (loopback by default)"),
    Setting("gateway.port", int, 8080, "DIALER_GATEWAY_PORT", "HTTP port"),
    Setting("gateway.max_upload_mb", int, 512, "DIALER_GATEWAY_MAX_UPLOAD_MB", "largest accepted upload"),
    Setting("gateway.upload_dir", str, "", "DIALER_GATEWAY_UPLOAD_DIR",
            "where uploads are staged (workers read them there); default: <paths.data_dir>/uploads"),
    Setting("paths.data_dir", str, "", "DIALER_DATA_DIR",
            "private directory for staged uploads and exports (0700); default: $XDG_DATA_HOME/dialer or "
            "~/.local/share/dialer"),
    Setting("gateway.redis_max_connections", int, 128, "DIALER_GATEWAY_REDIS_MAX_CONNECTIONS",
            "Redis connections the gateway's requests share; a request finding none free waits"),
    Setting("gateway.redis_wait_seconds", float, 10.0, "DIALER_GATEWAY_REDIS_WAIT_SECONDS",
            "how long a request waits for a free Redis connection before 503 busy (with Retry-After)"),
    Setting("gateway.max_live_streams", int, 200, "DIALER_GATEWAY_MAX_LIVE_STREAMS",
            "live dashboard streams (Server-Sent Events) open at once; each holds a Redis connection"),
    Setting("gateway.auth_failures_per_minute", int, 20, "DIALER_GATEWAY_AUTH_FAILURES_PER_MINUTE",
            "failed authentications per client address or token id before 429 for the rest of the minute"),
    Setting("gateway.audit_token_use_seconds", int, 3600, "DIALER_GATEWAY_AUDIT_TOKEN_USE_SECONDS",
            "a token's reads are audited on first use in each such period and counted otherwise"),
    Setting("gateway.registry_tenants", str, "", "DIALER_GATEWAY_REGISTRY_TENANTS",
            "comma-separated tenants whose admins may load the shared national registries through the API"),
    Setting("gateway.operator_tenants", str, "", "DIALER_GATEWAY_OPERATOR_TENANTS",
            "comma-separated tenants whose admins are the installation's operators: they may suspend and resume "
            "any tenant through the API (/v1/operator/...); none by default (the shell's `dialer tenant suspend` "
            "is always there)"),
    Setting("gateway.trusted_proxies", str, "", "DIALER_GATEWAY_TRUSTED_PROXIES",
            "reverse proxies (comma-separated IPs or CIDRs) whose X-Forwarded-For names the client; none by default"),
    Setting("gateway.public_origin", str, "", "DIALER_GATEWAY_PUBLIC_ORIGIN",
            "the console's address as browsers reach it (e.g. https://dialer.example.com behind a TLS proxy): "
            "https makes session cookies Secure"),
    Setting("gateway.session_idle_minutes", int, 30, "DIALER_GATEWAY_SESSION_IDLE_MINUTES",
            "a console session ends after this long without a request"),
    Setting("gateway.session_max_hours", int, 12, "DIALER_GATEWAY_SESSION_MAX_HOURS",
            "a console session ends this long after sign-in, active or not"),
    Setting("gateway.login_max_failures", int, 5, "DIALER_GATEWAY_LOGIN_MAX_FAILURES",
            "failed sign-ins on one email (within the lockout time) before it is locked out"),
    Setting("gateway.login_lockout_minutes", int, 15, "DIALER_GATEWAY_LOGIN_LOCKOUT_MINUTES",
            "how long a locked-out email stays locked"),
    Setting("record.url", str, "", "DIALER_RECORD_URL",
            "the record that lasts years (audit archive, call records, consent and opt-out logs): "
            "postgresql://user@host:port/db, or sqlite:///path (default: sqlite in <paths.data_dir>/record.db)"),
    Setting("record.pool_size", int, 8, "DIALER_RECORD_POOL_SIZE", "PostgreSQL connections per process"),
    Setting("record.redis_tail_hours", float, 24.0, "DIALER_RECORD_REDIS_TAIL_HOURS",
            "archived audit entries younger than this stay in Redis too (the gate helper and access requests "
            "read recent ones there); older ones are trimmed from Redis once the record holds them"),
    Setting("record.window", int, 2000, "DIALER_RECORD_WINDOW",
            "contacts per campaign held in Redis at a time, read from the record's contact store and refilled as "
            "calls drain it (docs/record.md); 0: each campaign's whole list is queued in Redis at once"),
    Setting("log.level", str, "INFO", "DIALER_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"),
    Setting("rules.packs_dir", str, "", "DIALER_RULES_PACKS_DIR", "extra or replacement rule packs"),
    Setting("registry.max_bad_share", float, 0.01, "DIALER_REGISTRY_MAX_BAD_SHARE", "refuse a load above this"),
    Setting("imports.max_bad_share", float, 0.5, "DIALER_IMPORTS_MAX_BAD_SHARE",
            "stop a contact import (nothing imported) when more than this share of its rows is bad "
            "(judged from 10,000 rows on)"),
    Setting("registry.max_shrink_share", float, 0.2, "DIALER_REGISTRY_MAX_SHRINK_SHARE",
            "refuse a full load removing more than this share of the live version (unless forced)"),
    Setting("security.secret_key", str, "", "DIALER_SECRET_KEY", "key for suppression hashes and tokens"),
    Setting("worker.queues", str, "imports,registry,exports,retention", "DIALER_WORKER_QUEUES", "RQ queues"),
    Setting("runtime.dial_template", str, "PJSIP/{number}@trunk", "DIALER_RUNTIME_DIAL_TEMPLATE",
            "Originate Channel; {number} is the E.164 number, {digits} the same without +"),
    Setting("runtime.trunk_channels", int, 0, "DIALER_RUNTIME_TRUNK_CHANNELS",
            "channel limit of each server's trunk (0: no limit)"),
    Setting("runtime.calls_per_second", float, 0.0, "DIALER_RUNTIME_CALLS_PER_SECOND",
            "Originates per second per server (0: no limit)"),
    Setting("runtime.ring_timeout", int, 30, "DIALER_RUNTIME_RING_TIMEOUT", "seconds a call rings (>= 15)"),
    Setting("runtime.unknown_cooloff_minutes", int, 1440, "DIALER_RUNTIME_UNKNOWN_COOLOFF",
            "wait before retrying a call whose outcome is unknown, as after an answered call (a campaign's "
            "retry_rules.unknown can only lengthen it)"),
    Setting("runtime.lease_seconds", float, 20.0, "DIALER_RUNTIME_LEASE_SECONDS",
            "a dead process's claims and campaigns are taken over after this long"),
    Setting("runtime.ai_sessions", int, 2, "DIALER_RUNTIME_AI_SESSIONS", "AI-agent sessions per server"),
    Setting("runtime.clock_skew_warn_ms", int, 250, "DIALER_RUNTIME_CLOCK_SKEW_WARN_MS",
            "warn when this machine's clock is this far from Redis's"),
    Setting("runtime.clock_skew_stop_ms", int, 2000, "DIALER_RUNTIME_CLOCK_SKEW_STOP_MS",
            "stop dialing when this machine's clock is this far from Redis's"),
    Setting("runtime.wrapup_seconds", float, 5.0, "DIALER_RUNTIME_WRAPUP_SECONDS",
            "the queues' wrapuptime (queues.conf; AMI does not report it): an agent is not free for this long after "
            "each call (asterisk/queues.conf.sample: 5)"),
    Setting("runtime.queue_wrapup", str, "", "DIALER_RUNTIME_QUEUE_WRAPUP",
            "per-queue wrapuptime where it differs: queue=seconds,queue=seconds"),
    Setting("webhooks.allow_http", bool, False, "DIALER_WEBHOOKS_ALLOW_HTTP",
            "accept plain http:// webhook endpoints (tests, closed networks only)"),
    Setting("webhooks.allow_private_addresses", bool, False, "DIALER_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES",
            "deliver webhooks to loopback, private and link-local addresses (tests, closed networks only)"),
    Setting("webhooks.retry_hours", float, 26.0, "DIALER_WEBHOOKS_RETRY_HOURS",
            "how long a failing delivery is retried before the dead-letter list (at least 24)"),
    Setting("webhooks.timeout_seconds", float, 10.0, "DIALER_WEBHOOKS_TIMEOUT_SECONDS", "one delivery attempt"),
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class AsteriskServer:
    """One Asterisk (or sandbox PBX) the dialer talks to over AMI."""

    name: str
    host: str
    port: int
    username: str
    secret: str = field(repr=False)  # never printed
    auth: str = "md5"  # "md5" (challenge) or "plain"
    trunk_channels: int | None = None  # this server's trunk; None: runtime.trunk_channels
    calls_per_second: float | None = None  # None: runtime.calls_per_second


@dataclass(frozen=True)
class Config:
    values: dict[str, Any]
    asterisk: tuple[AsteriskServer, ...] = ()
    source: str = "defaults"
    oidc: tuple[Any, ...] = ()  # the console's single sign-on providers (gateway/oidc_config.py OidcProvider)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def redis_url(self) -> str:
        return self.values["redis.url"]

    @property
    def jobs_url(self) -> str:
        """Where RQ's queues live: redis.jobs_url, else redis.url (then a plain Redis; see _check)."""
        return self.values["redis.jobs_url"] or self.values["redis.url"]


def _coerce(setting: Setting, raw: Any, origin: str) -> Any:
    where = f"{setting.name} (from {origin})"
    if setting.kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"setting {where}: expected true or false, got {raw!r}")
    if setting.kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"setting {where}: expected an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {where}: expected an integer, got {raw!r}") from None
    if setting.kind is float:
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {where}: expected a number, got {raw!r}") from None
    if not isinstance(raw, str):
        raise ConfigError(f"setting {where}: expected a string, got {raw!r}")
    return raw


def _check(values: dict[str, Any]) -> None:
    try:
        check_url(values["redis.url"])
    except RedisURLError as exc:
        raise ConfigError(f"setting redis.url: {exc}") from None
    if values["redis.jobs_url"]:
        if is_cluster_url(values["redis.jobs_url"]):
            raise ConfigError("setting redis.jobs_url: RQ does not run on a Redis Cluster; name a plain Redis "
                              "(redis://host:port/db)")
        try:
            check_url(values["redis.jobs_url"])
        except RedisURLError as exc:
            raise ConfigError(f"setting redis.jobs_url: {exc}") from None
    elif is_cluster_url(values["redis.url"]):
        raise ConfigError("setting redis.jobs_url is required when redis.url is a Redis Cluster: RQ's queues live "
                          "on a plain Redis (docs/redis.md)")
    if not 0 < values["gateway.port"] < 65536:
        raise ConfigError(f"setting gateway.port: {values['gateway.port']} is not a TCP port")
    if values["log.level"].upper() not in LOG_LEVELS:
        raise ConfigError(f"setting log.level: expected one of {', '.join(LOG_LEVELS)}")
    if not 0 <= values["registry.max_bad_share"] <= 1:
        raise ConfigError("setting registry.max_bad_share: expected a share between 0 and 1")
    if not 0 <= values["imports.max_bad_share"] <= 1:
        raise ConfigError("setting imports.max_bad_share: expected a share between 0 and 1")
    if not 0 <= values["registry.max_shrink_share"] <= 1:
        raise ConfigError("setting registry.max_shrink_share: expected a share between 0 and 1")
    for name in ("gateway.session_idle_minutes", "gateway.session_max_hours", "gateway.login_max_failures",
                 "gateway.login_lockout_minutes"):
        if values[name] <= 0:
            raise ConfigError(f"setting {name}: expected a positive whole number")
    try:
        from gateway.proxies import parse_trusted

        parse_trusted(values["gateway.trusted_proxies"])
    except ValueError as exc:
        raise ConfigError(f"setting gateway.trusted_proxies: {exc}") from None
    origin = values["gateway.public_origin"]
    if origin and not origin.startswith(("http://", "https://")):
        raise ConfigError("setting gateway.public_origin: expected an address starting with https:// or http://")
    if values["gateway.redis_max_connections"] < 1 or values["gateway.max_live_streams"] < 1:
        raise ConfigError("setting gateway.redis_max_connections / gateway.max_live_streams: expected at least 1")
    if values["gateway.auth_failures_per_minute"] < 1 or values["gateway.audit_token_use_seconds"] < 1:
        raise ConfigError("setting gateway.auth_failures_per_minute / gateway.audit_token_use_seconds: expected "
                          "at least 1")
    if values["gateway.redis_wait_seconds"] <= 0:
        raise ConfigError("setting gateway.redis_wait_seconds: expected a positive number of seconds")
    if values["gateway.max_upload_mb"] <= 0:
        raise ConfigError("setting gateway.max_upload_mb: expected a positive size in MB")
    if values["runtime.ring_timeout"] < 15:
        raise ConfigError("setting runtime.ring_timeout: a call rings at least 15 seconds")
    if values["webhooks.retry_hours"] < 24:
        raise ConfigError("setting webhooks.retry_hours: deliveries are retried for at least 24 hours")
    if not 0 < values["webhooks.timeout_seconds"] <= 60:
        raise ConfigError("setting webhooks.timeout_seconds: expected 0 < seconds <= 60")
    if values["runtime.lease_seconds"] < 2:
        raise ConfigError("setting runtime.lease_seconds: expected at least 2 seconds")
    if not 0 < values["runtime.clock_skew_warn_ms"] <= values["runtime.clock_skew_stop_ms"] <= 60000:
        raise ConfigError("settings runtime.clock_skew_warn_ms and clock_skew_stop_ms: expected 0 < warn <= stop "
                          "<= 60000 ms (legal hours are decided on the clock)")
    from dialer.ami.originate import dial_template_error  # (here: the AMI modules are not needed to read config)
    from dialer.runtime.agents import WrapupTable

    try:
        WrapupTable.parse(values["runtime.wrapup_seconds"], values["runtime.queue_wrapup"])
    except ValueError as exc:
        raise ConfigError(f"setting runtime.wrapup_seconds / runtime.queue_wrapup: {exc}") from None
    template_error = dial_template_error(values["runtime.dial_template"])
    if template_error:
        raise ConfigError(f"setting runtime.dial_template: {template_error}")
    from dialer.record.url import RecordUrlError, parse_record_url

    try:
        parse_record_url(values["record.url"], data_dir="/")  # the default's directory is resolved at use
    except RecordUrlError as exc:
        raise ConfigError(str(exc)) from None
    if values["record.pool_size"] < 1:
        raise ConfigError("setting record.pool_size: expected at least 1")
    if values["record.window"] < 0:
        raise ConfigError("setting record.window: expected 0 (off) or a number of contacts")
    if values["record.redis_tail_hours"] < 0:
        raise ConfigError("setting record.redis_tail_hours: expected 0 or more hours")
    packs = values["rules.packs_dir"]
    if packs and not Path(packs).is_dir():
        raise ConfigError(f"setting rules.packs_dir: {packs!r} is not a directory")


def _asterisk(entries: Any, path: str, env: dict[str, str]) -> tuple[AsteriskServer, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"setting asterisk in {path}: expected [[asterisk]] tables")
    servers = []
    for i, entry in enumerate(entries):
        where = f"asterisk[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"setting {where} in {path}: expected a table")
        unknown = set(entry) - {"name", "host", "port", "username", "secret", "secret_env", "auth",
                                 "trunk_channels", "calls_per_second"}
        if unknown:
            raise ConfigError(f"setting {where}.{sorted(unknown)[0]} in {path}: unknown setting")
        for key in ("host", "username"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f"setting {where}.{key} in {path}: required string")
        secret = entry.get("secret")
        if "secret_env" in entry:
            secret = env.get(entry["secret_env"])
            if secret is None:
                raise ConfigError(f"setting {where}.secret_env: environment variable {entry['secret_env']} is unset")
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"setting {where}.secret in {path}: required (or secret_env)")
        port = entry.get("port", 5038)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"setting {where}.port in {path}: expected a TCP port")
        auth = entry.get("auth", "md5")
        if auth not in ("md5", "plain"):
            raise ConfigError(f"setting {where}.auth in {path}: expected md5 or plain")
        channels = entry.get("trunk_channels")
        if channels is not None and (not isinstance(channels, int) or isinstance(channels, bool) or channels < 0):
            raise ConfigError(f"setting {where}.trunk_channels in {path}: expected a whole number >= 0 (0: no limit)")
        cps = entry.get("calls_per_second")
        if cps is not None and (not isinstance(cps, int | float) or isinstance(cps, bool) or cps < 0):
            raise ConfigError(f"setting {where}.calls_per_second in {path}: expected a number >= 0 (0: no limit)")
        servers.append(
            AsteriskServer(entry.get("name") or f"pbx{i + 1}", entry["host"], port, entry["username"], secret, auth,
                           channels, None if cps is None else float(cps))
        )
        if servers[-1].name in {s.name for s in servers[:-1]}:
            # the name identifies the server in Redis (claims, trunk budgets): two servers cannot share one
            raise ConfigError(f"setting {where}.name in {path}: {servers[-1].name!r} names two servers")
    return tuple(servers)


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Read the TOML file (path, else $DIALER_CONFIG, else none) and overlay DIALER_* variables."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("DIALER_CONFIG") or None
    doc: dict[str, Any] = {}
    source = "defaults"
    if path:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
        source = str(path)

    known = {s.name: s for s in SETTINGS}
    values = {s.name: s.default for s in SETTINGS}
    for section, table in doc.items():
        if section in ("asterisk", "oidc"):
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"setting {section} in {source}: expected a [{section}] table")
        for key, raw in table.items():
            name = f"{section}.{key}"
            if name not in known:
                raise ConfigError(f"setting {name} in {source}: unknown setting")
            values[name] = _coerce(known[name], raw, source)
    for setting in SETTINGS:
        if setting.env in env:
            values[setting.name] = _coerce(setting, env[setting.env], setting.env)
    values["log.level"] = values["log.level"].upper()
    _check(values)
    servers = _asterisk(doc.get("asterisk", []), source, env)
    from gateway.oidc_config import parse_providers  # (here: only a settings file with [[oidc]] needs it)

    providers = parse_providers(doc["oidc"], source, env, values["security.secret_key"]) if "oidc" in doc else ()
    return Config(values=values, asterisk=servers, source=source, oidc=providers)
