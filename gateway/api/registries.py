"""National opposition registries (US DNC, Bloctel, TPS, CTPS, DNCL, custom lists): status and imports.

Registries are shared by every tenant (`reg:{name}:...`, CONTRACTS.md), so reading their status is open to the
roles with `registry.read`, while loading one changes what every tenant may call: it needs `registry.write`
(admin) AND the caller's tenant listed in setting `gateway.registry_tenants` (the installation's operator
tenants; empty by default, so nobody can load registries through the API unless the operator says so; the
`dialer registry import` command is always available to operators). An upload is streamed to a staging file and
enqueued as the registry RQ job (dialer/registry/jobs.py) on queue `registry`; its progress and load report are
read at `GET /v1/registry-imports/{job_id}`, by the tenant that started it only.
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer.registry.store import RegistryStore
from gateway import trail
from gateway.api.schemas import listing
from gateway.api.support import multipart_body, raw_redis, receive_upload, sync
from gateway.errors import ApiError, invalid, not_found
from gateway.routing import CONFIG, Route, principal, redis_of

NATIONAL = ("us_dnc", "dncl", "bloctel", "tps", "ctps")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
JOB_KEY_TTL = 7 * 24 * 3600  # as long as RQ keeps the job's result

VERSION: dict[str, Any] = {"type": "object", "required": ["name", "loaded"], "properties": {
    "name": {"type": "string"}, "loaded": {"type": "boolean"}, "version": {"type": "integer"},
    "loaded_at": {"type": "string"}, "age_days": {"type": "number"}, "rows": {"type": "integer"},
    "added": {"type": "integer"}, "removed": {"type": "integer"}, "invalid": {"type": "integer"},
    "file_name": {"type": "string"}, "kind": {"type": "string"}, "source_hash": {"type": "string"}}}
JOB: dict[str, Any] = {"type": "object", "required": ["id", "registry", "status"], "properties": {
    "id": {"type": "string"}, "registry": {"type": "string"}, "delta": {"type": "boolean"},
    "status": {"type": "string", "description": "RQ job status: queued, started, finished, failed ..."},
    "progress": {"type": "object", "nullable": True, "additionalProperties": {}},
    "report": {"type": "object", "nullable": True, "additionalProperties": {},
               "description": "the load report once finished (status committed or refused, counts, bad lines)"},
    "error": {"type": "string", "nullable": True}}}


def job_key(tenant: str, job_id: str) -> str:
    return f"t:{{{tenant}}}:registry-import:{job_id}"


def _version(name: str, store: RegistryStore) -> dict[str, Any]:
    status = store.status(name)
    if status is None:
        return {"name": name, "loaded": False}
    return {"name": name, "loaded": True, "version": status.version,
            "loaded_at": status.loaded_at.isoformat().replace("+00:00", "Z"),
            "age_days": round((datetime.now(UTC) - status.loaded_at).total_seconds() / 86400, 2),
            "rows": status.rows, "added": status.added, "removed": status.removed, "invalid": status.invalid,
            "file_name": status.file_name, "kind": status.kind, "source_hash": status.source_hash}


async def list_registries(request: web.Request) -> web.Response:
    store = RegistryStore(raw_redis(request))

    def read() -> list[dict[str, Any]]:
        names = sorted(set(NATIONAL) | set(store.names()))
        return [_version(n, store) for n in names]

    return web.json_response({"items": await sync(read)})


async def registry_status(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not _NAME.match(name):
        raise not_found("registry")
    found = await sync(_version, name, RegistryStore(raw_redis(request)))
    if not found["loaded"] and name not in NATIONAL:
        raise not_found("registry")
    return web.json_response(found)


def _operator(request: web.Request, tenant: str) -> None:
    allowed = {t.strip() for t in request.app[CONFIG]["gateway.registry_tenants"].split(",") if t.strip()}
    if tenant not in allowed:
        raise ApiError(403, "forbidden", "national registries are shared by every tenant: only the installation's "
                                         "operator tenants (setting gateway.registry_tenants) may load them")


async def upload_registry(request: web.Request) -> web.Response:
    who = principal(request)
    name = request.match_info["name"]
    if not _NAME.match(name):
        raise not_found("registry")
    _operator(request, who.tenant)
    upload = await receive_upload(request, UPLOAD_FIELDS, f"registry-{name}")
    fields = upload.fields
    delta = fields.get("delta", "false").lower()
    if delta not in ("true", "false", "1", "0"):
        upload.discard()
        raise invalid("delta", "expected true or false", code="wrong_type", rule="type", params={"type": "boolean"})
    country = fields.get("country") or None
    if country is not None and not re.match(r"^[A-Za-z]{2}$", country):
        upload.discard()
        raise invalid("country", "expected an ISO 3166 code such as FR", rule="pattern", params={"form": "country"})
    options: dict[str, Any] = {"file_name": upload.file_name,
                               "max_bad_share": request.app[CONFIG]["registry.max_bad_share"]}
    if fields.get("format"):
        options["fmt"] = fields["format"]
    if country:
        options["country"] = country.upper()
    from dialer.registry.jobs import enqueue_import

    client = raw_redis(request)
    job = await sync(enqueue_import, client, request.app[CONFIG].redis_url, name, str(upload.path),
                     delta in ("true", "1"), **options)
    await sync(client.set, job_key(who.tenant, job.id), f"{name}\t{int(delta in ('true', '1'))}\t{upload.path}",
               ex=JOB_KEY_TTL)
    await trail.record(redis_of(request), who.tenant, "registry.upload", actor=who.user, token_id=who.token_id,
                       registry=name, job=job.id, bytes=upload.size)
    return web.json_response({"id": job.id, "registry": name, "delta": delta in ("true", "1"), "status": "queued",
                              "progress": None, "report": None, "error": None}, status=202)


def _job_status(client: Any, job_id: str, name: str, delta: bool) -> dict[str, Any]:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from dialer.jobs import jobs_connection

    out: dict[str, Any] = {"id": job_id, "registry": name, "delta": delta, "progress": None, "report": None,
                           "error": None}
    try:
        job = Job.fetch(job_id, connection=jobs_connection(client))
    except NoSuchJobError:
        return {**out, "status": "expired"}
    status = job.get_status()
    out["status"] = str(getattr(status, "value", status))
    out["progress"] = job.meta.get("progress")
    if out["status"] == "finished":
        out["report"] = job.return_value()
    elif out["status"] == "failed":
        out["error"] = "the import job failed (see the worker's log); nothing changed"
    return out


async def registry_import(request: web.Request) -> web.Response:
    who, job_id = principal(request), request.match_info["job_id"]
    client = raw_redis(request)
    raw = await sync(client.get, job_key(who.tenant, job_id))
    if raw is None:
        raise not_found("registry import")
    name, delta, path = raw.decode().split("\t", 2)
    found = await sync(_job_status, client, job_id, name, delta == "1")
    if found["status"] in ("finished", "failed", "expired"):
        with contextlib.suppress(OSError):
            os.unlink(path)  # the staged upload is no longer needed
    return web.json_response(found)


UPLOAD_FIELDS = {
    "delta": {"type": "string", "enum": ["true", "false"], "description": "a change file (default false)"},
    "format": {"type": "string", "minLength": 1, "maxLength": 20,
               "description": "force an input format (docs/registry.md)"},
    "country": {"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "country of national numbers (CSV)"},
}

ROUTES = [
    Route("GET", "/v1/registries", list_registries, "National and custom registries: live version, date, size",
          "registry.read", response=listing(VERSION), tag="registries"),
    Route("GET", "/v1/registries/{name}", registry_status, "One registry's live version", "registry.read",
          response=VERSION, tag="registries"),
    Route("POST", "/v1/registries/{name}/imports", upload_registry,
          "Load a registry file (streamed multipart; queued as a registry import job). Operator tenants only",
          "registry.write", raw_body=multipart_body(UPLOAD_FIELDS), response=JOB, status=202, tag="registries",
          errors={"415": "the body is not multipart/form-data"}),
    Route("GET", "/v1/registry-imports/{job_id}", registry_import, "A registry import's progress and load report",
          "registry.read", response=JOB, resource="registry_import", tag="registries"),
]
