"""Data-subject requests as a register with legal deadlines: received, forwarded, done or refused (issue 19).

dialer/privacy.py carries a request out (access, rectification, erasure); this module keeps the request itself:
when it came, what it asks, which regime's deadline applies (dialer/data/subject_requests.toml, counsel's
table: GDPR one month extendable by two with a reason, CCPA 45 days; forwarded to the client within 12 business
days), its state, and who moved it. Reminders before the deadline and an alert once it is overdue go out as
webhooks (subject_request.reminder, subject_request.overdue), each once (dialer/webhooks/events.emit_once), from
`sweep` (run by `dialer webhooks` every few minutes and by `dialer subject-requests sweep`).

Keys (tenant T):
  t:{T}:dsr            hash  request id -> JSON record (kept as evidence; no phone number: a keyed reference and
                             the masked number, like the audit trail)
  t:{T}:dsr:open       zset  id -> deadline (epoch) of requests not yet done or refused
  t:{T}:dsr:alerts     hash  "<id>:<alert>" -> event id: reminders and overdue alerts already sent
Every change is audited (kind subject_request) in the same transaction.
"""

from __future__ import annotations

import calendar
import json
import secrets
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import redis

from dialer.audit import AuditEvent, AuditLog
from dialer.webhooks.events import emit_once, queue_event

TABLE_FILE = Path(__file__).parent / "data" / "subject_requests.toml"
KINDS = ("access", "rectification", "erasure", "objection")
STATES = ("received", "forwarded", "done", "refused")
CLOSED = ("done", "refused")
MOVES = {"received": ("forwarded", "done", "refused"), "forwarded": ("done", "refused")}
ALERT_TTL = 400 * 86400


class RequestError(ValueError):
    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.code, self.field, self.message = code, field, message


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    with TABLE_FILE.open("rb") as fh:
        return tomllib.load(fh)


def regimes() -> tuple[str, ...]:
    return tuple(table()["regimes"])


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day (31 Jan + 1 month = 28/29 Feb) (pure)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_period(day: date, period: dict[str, int]) -> date:
    return add_months(day, int(period.get("months", 0))) + timedelta(days=int(period.get("days", 0)))


def add_business_days(day: date, n: int) -> date:
    """n weekdays after `day` (Monday-Friday; holidays not skipped: the earlier, safe date) (pure)."""
    out = day
    while n > 0:
        out += timedelta(days=1)
        if out.weekday() < 5:
            n -= 1
    return out


def end_of(day: date) -> datetime:
    """A deadline day runs to its end (UTC)."""
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)


def deadlines(regime: str, received: datetime) -> dict[str, str]:
    """The legal deadline and the forwarding deadline of a request received at `received` (pure)."""
    rule = table()["regimes"][regime]
    day = received.astimezone(UTC).date()
    return {"deadline": _stamp(end_of(add_period(day, rule["deadline"]))),
            "forward_by": _stamp(end_of(add_business_days(day, int(table()["forward"]["business_days"]))))}


@dataclass(frozen=True)
class Subject:
    """Who the request is about, as we may keep it: a keyed reference and the masked number, or a contact id."""

    person: str | None = None
    phone: str | None = None  # masked
    contact_id: str | None = None


def register_key(tenant: str) -> str:
    return f"t:{tenant}:dsr"


def open_key(tenant: str) -> str:
    return f"t:{tenant}:dsr:open"


def alerts_key(tenant: str) -> str:
    return f"t:{tenant}:dsr:alerts"


def _public(record: dict[str, Any], now: datetime) -> dict[str, Any]:
    out = dict(record)
    due = _instant(record["deadline"])
    out["overdue"] = record["state"] not in CLOSED and now > due
    out["forward_overdue"] = record["state"] == "received" and now > _instant(record["forward_by"])
    out["days_left"] = None if record["state"] in CLOSED else (due.date() - now.astimezone(UTC).date()).days
    return out


def record_request(client: Any, tenant: str, *, kind: str, regime: str, subject: Subject, received_at: datetime,
                   by: str, now: datetime, reference: str = "", channel: str = "") -> dict[str, Any]:
    """Record a request; its deadlines follow the regime's table. Webhook subject_request.received and the audit
    entry go in the same transaction."""
    if kind not in KINDS:
        raise RequestError("invalid_field", "kind", f"one of {', '.join(KINDS)}")
    if regime not in regimes():
        raise RequestError("invalid_field", "regime", f"one of {', '.join(regimes())}")
    if received_at > now + timedelta(minutes=5):
        raise RequestError("invalid_field", "received_at", "in the future")
    request_id = "dsr_" + secrets.token_hex(8)
    stamp = _stamp(now)
    record = {"id": request_id, "kind": kind, "regime": regime, "received_at": _stamp(received_at),
              **deadlines(regime, received_at), "state": "received", "reference": reference, "channel": channel,
              "subject": {k: v for k, v in vars(subject).items() if v}, "extended": False,
              "source": table()["regimes"][regime]["source"], "kind_source": table()["kinds"][kind],
              "history": [{"state": "received", "at": stamp, "by": by}]}
    pipe = client.pipeline(transaction=True)
    pipe.hset(register_key(tenant), request_id, json.dumps(record, sort_keys=True))
    pipe.zadd(open_key(tenant), {request_id: _instant(record["deadline"]).timestamp()})
    AuditLog(client).queue(pipe, tenant, [AuditEvent("subject_request", by, {
        "action": "received", "id": request_id, "kind": kind, "regime": regime, "deadline": record["deadline"],
        **record["subject"]}, now)])
    queue_event(pipe, tenant, "subject_request.received", request_id, _event_data(record), now)
    pipe.execute()
    return _public(record, now)


def _event_data(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("id", "kind", "regime", "received_at", "deadline", "forward_by", "state",
                                   "reference")}


def get_request(client: Any, tenant: str, request_id: str, now: datetime) -> dict[str, Any] | None:
    raw = client.hget(register_key(tenant), request_id)
    return None if raw is None else _public(json.loads(raw), now)


def list_requests(client: Any, tenant: str, now: datetime, *, state: str | None = None,
                  overdue: bool | None = None) -> list[dict[str, Any]]:
    """Every request, the nearest deadline first (closed ones last)."""
    found = [_public(json.loads(v), now) for v in client.hvals(register_key(tenant))]
    if state:
        found = [r for r in found if r["state"] == state]
    if overdue is not None:
        found = [r for r in found if r["overdue"] == overdue]
    return sorted(found, key=lambda r: (r["state"] in CLOSED, r["deadline"], r["id"]))


def _change(client: Any, tenant: str, request_id: str, now: datetime, by: str, change: Any) -> dict[str, Any]:
    """Read-change-write under WATCH, audited in the same transaction."""
    key = register_key(tenant)
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = pipe.hget(key, request_id)
                if raw is None:
                    raise RequestError("not_found", "", "no such request")
                record = json.loads(raw)
                audit = change(record)
                pipe.multi()
                pipe.hset(key, request_id, json.dumps(record, sort_keys=True))
                if record["state"] in CLOSED:
                    pipe.zrem(open_key(tenant), request_id)
                else:
                    pipe.zadd(open_key(tenant), {request_id: _instant(record["deadline"]).timestamp()})
                AuditLog(client).queue(pipe, tenant, [AuditEvent("subject_request", by, {"id": request_id, **audit},
                                                                 now)])
                pipe.execute()
                return _public(record, now)
            except redis.WatchError:
                continue


def move(client: Any, tenant: str, request_id: str, to: str, *, by: str, now: datetime,
         reason: str = "") -> dict[str, Any]:
    """received -> forwarded -> done | refused (a refusal needs its reason: the person must be told why)."""
    if to not in STATES or to == "received":
        raise RequestError("invalid_field", "state", "one of forwarded, done, refused")
    reason = " ".join(reason.split())
    if to == "refused" and not reason:
        raise RequestError("reason_required", "reason", "a refusal needs its reason (GDPR Art. 12(4))")

    def change(record: dict[str, Any]) -> dict[str, Any]:
        if to not in MOVES.get(record["state"], ()):
            raise RequestError("bad_transition", "state", f"a {record['state']} request cannot become {to}")
        record["state"] = to
        if reason:
            record["state_reason"] = reason
        record["history"].append({"state": to, "at": _stamp(now), "by": by, **({"reason": reason} if reason else {})})
        return {"action": to, **({"reason": reason} if reason else {})}

    return _change(client, tenant, request_id, now, by, change)


def extend(client: Any, tenant: str, request_id: str, *, reason: str, by: str, now: datetime) -> dict[str, Any]:
    """Extend the deadline once, by the regime's extension, with a reason, while the request is open and on time."""
    reason = " ".join(reason.split())
    if not reason:
        raise RequestError("reason_required", "reason", "an extension needs its reason (told to the person)")

    def change(record: dict[str, Any]) -> dict[str, Any]:
        if record["state"] in CLOSED:
            raise RequestError("bad_transition", "", f"the request is {record['state']}")
        if record["extended"]:
            raise RequestError("already_extended", "", "the deadline was extended already (once only)")
        if now > _instant(record["deadline"]):
            raise RequestError("overdue", "", "the deadline has passed: it can no longer be extended")
        rule = table()["regimes"][record["regime"]]["extension"]
        old = _instant(record["deadline"])
        record["deadline"] = _stamp(end_of(add_period(old.date(), rule)))
        record["extended"], record["extension_reason"] = True, reason
        record["history"].append({"state": record["state"], "at": _stamp(now), "by": by, "reason": reason,
                                  "deadline": record["deadline"]})
        return {"action": "extended", "reason": reason, "deadline": record["deadline"]}

    return _change(client, tenant, request_id, now, by, change)


def sweep(client: Any, tenant: str, now: datetime) -> dict[str, int]:
    """Send the reminders due and the overdue alerts (each once). Returns how many of each were sent."""
    sent = {"reminder": 0, "overdue": 0}
    ids = [x.decode() if isinstance(x, bytes) else x for x in client.zrange(open_key(tenant), 0, -1)]
    days_before = sorted(int(d) for d in table()["reminders"]["days_before"])
    for request_id in ids:
        record = get_request(client, tenant, request_id, now)
        if record is None or record["state"] in CLOSED:
            continue
        deadline = _instant(record["deadline"])
        data = _event_data(record)
        if record["overdue"]:
            if emit_once(client, tenant, alerts_key(tenant), f"{request_id}:overdue:{record['deadline']}",
                         "subject_request.overdue", request_id, {**data, "missed": "deadline"}, now, ALERT_TTL):
                sent["overdue"] += 1
            continue
        if record["forward_overdue"] and emit_once(
                client, tenant, alerts_key(tenant), f"{request_id}:forward_overdue", "subject_request.overdue",
                request_id, {**data, "missed": "forward_by"}, now, ALERT_TTL):
            sent["overdue"] += 1
        for days in days_before:  # the nearest threshold only: a request recorded late gets one reminder, not two
            if now >= deadline - timedelta(days=days):
                if emit_once(client, tenant, alerts_key(tenant), f"{request_id}:reminder:{days}:{record['deadline']}",
                             "subject_request.reminder", request_id, {**data, "days_before": days}, now, ALERT_TTL):
                    sent["reminder"] += 1
                break
    return sent


def sweep_all(client: Any, now: datetime) -> dict[str, int]:
    """sweep() for every tenant."""
    total = {"reminder": 0, "overdue": 0}
    for raw in client.smembers("tenants"):
        tenant = raw.decode() if isinstance(raw, bytes) else raw
        for k, v in sweep(client, tenant, now).items():
            total[k] += v
    return total
