"""Campaigns: their configuration, their lifecycle, and who changed what.

A campaign moves through draft -> scheduled -> running <-> paused -> stopping -> completed -> archived.
The moves allowed are data (TRANSITIONS): an action maps each status it may start from to the status it
leads to. A move is checked and applied atomically in Redis (Lua), so two supervisors pressing "pause"
and "stop" at once cannot both win from the same status; every applied move is recorded with who did it.

Keys (tenant-owned, under t:{tenant}:):
  t:{T}:campaigns                 sorted set: campaign id -> creation time (epoch seconds)
  t:{T}:campaign:{C}              hash: id, status, config (JSON), created_at, created_by, updated_at, updated_by,
                                  version (incremented by every move and edit)
  t:{T}:campaign:{C}:control      stream: every lifecycle move (action, from, to, by, at)
Every creation, configuration change and lifecycle move, whoever makes it (the gateway, the engine's own
activate/complete, a script), is also appended to the tenant's audit trail (kind campaign_control) in the
same atomic step as the change (dialer/audit.py), so the trail cannot miss a move that happened.
Live figures the engine writes for the dashboard are in dialer/livestats.py; every move and edit also
publishes on the campaign's live-stats channel, so open dashboards show it at once.

Synchronous client (like dialer/facts.py); async callers wrap calls in asyncio.to_thread.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialer.audit import AUDIT_LUA, AuditEvent, AuditLog
from dialer.livestats import channel
from dialer.webhooks.events import emit
from rules.caller_id import valid_number
from rules.model import AUDIENCES, PURPOSES, VOICES, Campaign

STATUSES = ("draft", "scheduled", "running", "paused", "stopping", "completed", "archived")

# action -> {from status: to status}. "start" from draft goes to scheduled instead when starts_at is
# in the future (see target_status). "activate" and "complete" are the engine's moves.
TRANSITIONS: dict[str, dict[str, str]] = {
    "start": {"draft": "running", "scheduled": "running"},
    "pause": {"running": "paused"},
    "resume": {"paused": "running"},
    "stop": {"running": "stopping", "paused": "stopping", "scheduled": "completed"},
    "activate": {"scheduled": "running"},
    "complete": {"stopping": "completed", "running": "completed"},
    "archive": {"draft": "archived", "completed": "archived"},
}
CONTROL_ACTIONS = ("start", "pause", "resume", "stop", "archive")  # offered to people through the API
EDITABLE = ("draft", "scheduled", "paused")  # configuration changes allowed only in these statuses
# The legal campaign is declared before a campaign's first call: its calls count in that legal campaign's abandon
# window, and a key changed afterwards would move calls already placed into another window (or out of one), i.e.
# rewrite which rate they were placed under. A later change needs a new dialer campaign.
LEGAL_EDITABLE = ("draft", "scheduled")
ACTIVE = ("scheduled", "running", "paused", "stopping")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RETRYABLE = ("busy", "no_answer", "congestion", "failed", "abandoned", "machine", "unknown")
_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"

# The configuration as a schema (OpenAPI 3.0 subset): the gateway validates request bodies with it
# and publishes it in /v1/openapi.json.
CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "purpose": {"type": "string", "enum": list(PURPOSES), "default": "telemarketing"},
        "audience": {"type": "string", "enum": list(AUDIENCES), "default": "consumer"},
        "voice": {"type": "string", "enum": list(VOICES), "default": "human",
                  "description": "artificial covers AI voice agents and prerecorded messages"},
        "recording": {"type": "boolean", "default": False},
        "amd": {"type": "boolean", "default": False,
                "description": "answering-machine detection (app_amd) before the call goes on: a machine is hung up "
                               "and recorded as `machine`"},
        "contract_related": {"type": "boolean", "default": False,
                             "description": "the calls are made in the performance of the called person's ongoing "
                                            "contract and relate to its object (France, C. consom. L.223-1)"},
        "pacing_mode": {"type": "string", "enum": ["progressive", "power", "predictive", "agentless"],
                        "default": "progressive"},
        "pacing_ratio": {"type": "number", "minimum": 1, "maximum": 20, "default": 2,
                         "description": "lines per free agent in power mode (ignored by the other modes); 1 is "
                                        "progressive"},
        "abandon_cap": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.03,
                        "description": "share of answered calls abandoned, e.g. 0.03"},
        "abandon_guard_minutes": {"type": "integer", "minimum": 0, "maximum": 1440, "default": 0,
                                  "description": "short-window guard: keep the abandon rate at or under the cap "
                                                 "(or abandon_guard_cap) over any window of this many minutes, "
                                                 "e.g. 60 for 'never above 3% in any hour'; 0: off"},
        "abandon_guard_cap": {"type": "number", "minimum": 0, "maximum": 1,
                              "description": "the short-window guard's ceiling (default: abandon_cap)"},
        "pacing_weight": {"type": "number", "minimum": 0.01, "maximum": 100, "default": 1,
                          "description": "share of agents shared with other campaigns of the same priority, in "
                                         "proportion to this weight when they want more than there is"},
        "legal_campaign": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$",
                           "description": "the calling campaign in law this campaign belongs to (same seller, same "
                                          "offer), for the abandon cap: campaigns with the same key share one abandon "
                                          "window and its room under the cap. Whether campaigns are one in law is "
                                          "for your counsel to decide (docs/pacing.md, Legal campaigns); absent: the "
                                          "campaign is its own"},
        "pacing_priority": {"type": "integer", "minimum": -9, "maximum": 9, "default": 0,
                            "description": "campaigns with a higher priority are served first on shared agents "
                                           "(like VICIdial's campaign rank)"},
        "schedule_windows": {
            "type": "array",
            "maxItems": 50,
            "description": "the campaign's own calling windows, in the called party's local time; the gate's "
                           "legal hours apply on top",
            "items": {
                "type": "object",
                "required": ["days", "start", "end"],
                "additionalProperties": False,
                "properties": {
                    "days": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(DAYS)}},
                    "start": {"type": "string", "pattern": _HHMM},
                    "end": {"type": "string", "pattern": _HHMM},
                },
            },
        },
        "starts_at": {"type": "string", "format": "date-time", "nullable": True},
        "time_zone": {"type": "string", "maxLength": 64,
                      "description": "the campaign's local time (IANA zone, e.g. Europe/Paris): the console shows its "
                                     "hourly figures in it; calling hours always follow each called person's zone"},
        "caller_id": {"type": "string", "pattern": r"^\+[1-9][0-9]{6,14}$",
                      "description": "E.164, shown to the called person; the gate checks it per jurisdiction (France: "
                                     "ARCEP canvassing ranges; docs/gate.md, CALLER_ID_NOT_ALLOWED)"},
        "seller_name": {"type": "string", "maxLength": 200},
        "info_message": {"type": "string", "pattern": r"^[A-Za-z0-9_/-]{1,100}$", "description": "sound name"},
        "agent_kind": {"type": "string", "enum": ["queue", "ai"], "default": "queue"},
        "queue": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,80}$"},
        "ai_endpoint": {"type": "string", "maxLength": 300},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 50, "default": 3},
        "retry_rules": {
            "type": "object",
            "additionalProperties": False,
            "description": "minutes to wait before retrying, per disposition; absent: that disposition is not retried",
            "properties": {d: {"type": "integer", "minimum": 1, "maximum": 43200} for d in RETRYABLE},
        },
        "lists": {"type": "array", "maxItems": 100, "items": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}},
    },
}
DEFAULTS = {k: v["default"] for k, v in CONFIG_SCHEMA["properties"].items() if "default" in v}


class CampaignError(ValueError):
    """A move or change the campaign's state does not allow. `code` is stable, `field` and `rule` (which check the
    field failed, stable too: the console words it in its user's language) optional."""

    def __init__(self, code: str, message: str, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.code, self.field, self.rule = code, field, rule


# The rule a configuration problem breaks, by the field it names (its base name, without [i] or .part).
PROBLEM_RULES = {"caller_id": "phone_number", "time_zone": "time_zone", "schedule_windows": "window_order"}


def _problem(code: str, field: str, text: str, rule: str | None = None) -> CampaignError:
    base = field.split("[")[0].split(".")[0]
    return CampaignError(code, f"{field}: {text}", field, rule or PROBLEM_RULES.get(base))


# --- pure rules -------------------------------------------------------------------------------

def known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return "/" in name or name == "UTC"  # not a bare abbreviation such as "CET"


def config_problems(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Cross-field problems the schema cannot express: (field, text)."""
    problems = []
    caller_id = config.get("caller_id")
    if caller_id and not valid_number(caller_id):
        problems.append(("caller_id", "not a valid phone number (E.164, e.g. +33162000000)"))
    zone = config.get("time_zone")
    if zone and not known_zone(zone):
        problems.append(("time_zone", f"{zone!r} is not a time zone name (an IANA name such as Europe/Paris)"))
    for i, window in enumerate(config.get("schedule_windows", [])):
        if window["start"] >= window["end"]:
            problems.append((f"schedule_windows[{i}].end", "must be later than start (windows do not cross midnight)"))
    return problems


def start_problems(config: dict[str, Any]) -> list[tuple[str, str]]:
    """What a campaign lacks before it may start: (field, text). Empty when it may start."""
    problems = []
    if not config.get("caller_id"):
        problems.append(("caller_id", "a campaign needs a caller id to start"))
    if config.get("purpose", "telemarketing") == "telemarketing" and not config.get("seller_name"):
        problems.append(("seller_name", "a telemarketing campaign must name the seller"))
    if not config.get("lists"):
        problems.append(("lists", "attach at least one list"))
    if config.get("agent_kind", "queue") == "queue" and not config.get("queue"):
        problems.append(("queue", "agent_kind queue needs a queue name"))
    if config.get("agent_kind") == "ai" and not config.get("ai_endpoint"):
        problems.append(("ai_endpoint", "agent_kind ai needs an AI endpoint"))
    return problems + config_problems(config)


def target_status(action: str, status: str, config: dict[str, Any], at: datetime) -> str | None:
    """The status `action` leads to from `status`, or None when the move is not allowed."""
    to = TRANSITIONS.get(action, {}).get(status)
    starts_at = config.get("starts_at")
    if action == "start" and status == "draft" and starts_at and _instant(starts_at) > at:
        return "scheduled"
    return to


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- keys -------------------------------------------------------------------------------------

def campaigns_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:campaigns"


def campaign_key(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}"


def control_key(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:control"


# Apply a move only if the status is still the one the decision was made from, and audit it in the same
# script. KEYS: campaign, control stream, audit stream, audit head. ARGV: from, to, action, at, by, channel,
# then the audit entry (5 fields).
_MOVE = AUDIT_LUA + """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {0, ''} end
if cur ~= ARGV[1] then return {0, cur} end
local a = audit_open(KEYS[3], KEYS[4])
if not a then return redis.error_reply(AUDIT_LOST) end
audit_add(a, ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
audit_close(a)
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_at', ARGV[4], 'updated_by', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('XADD', KEYS[2], '*', 'action', ARGV[3], 'from', cur, 'to', ARGV[2], 'by', ARGV[5], 'at', ARGV[4])
redis.call('PUBLISH', ARGV[6], '1')
return {1, cur}
"""

# Replace the configuration only while the status is one that allows editing, and audit it in the same
# script. KEYS: campaign, audit stream, audit head. ARGV: config, at, by, channel, the audit entry (5 fields),
# then the editable statuses.
_EDIT = AUDIT_LUA + """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {0, ''} end
for i = 10, #ARGV do
  if cur == ARGV[i] then
    local a = audit_open(KEYS[2], KEYS[3])
    if not a then return redis.error_reply(AUDIT_LOST) end
    audit_add(a, ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
    audit_close(a)
    redis.call('HSET', KEYS[1], 'config', ARGV[1], 'updated_at', ARGV[2], 'updated_by', ARGV[3])
    redis.call('HINCRBY', KEYS[1], 'version', 1)
    redis.call('PUBLISH', ARGV[4], '1')
    return {1, cur}
  end
end
return {0, cur}
"""


def control_event(campaign_id: str, action: str, from_status: str, to_status: str, by: str, at: datetime,
                  **details: Any) -> AuditEvent:
    """The audit entry of a campaign change: which campaign, what was done, from which status to which, by whom.
    Configuration changes name the fields changed, not their values."""
    return AuditEvent("campaign_control", by, {"campaign": campaign_id, "action": action, "from": from_status,
                                                "to": to_status, **details}, at)


@dataclass(frozen=True)
class StoredCampaign:
    id: str
    tenant: str
    status: str
    config: dict[str, Any]
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "created_at": self.created_at, "created_by": self.created_by,
                "updated_at": self.updated_at, "updated_by": self.updated_by, **self.config}

    def gate_campaign(self) -> Campaign:
        """The campaign as the gate sees it (rules.model.Campaign)."""
        c = self.config
        # A call answered by an AI voice agent is an artificial voice (FCC 24-17), whatever `voice` says: the
        # gate must apply the artificial-voice consent rules to it (fail closed on a campaign left at the default).
        voice = "artificial" if c.get("agent_kind") == "ai" else c.get("voice", "human")
        # every pacing mode selects and dials the numbers itself: state "automated system" consent laws apply
        return Campaign(id=self.id, tenant=self.tenant, purpose=c.get("purpose", "telemarketing"),
                        audience=c.get("audience", "consumer"), voice=voice,
                        recording=bool(c.get("recording", False)), dialing=c.get("pacing_mode", "progressive"),
                        contract_related=bool(c.get("contract_related", False)),
                        caller_id=str(c.get("caller_id") or ""))  # none configured: masked, denied


def forget_loader_index(client: Any, tenant: str, campaign_id: str) -> None:
    """The whole-list loader's `known` (contact ids queued) and `phones` (number -> contact id) of a campaign that
    completed (or was archived): they serve only to load more contacts without queueing one twice, and to file a
    leaving contact's final (dialer/runtime/queues.py); a completed campaign does neither again (completed is final,
    and the engine completes a campaign only with nothing in flight). A process that dies before this leaves them
    to retention (dialer.retention.FINISHED_QUEUE_PARTS).

    A stopped campaign completes with contacts still queued (ready or waiting, never dialed): an erasure of one
    of them files its final by `known` (in `final`; without it, in `leaving`, which nothing moves for a completed
    campaign). Those keep the index until retention removes them all together."""
    from dialer.runtime.queues import ContactQueue, queue_prefix

    held = ContactQueue(client, tenant, campaign_id).counts()
    if held["ready"] or held["waiting"] or held["inflight"]:
        return
    p = queue_prefix(tenant, campaign_id)
    client.unlink(p + "known", p + "phones")


class CampaignStore:
    """Campaign records in Redis (synchronous client, decode_responses=True or bytes both work)."""

    def __init__(self, client: Any) -> None:
        self.redis = client
        self._move = client.register_script(_MOVE)
        self._edit = client.register_script(_EDIT)
        self._audit = AuditLog(client)

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else value

    def _parse(self, tenant: str, raw: dict[Any, Any]) -> StoredCampaign | None:
        if not raw:
            return None
        data = {self._text(k): self._text(v) for k, v in raw.items()}
        return StoredCampaign(id=data["id"], tenant=tenant, status=data["status"], config=json.loads(data["config"]),
                              created_at=data.get("created_at", ""), created_by=data.get("created_by", ""),
                              updated_at=data.get("updated_at", ""), updated_by=data.get("updated_by", ""))

    def create(self, tenant: str, config: dict[str, Any], *, by: str, at: datetime) -> StoredCampaign:
        """Store a new draft. `config` must already be schema-valid; defaults are filled in."""
        problems = config_problems(config)
        if problems:
            raise _problem("invalid_field", *problems[0])
        campaign_id = "c" + secrets.token_hex(6)
        full = {**DEFAULTS, **config}
        stamp = _stamp(at)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(campaign_key(tenant, campaign_id), mapping={
            "id": campaign_id, "status": "draft", "version": 1, "config": json.dumps(full, sort_keys=True),
            "created_at": stamp, "created_by": by, "updated_at": stamp, "updated_by": by,
        })
        pipe.zadd(campaigns_key(tenant), {campaign_id: at.timestamp()})
        pipe.xadd(control_key(tenant, campaign_id), {"action": "create", "from": "", "to": "draft", "by": by,
                                                     "at": stamp})
        legal = {"legal_campaign": {"from": None, "to": full["legal_campaign"]}} if full.get("legal_campaign") else {}
        self._audit.queue(pipe, tenant, [control_event(campaign_id, "create", "", "draft", by, at,
                                                       config=sorted(full), **legal)])
        pipe.execute()
        created = self.get(tenant, campaign_id)
        assert created is not None
        return created

    def get(self, tenant: str, campaign_id: str) -> StoredCampaign | None:
        return self._parse(tenant, self.redis.hgetall(campaign_key(tenant, campaign_id)))

    def ids(self, tenant: str) -> list[str]:
        return [self._text(x) for x in self.redis.zrange(campaigns_key(tenant), 0, -1)]

    def list(self, tenant: str, status: str | None = None) -> list[StoredCampaign]:
        pipe = self.redis.pipeline(transaction=False)
        for campaign_id in self.ids(tenant):
            pipe.hgetall(campaign_key(tenant, campaign_id))
        found = [c for c in (self._parse(tenant, raw) for raw in pipe.execute()) if c]
        return [c for c in found if status is None or c.status == status]

    def update(self, tenant: str, campaign_id: str, changes: dict[str, Any], *, by: str,
               at: datetime) -> StoredCampaign:
        """Merge `changes` (schema-valid) into the configuration; null removes an optional field."""
        current = self.get(tenant, campaign_id)
        if current is None:
            raise KeyError(campaign_id)
        merged = {**current.config, **changes}
        merged = {**DEFAULTS, **{k: v for k, v in merged.items() if v is not None}}  # null: back to default
        problems = config_problems(merged)
        if problems:
            raise _problem("invalid_field", *problems[0])
        changed = sorted(k for k in {*current.config, *merged} if current.config.get(k) != merged.get(k))
        # Which legal campaign shares this one's abandon window is a legal declaration: the trail keeps its values
        # (a key, not personal data), not just the field's name.
        legal = {"legal_campaign": {"from": current.config.get("legal_campaign"), "to": merged.get("legal_campaign")}
                 } if "legal_campaign" in changed else {}
        event = control_event(campaign_id, "configure", current.status, current.status, by, at, changed=changed,
                              **legal)
        editable = LEGAL_EDITABLE if legal else EDITABLE  # checked in the edit script, atomically with the write
        ok, status = self._edit(keys=[campaign_key(tenant, campaign_id), *AuditLog.keys(tenant)],
                                args=[json.dumps(merged, sort_keys=True), _stamp(at), by, channel(tenant, campaign_id),
                                      *event.argv(), *editable])
        if not ok:
            if not status:
                raise KeyError(campaign_id)
            if legal and self._text(status) in EDITABLE:
                raise CampaignError("legal_campaign_fixed", "the legal campaign is declared before a campaign's first "
                                    "call (its calls count in that legal campaign's abandon window); create a new "
                                    "campaign to declare another", field="legal_campaign")
            raise CampaignError("not_editable", f"a {self._text(status)} campaign cannot be changed; pause it first")
        updated = self.get(tenant, campaign_id)
        assert updated is not None
        return updated

    def control(self, tenant: str, campaign_id: str, action: str, *, by: str, at: datetime) -> StoredCampaign:
        """Apply a lifecycle action; raises KeyError (no such campaign) or CampaignError (not allowed now)."""
        if action not in TRANSITIONS:
            raise CampaignError("unknown_action", f"unknown action {action}")
        current = self.get(tenant, campaign_id)
        if current is None:
            raise KeyError(campaign_id)
        to = target_status(action, current.status, current.config, at)
        if to is None:
            raise CampaignError("bad_transition", f"cannot {action} a {current.status} campaign")
        if action == "start":
            problems = start_problems(current.config)
            if problems:
                field, text = problems[0]
                missing = (field, text) not in config_problems(current.config)  # absent, not wrong
                raise _problem("campaign_incomplete", field, text, f"needs_{field}" if missing else None)
        event = control_event(campaign_id, action, current.status, to, by, at)
        ok, seen = self._move(keys=[campaign_key(tenant, campaign_id), control_key(tenant, campaign_id),
                                    *AuditLog.keys(tenant)],
                              args=[current.status, to, action, _stamp(at), by, channel(tenant, campaign_id),
                                    *event.argv()])
        if not ok:
            if not seen:
                raise KeyError(campaign_id)
            raise CampaignError("bad_transition", f"the campaign changed to {self._text(seen)} meanwhile; try again")
        if to in ("completed", "archived"):
            forget_loader_index(self.redis, tenant, campaign_id)
        moved = self.get(tenant, campaign_id)
        assert moved is not None
        emit(self.redis, tenant, "campaign.state_changed", f"campaign:{campaign_id}",
             {"campaign": campaign_id, "action": action, "from": current.status, "to": to, "by": by}, at)
        return moved

    def history(self, tenant: str, campaign_id: str, count: int = 100) -> list[dict[str, str]]:
        """The latest lifecycle moves, newest first."""
        entries = self.redis.xrevrange(control_key(tenant, campaign_id), count=count)
        return [{self._text(k): self._text(v) for k, v in fields.items()} for _, fields in entries]
