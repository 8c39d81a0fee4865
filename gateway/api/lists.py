"""Contact lists: streamed upload (an RQ import job), import status and error report, lists, scrub report.

The import itself is dialer/contacts (docs/contacts.md): the upload is staged to a file, `enqueue_import`
registers it and queues the job on `imports`; `dialer worker` runs it. The same file uploaded again with the
same options answers the earlier import (`duplicate_of`). Status polls go through `reconcile_import`, which
closes an import whose worker died.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from dialer.campaigns import CampaignStore
from dialer.contacts.jobs import enqueue_import, reconcile_import
from dialer.contacts.report import file_failure, message_of, write_error_report
from dialer.contacts.sniff import FileError
from dialer.contacts.store import Keys, _s, iter_errors
from gateway import trail
from gateway.api.gatecheck import GATE_ERRORS
from gateway.api.schemas import listing
from gateway.api.support import (
    csv_download,
    gate_of,
    multipart_body,
    raw_redis,
    receive_upload,
    sync,
    upload_dir,
)
from gateway.errors import ApiError, invalid, not_found
from gateway.routing import CONFIG, SERVICES, Route, principal, query, redis_of
from rules.caller_id import NOT_JUDGED
from rules.model import PURPOSES, Campaign

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"}
_INSTANT = {"type": "string", "format": "date-time"}

IMPORT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "rows_done", "rows_total"],
    "properties": {
        "id": {"type": "string"},
        "list": {"type": "string"},
        "campaign": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "committing", "committed", "failed"]},
        "rows_done": {"type": "integer"},
        "rows_total": {"type": "integer"},
        "file_name": {"type": "string"},
        "region": {"type": "string"},
        "summary": {"type": "object", "additionalProperties": {}},
        "error_code": {"type": "string"},
        "error": {"type": "string"},
        "created_at": {"type": "string"},
        "finished_at": {"type": "string"},
        "duplicate_of": {"type": "string", "nullable": True},
    },
}
_IMPORT_FIELDS = tuple(IMPORT["properties"])
LIST: dict[str, Any] = {"type": "object", "required": ["id"], "properties": {
    "id": {"type": "string"}, "contacts": {"type": "integer"}, "imports": {"type": "integer"},
    "region": {"type": "string"}, "last_import": {"type": "string"}, "updated_at": {"type": "string"}}}
SCRUB: dict[str, Any] = {"type": "object", "required": ["now", "later", "never"], "properties": {
    "list": {"type": "string"}, "campaign": {"type": "string"}, "at": {"type": "string"},
    "now": {"type": "integer"}, "later": {"type": "integer"}, "never": {"type": "integer"},
    "later_by_reason": {"type": "object", "additionalProperties": {"type": "integer"}},
    "never_by_reason": {"type": "object", "additionalProperties": {"type": "integer"}},
    "earliest_later": {"type": "string", "nullable": True},
    "rejected_at_import": {"type": "object", "additionalProperties": {"type": "integer"}}}}
SCRUB_QUERY = {"campaign": {**_NAME, "description": "decide as this campaign (purpose, audience, voice)"},
               "purpose": {"type": "string", "enum": list(PURPOSES), "description": "without campaign (default "
                                                                                      "telemarketing)"},
               "at": {**_INSTANT, "description": "decide at this instant (default now)"}}


def _public(status: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in status.items() if k in _IMPORT_FIELDS and v != ""}
    out.setdefault("rows_done", 0)
    out.setdefault("rows_total", 0)
    return out


async def upload_list(request: web.Request) -> web.Response:
    who = principal(request)
    upload = await receive_upload(request, UPLOAD_FIELDS, f"list-{who.tenant}")
    try:
        fields = upload.fields
        if upload.size == 0:
            raise ApiError(422, "empty_file", "file: the file is empty", field="file")
        if not fields.get("list"):
            raise invalid("list", "is required", code="missing_field")
        campaign = fields.get("campaign") or None
        if campaign and not await sync(CampaignStore.get, request.app[SERVICES]["campaigns"], who.tenant, campaign):
            raise invalid("campaign", "no such campaign", rule="no_such_campaign")
        mapping = None
        if fields.get("mapping"):
            from dialer.contacts.columns import parse_mapping

            try:
                mapping_doc = json.loads(fields["mapping"])
            except (ValueError, RecursionError):  # RecursionError: thousands of nested arrays
                raise invalid("mapping", "not JSON (or nested too deeply)", rule="not_json") from None
            mapping = parse_mapping(mapping_doc)
        ticket = await sync(enqueue_import, raw_redis(request), who.tenant, upload.path, fields["list"],
                            region=fields.get("region") or "FR", mapping=mapping, campaign=campaign,
                            file_name=upload.file_name,
                            max_bad_share=request.app[CONFIG]["imports.max_bad_share"])
    except FileError as exc:
        upload.discard()
        field = {"bad_list": "list", "bad_region": "region", "bad_mapping": "mapping", "bad_campaign": "campaign"}
        if exc.code in field:
            raise invalid(field[exc.code], str(exc), code=exc.code) from None
        raise ApiError(422, exc.code, str(exc), field="file") from None
    except BaseException:
        upload.discard()
        raise
    if ticket.duplicate_of:
        upload.discard()  # the earlier import has its own copy
    await trail.record(redis_of(request), who.tenant, "import.upload", actor=who.user, token_id=who.token_id,
                       import_id=ticket.import_id, list=fields["list"], bytes=upload.size,
                       duplicate=bool(ticket.duplicate_of))
    status = await sync(reconcile_import, raw_redis(request), who.tenant, ticket.import_id) or {}
    return web.json_response({**_public(status), "id": ticket.import_id, "duplicate_of": ticket.duplicate_of},
                             status=202)


async def _import(request: web.Request) -> dict[str, Any]:
    tenant, import_id = principal(request).tenant, request.match_info["import_id"]
    status = await sync(reconcile_import, raw_redis(request), tenant, import_id)
    if status is None:
        raise not_found("import")
    if status.get("status") in ("committed", "failed"):
        await sync(discard_staged_upload, raw_redis(request), upload_dir(request.app[CONFIG]), tenant, import_id)
    return status


def discard_staged_upload(client: Any, staging: Path, tenant: str, import_id: str) -> None:
    """Once an import is over, its uploaded file is no longer needed: delete it (data minimization; erasure does
    not rewrite uploaded files). Only files in the gateway's own upload directory, never a CLI user's file."""
    raw = client.hget(Keys(tenant, import_id).status, "path")
    if not raw:
        return
    path = Path(_s(raw))
    if path.parent == staging.resolve() and path.name.startswith(f"list-{tenant}-"):
        path.unlink(missing_ok=True)


async def import_status(request: web.Request) -> web.Response:
    return web.json_response(_public(await _import(request)))


async def list_imports(request: web.Request) -> web.Response:
    tenant = principal(request).tenant
    client = raw_redis(request)

    def read() -> list[dict[str, Any]]:
        ids = [_s(i) for i in client.zrevrange(Keys(tenant).imports, 0, 99)]
        pipe = client.pipeline(transaction=False)
        for import_id in ids:
            pipe.hgetall(Keys(tenant, import_id).status)
        found = []
        for raw in pipe.execute():
            item = {_s(k): _s(v) for k, v in raw.items()}
            if item:
                item["rows_done"] = int(item.get("rows_done") or 0)
                item["rows_total"] = int(item.get("rows_total") or 0)
                item["summary"] = json.loads(item["summary"]) if item.get("summary") else {}
                found.append(_public(item))
        return found

    return web.json_response({"items": await sync(read)})


async def import_errors(request: web.Request) -> web.StreamResponse:
    await _import(request)
    tenant, import_id = principal(request).tenant, request.match_info["import_id"]
    return await csv_download(request, lambda out: write_error_report(raw_redis(request), tenant, import_id, out),
                              f"import-{import_id}-errors.csv")


async def list_lists(request: web.Request) -> web.Response:
    tenant = principal(request).tenant
    client = raw_redis(request)

    def read() -> list[dict[str, Any]]:
        ids = sorted(_s(i) for i in client.smembers(Keys(tenant).lists))
        pipe = client.pipeline(transaction=False)
        for list_id in ids:
            pipe.hgetall(Keys(tenant).list(list_id))
        from dialer.record.contacts import list_counts
        from dialer.record.current import contact_record

        counts = list_counts(contact_record(), tenant) if ids else {}  # members live in the record: 503 if down
        items = []
        for list_id, raw in zip(ids, pipe.execute(), strict=True):
            item = {_s(k): _s(v) for k, v in raw.items()}
            out: dict[str, Any] = {"id": list_id, "contacts": counts.get(list_id, 0)}
            if item.get("imports", "").isdigit():
                out["imports"] = int(item["imports"])
            out.update({k: item[k] for k in ("region", "last_import", "updated_at") if item.get(k)})
            items.append(out)
        return items

    return web.json_response({"items": await sync(read)})


async def _scrub_setup(request: web.Request) -> tuple[str, str, Any, Campaign, datetime]:
    tenant, list_id = principal(request).tenant, request.match_info["list_id"]
    params = query(request)
    client = raw_redis(request)
    if not await sync(client.exists, Keys(tenant).list(list_id)):
        raise not_found("list")
    if params.get("campaign"):
        stored = await sync(request.app[SERVICES]["campaigns"].get, tenant, params["campaign"])
        if stored is None:
            raise invalid("campaign", "no such campaign", rule="no_such_campaign")
        campaign = stored.gate_campaign()
    else:
        # a list scrubbed without a campaign: no caller ID to judge (a campaign's scrub judges its own)
        campaign = Campaign(id="scrub", tenant=tenant, purpose=params.get("purpose", "telemarketing"),
                            caller_id=NOT_JUDGED)
    at = datetime.fromisoformat(params["at"].replace("Z", "+00:00")) if params.get("at") else datetime.now(UTC)
    return tenant, list_id, gate_of(request), campaign, at


async def scrub_summary(request: web.Request) -> web.Response:
    from dialer.contacts.scrub import gate_decider, scrub_list

    tenant, list_id, gate, campaign, at = await _scrub_setup(request)
    summary = await sync(scrub_list, raw_redis(request), tenant, list_id, gate_decider(gate, campaign), at, None)
    return web.json_response({**summary, "campaign": campaign.id})


async def scrub_report(request: web.Request) -> web.StreamResponse:
    from dialer.contacts.scrub import gate_decider, scrub_list

    tenant, list_id, gate, campaign, at = await _scrub_setup(request)
    decide = gate_decider(gate, campaign)
    return await csv_download(request, lambda out: scrub_list(raw_redis(request), tenant, list_id, decide, at, out),
                              f"scrub-{list_id}.csv")


REPORT_ROWS = 200  # entries of the error report answered as JSON (the CSV has them all)
PREVIEW_LIMIT = 1024 * 1024  # the head of the file is enough to see its format and columns

REPORT: dict[str, Any] = {"type": "object", "required": ["id", "status", "items"], "properties": {
    **{k: IMPORT["properties"][k] for k in ("id", "list", "status", "rows_done", "rows_total", "summary",
                                            "error_code", "error", "file_name")},
    "items": {"type": "array", "items": {"type": "object", "properties": {
        "row": {"type": "integer", "nullable": True}, "line": {"type": "integer", "nullable": True},
        "column": {"type": "string", "nullable": True}, "value": {"type": "string", "nullable": True},
        "reason": {"type": "string"}, "message": {"type": "string"},
        "first_row": {"type": "integer", "description": "duplicate_in_file: the earlier row with the same number"},
        "count": {"type": "integer", "description": "not_listed: how many more entries have this reason"},
        "severity": {"type": "string", "enum": ["file", "error", "warning", "duplicate", "not_listed"]}}}},
    "more": {"type": "boolean", "description": f"the report has more than {REPORT_ROWS} entries: get the CSV"}}}
PREVIEW: dict[str, Any] = {"type": "object", "required": ["format", "columns", "rows"], "properties": {
    "format": {"type": "object", "additionalProperties": {}}, "has_header": {"type": "boolean"},
    "truncated": {"type": "boolean"}, "fields": {"type": "array", "items": {"type": "string"}},
    "columns": {"type": "array", "items": {"type": "object", "properties": {
        "index": {"type": "integer"}, "name": {"type": "string"}, "field": {"type": "string"}}}},
    "rows": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
    "problem": {"type": "object", "nullable": True, "properties": {"code": {"type": "string"},
                                                                  "message": {"type": "string"}}}}}


async def import_report(request: web.Request) -> web.Response:
    """The error report as JSON for the console: a file-level failure first, then the first REPORT_ROWS rows."""
    status = _public(await _import(request))
    tenant, import_id = principal(request).tenant, request.match_info["import_id"]

    def read() -> tuple[list[dict[str, Any]], bool]:
        items: list[dict[str, Any]] = []
        failure = file_failure(status)
        if failure:
            items.append(failure)
        for error in iter_errors(raw_redis(request), tenant, import_id):
            if len(items) >= REPORT_ROWS:
                return items, True
            item = {"row": error.get("row"), "line": error.get("line"), "column": error.get("column"),
                    "value": error.get("value"), "reason": str(error.get("reason")),
                    "severity": error.get("severity", "error"), "message": message_of(error)}
            if error.get("first_row") is not None:  # the figure of the message, for clients that word it
                item["first_row"] = int(error["first_row"])
            items.append(item)
        for reason, more in ((status.get("summary") or {}).get("errors_not_listed") or {}).items():
            items.append({"reason": reason, "severity": "not_listed", "count": int(more),
                          "message": f"{more} more entries with reason {reason} are not listed"})
        return items, False

    items, more = await sync(read)
    keys = ("id", "list", "status", "rows_done", "rows_total", "summary", "error_code", "error", "file_name")
    return web.json_response({**{k: status[k] for k in keys if k in status}, "items": items, "more": more})


async def preview_upload(request: web.Request) -> web.Response:
    """Read the head of a file as the import would, and say what it would do: nothing is imported or kept."""
    from dialer.contacts.columns import parse_mapping
    from dialer.contacts.preview import preview

    who = principal(request)
    if request.content_length is not None and request.content_length > PREVIEW_LIMIT + 64 * 1024:
        raise ApiError(413, "too_large", f"a preview needs only the head of the file: send at most {PREVIEW_LIMIT} "
                       "bytes (and truncated=true)", field="file")  # refused before reading a byte of it
    upload = await receive_upload(request, PREVIEW_FIELDS, f"preview-{who.tenant}")
    try:
        if upload.size == 0:
            raise ApiError(422, "empty_file", "file: the file is empty", field="file")
        if upload.size > PREVIEW_LIMIT:
            raise ApiError(413, "too_large", f"a preview needs only the head of the file: send at most "
                           f"{PREVIEW_LIMIT} bytes (and truncated=true)", field="file")
        fields = upload.fields
        mapping = None
        if fields.get("mapping"):
            try:
                mapping_doc = json.loads(fields["mapping"])
            except (ValueError, RecursionError):
                raise invalid("mapping", "not JSON (or nested too deeply)", rule="not_json") from None
            mapping = parse_mapping(mapping_doc)
        region = (fields.get("region") or "FR").upper()
        answer = await sync(preview, upload.path, mapping, region, truncated=fields.get("truncated") == "true")
    except FileError as exc:
        if exc.code == "bad_mapping":
            raise invalid("mapping", str(exc), code=exc.code) from None
        raise ApiError(422, exc.code, str(exc), field="file") from None
    finally:
        upload.discard()
    return web.json_response(answer)


PREVIEW_FIELDS = {
    "region": {"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "region of national numbers (FR)"},
    "mapping": {"type": "string", "description": "column mapping, JSON (docs/contacts.md)"},
    "truncated": {"type": "string", "enum": ["true", "false"],
                  "description": "true: the file is the head of a larger one (its last, cut line is dropped)"},
}

UPLOAD_FIELDS = {
    "list": {**_NAME, "description": "the list to import into (created on first import)"},
    "region": {"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "region of national numbers (FR)"},
    "campaign": {**_NAME, "description": "also add the new contacts to this campaign"},
    "mapping": {"type": "string", "description": "column mapping, JSON (docs/contacts.md)"},
}

ROUTES = [
    Route("POST", "/v1/imports", upload_list, "Upload a contact list (streamed multipart; queued as an import job)",
          "lists.write", raw_body=multipart_body(UPLOAD_FIELDS, ("list",)), response=IMPORT, status=202,
          tag="lists", errors={"415": "the body is not multipart/form-data",
                               "403": "tenant_suspended: the operator suspended the tenant"}, new_work=True),
    Route("POST", "/v1/imports/preview", preview_upload, "Preview a contact file (its head): detected format, "
          "column mapping and the first rows judged; nothing is imported", "lists.write",
          raw_body=multipart_body(PREVIEW_FIELDS), response=PREVIEW, tag="lists",
          errors={"415": "the body is not multipart/form-data"}),
    Route("GET", "/v1/imports", list_imports, "The latest 100 imports, newest first", "lists.read",
          response=listing(IMPORT), tag="lists"),
    Route("GET", "/v1/imports/{import_id}", import_status, "An import's status and progress (rows done / total)",
          "lists.read", response=IMPORT, resource="import", tag="lists"),
    Route("GET", "/v1/imports/{import_id}/errors", import_errors, "An import's row-level error report (CSV)",
          "lists.read", content_type="text/csv", resource="import", tag="lists"),
    Route("GET", "/v1/imports/{import_id}/report", import_report, "An import's error report as JSON: a file-level "
          f"failure first, then the first {REPORT_ROWS} row entries", "lists.read", response=REPORT,
          resource="import", tag="lists"),
    Route("GET", "/v1/lists", list_lists, "The tenant's contact lists", "lists.read", response=listing(LIST),
          tag="lists"),
    Route("GET", "/v1/lists/{list_id}/scrub", scrub_summary,
          "Scrub a list through the gate (no reservation): how many can be called now, later, never",
          "gate.check", response=SCRUB, query=SCRUB_QUERY, resource="list", tag="lists", errors=GATE_ERRORS),
    Route("GET", "/v1/lists/{list_id}/scrub/report", scrub_report,
          "The scrub report, one row per contact (CSV)", "gate.check", content_type="text/csv", query=SCRUB_QUERY,
          resource="list", tag="lists", errors=GATE_ERRORS),
]
