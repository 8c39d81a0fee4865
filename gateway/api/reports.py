"""Reports from the record (dialer/record/reports.py): per campaign and day, and one person's calls.

The record is a relational store beside Redis (docs/record.md); when it cannot be reached these routes answer
503 `record_unavailable` with Retry-After, never a 500. Every query is limited to the caller's tenant. A person is
named by their number in a POST body (never in a URL, where it would end up in access logs) and looked up by its
keyed reference: the record holds no phone number.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer.record.reports import ReportError, campaign_days, campaign_days_csv, day_range, person_history
from dialer.record.store import Record, RecordUnavailable
from dialer.suppression import person_ref
from gateway import trail
from gateway.api.facts import _COUNTRY, _PHONE, e164
from gateway.api.support import sync
from gateway.errors import ApiError, invalid
from gateway.routing import CONFIG, SERVICES, Route, body, principal, query, redis_of

RETRY_AFTER = "30"
_DAY = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
DAYS_QUERY = {
    "since": {**_DAY, "description": "first UTC day, YYYY-MM-DD (default: 29 days before until)"},
    "until": {**_DAY, "description": "last UTC day, YYYY-MM-DD (default: today)"},
    "campaign": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$", "description": "one campaign"},
}
DAY_ROW: dict[str, Any] = {"type": "object", "required": ["day", "campaign", "attempts", "answers", "abandons"],
                           "properties": {
    "day": {"type": "string"}, "campaign": {"type": "string"}, "attempts": {"type": "integer"},
    "answers": {"type": "integer", "description": "live answers (answered, abandoned, opted out)"},
    "abandons": {"type": "integer"},
    "abandon_rate": {"type": "number", "nullable": True, "description": "abandons / answers; null without answers"},
    "hours_dialed": {"type": "number", "description": "line time (ring + talk) in hours"},
    "denied": {"type": "integer", "description": "denial reasons counted (a denial may have several)"},
    "denials": {"type": "object", "additionalProperties": {"type": "integer"},
                "description": "reason code -> count"}}}
DAYS: dict[str, Any] = {"type": "object", "required": ["since", "until", "items"], "properties": {
    "since": {"type": "string"}, "until": {"type": "string"}, "items": {"type": "array", "items": DAY_ROW}}}
PERSON_BODY: dict[str, Any] = {"type": "object", "required": ["phone"], "additionalProperties": False,
                               "properties": {"phone": _PHONE, "country": _COUNTRY}}
_ITEMS = {"type": "array", "items": {"type": "object", "additionalProperties": {}}}
PERSON: dict[str, Any] = {"type": "object", "required": ["phone", "calls", "decisions", "optouts", "consents"],
                          "properties": {
    "phone": {"type": "string", "description": "masked"}, "person": {"type": "string"},
    "calls": {**_ITEMS, "description": "every call, each with the gate's decision that allowed it (gate)"},
    "decisions": {**_ITEMS, "description": "every gate decision about this person, denials included"},
    "optouts": _ITEMS, "consents": _ITEMS, "truncated": {"type": "boolean"}}}
ERRORS = {"503": "the record is unavailable (record_unavailable; Retry-After)"}


def record_of(request: web.Request) -> Record:
    """The gateway's record store, opened at first use (a PostgreSQL down at start-up is a 503, not a crash)."""
    services = request.app[SERVICES]
    record = services.get("record")
    if record is None:
        try:
            record = services["record"] = Record.from_config(request.app[CONFIG])
        except (RecordUnavailable, OSError) as exc:
            raise unavailable(exc) from None
    return record


def unavailable(exc: BaseException) -> ApiError:
    return ApiError(503, "record_unavailable", f"the record cannot be read now: {exc}",
                    headers={"Retry-After": RETRY_AFTER})


async def _run(request: web.Request, func: Callable[..., Any], *args: Any) -> Any:
    record = record_of(request)
    try:
        return await sync(func, record, *args)
    except RecordUnavailable as exc:
        raise unavailable(exc) from None


def _days(request: web.Request) -> tuple[Any, Any, str | None]:
    params = query(request)
    try:
        first, last = day_range(params.get("since"), params.get("until"), datetime.now(UTC).date())
    except ReportError as exc:
        raise invalid(exc.field, str(exc).split(": ", 1)[-1]) from None
    return first, last, params.get("campaign")


async def report_days(request: web.Request) -> web.Response:
    first, last, campaign = _days(request)
    rows = await _run(request, campaign_days, principal(request).tenant, first, last, campaign)
    return web.json_response({"since": first.isoformat(), "until": last.isoformat(), "items": rows})


async def report_days_csv(request: web.Request) -> web.Response:
    first, last, campaign = _days(request)
    rows = await _run(request, campaign_days, principal(request).tenant, first, last, campaign)
    name = f"campaign-days-{first.isoformat()}-{last.isoformat()}.csv"
    return web.Response(text=campaign_days_csv(rows), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def report_person(request: web.Request) -> web.Response:
    who, data = principal(request), body(request)
    number = e164(data["phone"], data.get("country"))
    key = str(request.app[CONFIG]["security.secret_key"])
    if not key:
        raise ApiError(503, "secret_key_missing", "setting security.secret_key is required: the record knows "
                       "people by keyed hash")
    ref = person_ref(key.encode(), number)
    # reading a person's history is a read of personal data: audited with the keyed reference, never the number
    await trail.record(redis_of(request), who.tenant, "access.report", actor=who.user, token_id=who.token_id,
                       person=ref)
    history = await _run(request, person_history, who.tenant, ref)
    masked = number[:3] + "*" * (len(number) - 5) + number[-2:]
    return web.json_response({"phone": masked, **history})


ROUTES = [
    Route("GET", "/v1/reports/campaign-days", report_days, "Per campaign and UTC day: attempts, answers, abandons, "
          "abandon rate, denials by reason, hours dialed (from the record)", "reports.read", response=DAYS,
          query=DAYS_QUERY, tag="reports", errors=ERRORS),
    Route("GET", "/v1/reports/campaign-days.csv", report_days_csv, "The same report as CSV", "reports.read",
          content_type="text/csv", query=DAYS_QUERY, tag="reports", errors=ERRORS),
    Route("POST", "/v1/reports/person", report_person, "Every call to one number and the gate's decision for it, "
          "every decision, opt-out and consent about them (from the record)", "reports.person", body=PERSON_BODY,
          response=PERSON, tag="reports", errors=ERRORS),
]
