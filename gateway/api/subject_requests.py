"""The register of data-subject requests and their legal deadlines, over HTTP (dialer/subject_requests.py).

  POST /v1/subject-requests                      record a request (kind, regime, who, when received)
  GET  /v1/subject-requests                      the list, nearest deadline first (?state=, ?overdue=true)
  GET  /v1/subject-requests/{request_id}         one request with its history
  POST /v1/subject-requests/{request_id}/state   forwarded, done, or refused (with its reason)
  POST /v1/subject-requests/{request_id}/extend  extend the deadline once, with a reason (the regime's extension)

Carrying the request out stays with the subject routes (gateway/api/subjects.py): access, rectification,
erasure; an objection is an opt-out (POST /v1/optouts). Admins record and move requests; auditors read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer import subject_requests as dsr
from dialer.audit import AuditLog
from gateway import trail
from gateway.api.facts import e164
from gateway.api.support import sync
from gateway.errors import ApiError, invalid, not_found
from gateway.routing import CONFIG, SERVICES, Route, body, principal, query, redis_of

_REASON = {"type": "string", "minLength": 1, "maxLength": 1000}
REQUEST_IN: dict[str, Any] = {
    "type": "object", "required": ["kind", "regime"], "additionalProperties": False,
    "properties": {
        "kind": {"type": "string", "enum": list(dsr.KINDS)},
        "regime": {"type": "string", "enum": list(dsr.regimes()),
                   "description": "whose deadline applies (dialer/data/subject_requests.toml)"},
        "received_at": {"type": "string", "format": "date-time", "description": "when the person asked (default: now)"},
        "phone": {"type": "string", "minLength": 3, "maxLength": 40,
                  "description": "kept only as a keyed reference and the masked number"},
        "country": {"type": "string", "pattern": "^[A-Za-z]{2}$"},
        "contact_id": {"type": "string", "pattern": r"^[A-Za-z0-9_.@-]{1,64}$"},
        "reference": {"type": "string", "maxLength": 200, "description": "the client's or the person's reference"},
        "channel": {"type": "string", "maxLength": 100, "description": "how it arrived (email, letter, call ...)"},
    },
}
REQUEST_OUT: dict[str, Any] = {"type": "object", "required": ["id", "kind", "regime", "state", "deadline"],
                               "properties": {
    "id": {"type": "string"}, "kind": {"type": "string"}, "regime": {"type": "string"},
    "state": {"type": "string", "enum": list(dsr.STATES)}, "received_at": {"type": "string"},
    "deadline": {"type": "string"}, "forward_by": {"type": "string"}, "overdue": {"type": "boolean"},
    "forward_overdue": {"type": "boolean"}, "days_left": {"type": "integer", "nullable": True},
    "extended": {"type": "boolean"}, "history": {"type": "array", "items": {"type": "object",
                                                                           "additionalProperties": {}}}},
    "additionalProperties": {}}
STATE_IN: dict[str, Any] = {"type": "object", "required": ["state"], "additionalProperties": False, "properties": {
    "state": {"type": "string", "enum": ["forwarded", "done", "refused"]},
    "reason": {**_REASON, "description": "required to refuse (the person is told why)"}}}
EXTEND_IN: dict[str, Any] = {"type": "object", "required": ["reason"], "additionalProperties": False,
                             "properties": {"reason": _REASON}}
LIST_QUERY = {"state": {"type": "string", "enum": list(dsr.STATES)}, "overdue": {"type": "boolean"}}


def _client(request: web.Request) -> Any:
    return request.app[SERVICES]["sync_redis"]


def _error(exc: dsr.RequestError) -> ApiError:
    if exc.code == "not_found":
        return not_found("subject request")
    if exc.code in ("bad_transition", "already_extended", "overdue"):
        return ApiError(409, exc.code, exc.message)
    return invalid(exc.field, exc.message, code=exc.code)


async def create_request(request: web.Request) -> web.Response:
    who, data, now = principal(request), body(request), datetime.now(UTC)
    if "phone" not in data and "contact_id" not in data:
        raise invalid("phone", "give phone or contact_id", code="missing_field", rule="phone_or_contact")
    subject = dsr.Subject(contact_id=data.get("contact_id"))
    if "phone" in data:
        number = e164(data["phone"], data.get("country"))
        audit = AuditLog(_client(request), request.app[CONFIG]["security.secret_key"])
        try:
            ref = audit.person_ref(number)
        except ValueError:
            ref = None
        subject = dsr.Subject(person=ref, phone=audit.mask(number), contact_id=data.get("contact_id"))
    try:
        received = datetime.fromisoformat(data["received_at"].replace("Z", "+00:00")) if "received_at" in data else now
    except ValueError:
        raise invalid("received_at", "expected an ISO 8601 date-time", rule="date_time") from None
    if received.tzinfo is None:
        raise invalid("received_at", "give a time zone (Z or +01:00)", rule="offset")
    try:
        record = await sync(dsr.record_request, _client(request), who.tenant, kind=data["kind"], regime=data["regime"],
                            subject=subject, received_at=received, by=f"user:{who.user}", now=now,
                            reference=data.get("reference", ""), channel=data.get("channel", ""))
    except dsr.RequestError as exc:
        raise _error(exc) from None
    await trail.record(redis_of(request), who.tenant, "subject_request.create", actor=who.user,
                       token_id=who.token_id, request=record["id"])
    return web.json_response(record, status=201)


async def list_requests(request: web.Request) -> web.Response:
    params = query(request)
    found = await sync(dsr.list_requests, _client(request), principal(request).tenant, datetime.now(UTC),
                       state=params.get("state"), overdue=params.get("overdue"))
    return web.json_response({"items": found})


async def get_request(request: web.Request) -> web.Response:
    found = await sync(dsr.get_request, _client(request), principal(request).tenant,
                       request.match_info["request_id"], datetime.now(UTC))
    if found is None:
        raise not_found("subject request")
    return web.json_response(found)


async def move_request(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    try:
        moved = await sync(dsr.move, _client(request), who.tenant, request.match_info["request_id"], data["state"],
                           by=f"user:{who.user}", now=datetime.now(UTC), reason=data.get("reason", ""))
    except dsr.RequestError as exc:
        raise _error(exc) from None
    await trail.record(redis_of(request), who.tenant, f"subject_request.{data['state']}", actor=who.user,
                       token_id=who.token_id, request=moved["id"])
    return web.json_response(moved)


async def extend_request(request: web.Request) -> web.Response:
    who = principal(request)
    try:
        moved = await sync(dsr.extend, _client(request), who.tenant, request.match_info["request_id"],
                           reason=body(request)["reason"], by=f"user:{who.user}", now=datetime.now(UTC))
    except dsr.RequestError as exc:
        raise _error(exc) from None
    await trail.record(redis_of(request), who.tenant, "subject_request.extend", actor=who.user,
                       token_id=who.token_id, request=moved["id"])
    return web.json_response(moved)


_NOT_FOUND = {"404": "no such request in your tenant"}
_CONFLICT = {**_NOT_FOUND, "409": "not possible in the request's state (closed, extended already, overdue)"}

ROUTES = [
    Route("POST", "/v1/subject-requests", create_request, "Record a data-subject request with its legal deadline",
          "subjects.manage", body=REQUEST_IN, response=REQUEST_OUT, status=201, tag="subjects"),
    Route("GET", "/v1/subject-requests", list_requests, "Data-subject requests, nearest deadline first",
          "subjects.read", response={"type": "object", "properties": {"items": {"type": "array",
                                                                               "items": REQUEST_OUT}}},
          query=LIST_QUERY, tag="subjects"),
    Route("GET", "/v1/subject-requests/{request_id}", get_request, "One data-subject request with its history",
          "subjects.read", response=REQUEST_OUT, resource="subject_request", tag="subjects", errors=_NOT_FOUND),
    Route("POST", "/v1/subject-requests/{request_id}/state", move_request,
          "Move a request: forwarded (to the client), done, or refused with its reason", "subjects.manage",
          body=STATE_IN, response=REQUEST_OUT, resource="subject_request", tag="subjects", errors=_CONFLICT),
    Route("POST", "/v1/subject-requests/{request_id}/extend", extend_request,
          "Extend the deadline once by the regime's extension (GDPR: two months), with a reason", "subjects.manage",
          body=EXTEND_IN, response=REQUEST_OUT, resource="subject_request", tag="subjects", errors=_CONFLICT),
]
