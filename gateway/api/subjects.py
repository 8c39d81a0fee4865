"""Data subject rights (dialer/privacy.py, docs/privacy.md): access, rectification, erasure; retention policy.

A subject is named by a phone number (E.164, or national with `country`) or a contact id. Access (auditor,
admin) returns everything we hold about the person, as JSON or CSV; rectification and erasure are admin only.
dialer.privacy audits each request itself (kinds access, rectification, erasure) in the same transaction as the
change, so the gateway's own trail skips them. Erasure is refused with 503 `no_secret_key` when
security.secret_key is unset (nothing is erased rather than erased unsafely).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer import privacy, retention
from dialer.record.store import RecordUnavailable
from gateway.api.reports import record_of, unavailable
from gateway.api.support import raw_redis, sync
from gateway.errors import ApiError, invalid, not_found
from gateway.routing import CONFIG, Route, body, principal, query

_PHONE = {"type": "string", "minLength": 3, "maxLength": 40, "description": "E.164, or national with country"}
_COUNTRY = {"type": "string", "pattern": "^[A-Za-z]{2}$"}
_CONTACT = {"type": "string", "pattern": r"^[A-Za-z0-9_.@-]{1,64}$"}
SUBJECT_QUERY = {"phone": _PHONE, "country": _COUNTRY, "contact_id": _CONTACT}
ACCESS: dict[str, Any] = {"type": "object", "additionalProperties": {}}
RECTIFY_IN: dict[str, Any] = {
    "type": "object",
    "properties": {name: {"type": "string", "nullable": True, "maxLength": 1000} for name in privacy.RECTIFIABLE},
    "additionalProperties": {"type": "string", "nullable": True, "maxLength": 1000,
                             "description": "a kept column x.<name>"},
    "description": "fields to correct; null or \"\" clears one. Phone numbers are not rectified (erase, re-import)",
}
CONTACT_OUT: dict[str, Any] = {"type": "object", "additionalProperties": {}}
ERASE_IN: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"phone": _PHONE, "country": _COUNTRY, "contact_id": _CONTACT,
                   "reason": {"type": "string", "maxLength": 500, "description": "e.g. the request's reference"}},
}
ERASE_OUT: dict[str, Any] = {"type": "object", "required": ["people", "contact_ids", "removed"], "properties": {
    "tenant": {"type": "string"}, "people": {"type": "array", "items": {"type": "string"}},
    "contact_ids": {"type": "array", "items": {"type": "string"}},
    "removed": {"type": "object", "additionalProperties": {"type": "integer"}},
    "suppressed": {"type": "integer"}, "audit_seq": {"type": "integer"},
    "warnings": {"type": "array", "items": {"type": "string"}}}}
POLICY: dict[str, Any] = {"type": "object", "properties": {k: {"type": "integer"} for k in retention.KINDS}}
_DAYS = {"type": "integer", "minimum": 1, "maximum": 36500, "description": "days"}
POLICY_IN: dict[str, Any] = {"type": "object", "additionalProperties": False,
                             "properties": {k: _DAYS for k in retention.KINDS}}


def _error(exc: privacy.PrivacyError) -> ApiError:
    if exc.code == "not_found":
        return not_found("contact")  # the same answer for another tenant's contact and an absent one
    if exc.code == "no_secret_key":
        return ApiError(503, "no_secret_key", exc.message)
    return ApiError(422, exc.code, exc.message, field=exc.field)


def _who(request: web.Request) -> dict[str, Any]:
    params = query(request) if request.method == "GET" else body(request)
    if ("phone" in params) == ("contact_id" in params):
        raise invalid("phone", "give exactly one of phone or contact_id", code="missing_field",
                      rule="phone_or_contact")
    return {"phone": params.get("phone"), "contact_id": params.get("contact_id"), "country": params.get("country")}


async def _call(func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await sync(func, *args, **kwargs)
    except privacy.PrivacyError as exc:
        raise _error(exc) from None
    except RecordUnavailable as exc:  # an access answer without the archived history would be incomplete
        raise unavailable(exc) from None


def _common(request: web.Request) -> dict[str, Any]:
    return {"actor": f"user:{principal(request).user}", "at": datetime.now(UTC),
            "secret_key": request.app[CONFIG]["security.secret_key"]}


async def subject_access(request: web.Request) -> web.Response:
    found = await _call(privacy.access, raw_redis(request), principal(request).tenant, **_who(request),
                        **_common(request), record=record_of(request))
    return web.json_response(found, dumps=_dumps)


async def subject_access_csv(request: web.Request) -> web.Response:
    text = await _call(privacy.access_csv, raw_redis(request), principal(request).tenant, **_who(request),
                       **_common(request), record=record_of(request))
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="subject-access.csv"'})


async def rectify_contact(request: web.Request) -> web.Response:
    common = _common(request)
    contact = await _call(privacy.rectify, raw_redis(request), principal(request).tenant,
                          request.match_info["contact_id"], body(request), common["actor"], common["at"])
    return web.json_response(contact, dumps=_dumps)


async def erase_subject(request: web.Request) -> web.Response:
    report = await _call(privacy.erase, raw_redis(request), principal(request).tenant, **_who(request),
                         reason=body(request).get("reason") or "data subject request", **_common(request),
                         record=record_of(request))
    return web.json_response(report.as_dict())


async def get_retention(request: web.Request) -> web.Response:
    return web.json_response(await sync(retention.get_policy, raw_redis(request), principal(request).tenant))


async def set_retention(request: web.Request) -> web.Response:
    try:
        policy = await sync(retention.set_policy, raw_redis(request), principal(request).tenant, body(request),
                            actor=f"user:{principal(request).user}", at=datetime.now(UTC))
    except retention.PolicyError as exc:
        field = str(exc).split(":", 1)[0]
        raise invalid(field if field in retention.KINDS else "", str(exc)) from None
    return web.json_response(policy)


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


_NOT_FOUND = {"404": "no such contact in your tenant"}

ROUTES = [
    Route("GET", "/v1/subjects", subject_access, "Data subject access: everything held about a person (JSON)",
          "subjects.read", response=ACCESS, query=SUBJECT_QUERY, tag="subjects", errors=_NOT_FOUND),
    Route("GET", "/v1/subjects/report", subject_access_csv, "Data subject access as CSV (section, item, field, "
          "value)", "subjects.read", content_type="text/csv", query=SUBJECT_QUERY, tag="subjects",
          errors=_NOT_FOUND),
    Route("PATCH", "/v1/contacts/{contact_id}", rectify_contact, "Rectify a contact's fields (not its numbers)",
          "subjects.manage", body=RECTIFY_IN, response=CONTACT_OUT, resource="contact", tag="subjects"),
    Route("POST", "/v1/subjects/erase", erase_subject, "Erase a person (keeps a keyed-hash suppression entry and "
          "the audit trail)", "subjects.manage", body=ERASE_IN, response=ERASE_OUT, tag="subjects",
          errors={**_NOT_FOUND, "503": "security.secret_key is unset: nothing erased"}),
    Route("GET", "/v1/retention", get_retention, "The tenant's retention periods (days)", "subjects.read",
          response=POLICY, tag="subjects"),
    Route("PATCH", "/v1/retention", set_retention, "Change retention periods (days; the law's floors apply)",
          "subjects.manage", body=POLICY_IN, response=POLICY, tag="subjects"),
]
