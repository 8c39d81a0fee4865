"""Imports as RQ jobs, and the functions the gateway and the CLI call.

    ticket = enqueue_import(client, tenant, path, list_id, region="FR", mapping=None, campaign=None)
    import_status(client, tenant, ticket.import_id)   # status, rows_done, rows_total, summary

An import runs in one coordinator job (`import_list_job`, queue "imports") that splits the file into
chunks (dialer.contacts.chunks) and stages them, helped by the helper jobs (`import_chunk_job`)
enqueued behind it; any worker on any machine can take a chunk (the file path must be readable
there). Chunks are leased: a chunk whose worker died is taken again once its lease expires. When
every chunk is staged, the coordinator commits (dialer.contacts.commit). If the coordinator dies,
`reconcile_import` (status pollers) or `resume_imports` (`dialer worker` at start) fails the import
(before its commit point) or finishes the commit (after).

Staging a chunk (dialer.contacts.staging) writes its valid rows into the record's staging tables, invisible to
readers; the commit (dialer.contacts.commit, dialer.contacts.publish) makes them contacts in one short record
transaction. Redis holds the import's status, counters, chunk leases and error report only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
import redis
from rq import get_current_job

from dialer.contacts.chunks import Chunk, plan_chunks
from dialer.contacts.columns import Column, ColumnPlan, Mapping, parse_mapping, plan_columns
from dialer.contacts.commit import ACTIVE, UNCLEAN, ImportCommit, _audit, _now, consent_record
from dialer.contacts.limits import DEFAULT_MAX_BAD_SHARE
from dialer.contacts.sniff import FileError, FileFormat, sample_records, sniff
from dialer.contacts.staging import (
    LEASE_SECONDS,
    ChunkStaging,
    ImportStopped,
    build_contact,
    drop_import,
    suppressed_numbers,
)
from dialer.contacts.store import Keys, Scripts, _s, import_status
from dialer.jobs import IMPORTS, get_queue, job_data_connection, jobs_connection
from dialer.record.store import RecordUnavailable
from dialer.webhooks.events import emit

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # about 20,000 rows: small enough that two workers finish together, each chunk one attempt
FINAL = ("committed", "failed")
_LIST_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

# KEYS: upload key; ARGV: new import id, status key prefix. The same upload answers the previous import
# unless that one failed.
_CLAIM_UPLOAD = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local st = redis.call('HGET', ARGV[2] .. cur, 'status')
  if st and st ~= 'failed' then return cur end
end
redis.call('SET', KEYS[1], ARGV[1])
return false
"""


@dataclass(frozen=True)
class ImportTicket:
    import_id: str
    duplicate_of: str | None = None  # set when this exact upload was already imported
    job_id: str | None = None


def check_list_id(list_id: str, what: str = "list") -> str:
    """Names that become part of Redis keys: 1-64 of A-Z a-z 0-9 _ . - (no ':' that could cross tenants)."""
    if not list_id or len(list_id) > 64 or not set(list_id) <= _LIST_ID_OK:
        raise FileError(f"bad_{what}", f"{what} names are 1-64 letters, digits, '_', '.' or '-'")
    return list_id


def file_fingerprint(path: str | Path, options: dict[str, Any]) -> str:
    """sha256 of the file's bytes and the options that change the result (region, mapping, campaign)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except OSError as exc:  # permissions, a device, a file removed meanwhile: a user error, not a traceback
        raise FileError("unreadable_file", f"cannot read {path}: {exc.strerror or exc}") from None
    digest.update(b"\0" + json.dumps(options, sort_keys=True).encode())
    return digest.hexdigest()


def _stat(path: str | Path) -> str:
    """Size and modification time: the file the workers read must be the one hashed at registration."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise FileError("unreadable_file", f"cannot read {path}: {exc.strerror or exc}") from None
    return f"{info.st_size}:{info.st_mtime_ns}"


def _check_unchanged(params: dict[str, str]) -> None:
    if params.get("file_stat") and _stat(params["path"]) != params["file_stat"]:
        # Its content hash (duplicate-upload detection) would no longer describe what is imported.
        raise FileError("file_changed", "the file changed after the import was registered: nothing was imported; "
                        "import it again once it is complete")


def create_import(client: redis.Redis, tenant: str, path: str | Path, list_id: str, *, region: str = "FR",
                  mapping: Mapping | None = None, campaign: str | None = None,
                  file_name: str | None = None, max_bad_share: float = DEFAULT_MAX_BAD_SHARE) -> ImportTicket:
    """Register an import (status "queued") without enqueuing it; answers the earlier import of the
    same file, list, region, mapping and campaign instead of a new one. The import stops (nothing imported)
    when more than `max_bad_share` of its first rows are rejected (dialer/contacts/limits.py)."""
    check_list_id(tenant, "tenant")
    check_list_id(list_id)
    region = region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise FileError("bad_region", f"unknown region {region!r}: use an ISO country code such as FR or US")
    if campaign is not None:
        check_list_id(campaign, "campaign")
    path = Path(path).resolve()
    if not path.is_file():
        what = "a directory, not a file" if path.is_dir() else "not a regular file" if path.exists() else "no such file"
        raise FileError("unreadable_file", f"{what}: {path}")
    mapping_json = (mapping or Mapping()).to_json()
    options = {"list": list_id, "region": region, "mapping": mapping_json, "campaign": campaign or ""}
    stat = _stat(path)
    fingerprint = file_fingerprint(path, options)
    import_id = uuid.uuid4().hex[:16]
    keys = Keys(tenant, import_id)
    previous = client.eval(_CLAIM_UPLOAD, 1, keys.upload(fingerprint), import_id, f"{keys.p}import:")
    if previous:
        return ImportTicket(_s(previous), duplicate_of=_s(previous))
    now = _now()
    client.hset(keys.status, mapping={
        "id": import_id, "tenant": tenant, "list": list_id, "campaign": campaign or "", "region": region,
        "path": str(path), "file_name": file_name or path.name, "fingerprint": fingerprint, "file_stat": stat,
        "mapping": mapping_json, "status": "queued", "rows_done": 0, "rows_total": 0,
        "created_at": now.isoformat(), "max_bad_share": repr(float(max_bad_share)),
    })
    client.zadd(keys.imports, {import_id: now.timestamp()})
    client.sadd(ACTIVE, f"{tenant}\t{import_id}")
    return ImportTicket(import_id)


def enqueue_import(client: redis.Redis, tenant: str, path: str | Path, list_id: str, *, region: str = "FR",
                   mapping: Mapping | None = None, campaign: str | None = None, file_name: str | None = None,
                   helpers: int = 1, max_bad_share: float = DEFAULT_MAX_BAD_SHARE) -> ImportTicket:
    """Register the import and enqueue its coordinator job, then `helpers` chunk jobs, on queue "imports".

    Helpers are enqueued now, behind their coordinator, so that idle workers (burst ones included)
    take them at once; a helper waits for the coordinator's plan, stages chunks, and ends when none
    is left (or at once if the import is already over: with a single worker they cost nothing).
    Raises FileError (code, message) for a bad tenant, list or campaign name, region or file.
    """
    ticket = create_import(client, tenant, path, list_id, region=region, mapping=mapping, campaign=campaign,
                           file_name=file_name, max_bad_share=max_bad_share)
    if ticket.duplicate_of:
        return ticket
    queue = get_queue(client, IMPORTS)
    job = queue.enqueue(import_list_job, tenant, ticket.import_id, job_timeout=6 * 3600, result_ttl=86400,
                        description=f"import {ticket.import_id} into list {list_id}")
    client.hset(Keys(tenant, ticket.import_id).status, "job_id", job.id)
    for _ in range(max(0, helpers)):
        queue.enqueue(import_chunk_job, tenant, ticket.import_id, job_timeout=6 * 3600, result_ttl=3600,
                      description=f"help import {ticket.import_id}")
    return ImportTicket(ticket.import_id, None, job.id)


# ---- jobs -------------------------------------------------------------------------------------------

def import_list_job(tenant: str, import_id: str) -> dict[str, Any]:
    """RQ entry point (queue "imports"): run the import; returns its final status."""
    job = get_current_job()
    assert job is not None
    data = job_data_connection(job)
    Importer(data, tenant, import_id, job=job).run()
    return import_status(data, tenant, import_id) or {}


def import_chunk_job(tenant: str, import_id: str) -> int:
    """RQ entry point: help an import by staging chunks until none is left. Returns chunks staged."""
    job = get_current_job()
    assert job is not None
    return Importer(job_data_connection(job), tenant, import_id, job=job).help()


def run_import_inline(client: redis.Redis, tenant: str, import_id: str,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run an import in this process (`dialer lists import --inline`, tests)."""
    Importer(client, tenant, import_id, progress=progress).run()
    return import_status(client, tenant, import_id) or {}


def resume_imports(client: redis.Redis, stale_after: float = 300.0) -> list[str]:
    """Finish commits interrupted after their commit point; fail imports abandoned before it.

    Run by `dialer worker` at start. An import is abandoned when it is "running" or "committing" and
    its coordinator has shown no sign of life (heartbeat, every 0.5 s while it works or waits) for
    `stale_after` seconds. Queued imports wait for a worker."""
    touched = []
    clean_failed(client)
    for member in client.smembers(ACTIVE):
        tenant, import_id = _s(member).split("\t", 1)
        importer = Importer(client, tenant, import_id)
        status = importer.field("status")
        if status is None or status in FINAL:
            client.srem(ACTIVE, member)
            continue
        heartbeat = float(importer.field("heartbeat") or 0)
        if time.time() - heartbeat <= stale_after:
            continue  # its coordinator is alive (or was a moment ago)
        if status == "committing":
            try:
                importer.commit(record_wait=0)
            except RecordUnavailable:
                continue  # logged; the watchdog tries again
            touched.append(import_id)
        elif status == "running":
            importer.fail("abandoned", "the import stopped (worker lost) before its commit: nothing was imported")
            touched.append(import_id)
    return touched


def reconcile_import(client: redis.Redis, tenant: str, import_id: str) -> dict[str, Any] | None:
    """For status pollers (CLI, gateway): when the import's coordinator job is over in RQ (failed, stopped,
    canceled, or gone) while the import is neither committed nor failed, finish it (after its commit point)
    or fail it as abandoned (before). Returns the import status."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    status = import_status(client, tenant, import_id)
    if not status or status["status"] not in ("running", "committing") or not status.get("job_id"):
        return status
    try:
        state = Job.fetch(status["job_id"], connection=jobs_connection(client)).get_status()
    except NoSuchJobError:
        state = None
    if state in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
        return status
    importer = Importer(client, tenant, import_id)
    if status["status"] == "committing":
        try:
            importer.commit(record_wait=0)
        except RecordUnavailable:
            return import_status(client, tenant, import_id)  # still committing: finished when the record is back
    else:
        importer.fail("abandoned", "the import's worker stopped before its commit: nothing was imported; retry")
    return import_status(client, tenant, import_id)


# ---- the import ----------------------------------------------------------------------------------------

class Importer(ChunkStaging, ImportCommit):
    """One import: plan, stage chunks (possibly with other workers), commit."""

    def __init__(self, client: redis.Redis, tenant: str, import_id: str, job: Any = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.client = client
        self.tenant = tenant
        self.import_id = import_id
        self.keys = Keys(tenant, import_id)
        self.scripts = Scripts(client)
        self.job = job
        self.progress = progress
        self._last_meta = 0.0

    # -- status helpers
    def field(self, name: str) -> str | None:
        value = self.client.hget(self.keys.status, name)
        return None if value is None else _s(value)

    def _set(self, **fields: Any) -> None:
        self.client.hset(self.keys.status, mapping={k: v if isinstance(v, (int, float)) else str(v)
                                                    for k, v in fields.items()})

    def _report_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_meta < 0.5:
            return
        self._last_meta = now
        done, total = self.client.hmget(self.keys.status, "rows_done", "rows_total")
        done_i, total_i = int(done or 0), int(total or 0)
        done_i = min(done_i, total_i) if total_i else done_i
        self.client.hset(self.keys.status, "heartbeat", time.time())
        if self.job is not None:
            self.job.meta.update({"rows_done": done_i, "rows_total": total_i, "import_id": self.import_id})
            self.job.save_meta()
        if self.progress is not None:
            self.progress(done_i, total_i)

    def fail(self, code: str, message: str) -> None:
        # The status first: a helper still staging sees it at its next batch and removes what it wrote after
        # this cleanup (the other order let a helper finish a chunk between the cleanup and the status).
        self._set(status="failed", error_code=code, error=message, finished_at=_now().isoformat())
        if self.field("format") is not None:  # planned: chunks may have been staged
            self._cleanup_staging()
        self.client.srem(ACTIVE, f"{self.tenant}\t{self.import_id}")
        log.warning("import %s failed: %s (%s)", self.import_id, code, message)
        _audit(self.client, self.tenant, self.import_id)
        emit(self.client, self.tenant, "import.failed", self.import_id,
             {"import_id": self.import_id, "error_code": code, "error": message})

    def _cleanup_staging(self) -> None:
        """Delete what the import staged: its rows in the record, every key under its Redis staging prefix. A record
        that cannot be reached now is retried later (UNCLEAN: `resume_imports`, the watchdog's sweep)."""
        from dialer.record.current import contact_record

        member = f"{self.tenant}\t{self.import_id}"
        try:
            drop_import(contact_record(), self.tenant, self.import_id)
            self.client.srem(UNCLEAN, member)
        except RecordUnavailable as exc:
            self.client.sadd(UNCLEAN, member)
            log.warning("import %s: its staged rows stay in the record until it is back (%s)", self.import_id, exc)
        batch: list[Any] = []
        for key in self.client.scan_iter(match=self.keys.stg + "*", count=5000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.unlink(*batch)
                batch.clear()
        if batch:
            self.client.unlink(*batch)

    # -- planning
    def _params(self) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.client.hgetall(self.keys.status).items()}

    def _load_plan(self, params: dict[str, str]) -> tuple[FileFormat, ColumnPlan]:
        fmt = FileFormat(**json.loads(params["format"]))
        plan_doc = json.loads(params["columns"])
        plan = ColumnPlan(plan_doc["has_header"], plan_doc["width"],
                          tuple(Column(**c) for c in plan_doc["columns"]), tuple(plan_doc["dropped"]))
        return fmt, plan

    def _plan(self, params: dict[str, str]) -> list[Chunk]:
        path = params["path"]
        _check_unchanged(params)
        fmt = sniff(path)
        mapping = parse_mapping(json.loads(params["mapping"]))
        sample = sample_records(path, fmt)
        if not sample:
            raise FileError("no_rows", "the file has no rows")
        plan = plan_columns(sample[0], mapping, sample[1:])
        chunks = plan_chunks(path, fmt, plan.has_header, CHUNK_BYTES)
        total = sum(c.rows for c in chunks)
        if total == 0:
            raise FileError("no_rows", "the file has a header but no rows")
        columns_doc = {"has_header": plan.has_header, "width": plan.width, "dropped": list(plan.dropped),
                       "columns": [{"index": c.index, "name": c.name, "field": c.field} for c in plan.columns]}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.status, mapping={
            "format": json.dumps(dataclasses.asdict(fmt)), "columns": json.dumps(columns_doc), "rows_total": total,
            "rows_done": 0, "chunks": len(chunks), "heartbeat": time.time(),
        })
        pipe.delete(self.keys.todo, self.keys.claims, self.keys.done)
        pipe.sadd(self.keys.staged, self.keys.todo, self.keys.claims, self.keys.done, self.keys.attempts,
                  self.keys.new_members, self.keys.duplicates, self.keys.counters)
        pipe.rpush(self.keys.todo, *[json.dumps(c.as_dict()) for c in chunks])
        pipe.execute()
        return chunks

    # -- entry points
    def run(self) -> None:
        status = self.field("status")
        if status is None:
            raise FileError("unknown_import", f"no import {self.import_id} for this tenant")
        if status in FINAL:
            return
        from dialer.contacts.watchdog import beating

        with beating(self.client, self.keys.status):  # the watchdog's sign of life (dialer/contacts/watchdog.py)
            self._run(status)

    def _check_record(self) -> None:
        """Before the commit point: the contacts go to the record, so a record that cannot be reached fails the
        import with nothing imported (RecordUnavailable) rather than leave a commit waiting."""
        from dialer.record.current import contact_record

        contact_record().query("SELECT 1 FROM contacts WHERE tenant = %s LIMIT 1", (self.tenant,))

    def _run(self, status: str) -> None:
        if status == "committing":
            try:
                self.commit()
            except RecordUnavailable:
                pass  # logged by commit; finished when the record is back
            return
        try:
            suppressed_numbers(self.client, self.tenant)  # fail before any work when erased numbers cannot be checked
            if status == "running":  # a re-run after a crash before the commit point: start over
                self._cleanup_staging()
            self._set(status="running", started_at=_now().isoformat(), heartbeat=time.time())
            params = self._params()
            self._check_record()  # the rows are staged in the record: a record that is down fails the import now
            chunks = self._plan(params)
            self._work(coordinator=True)
            self._wait_for_chunks(len(chunks))
            _check_unchanged(params)  # last moment to refuse: after the commit point the import completes
            self._check_record()
            self.commit()
        except FileError as exc:
            self.fail(exc.code, exc.message)
        except RecordUnavailable as exc:
            if self.field("status") != "committing":
                self.fail("record_unavailable", f"the record cannot be reached ({exc}): nothing was imported; "
                          "import the file again once it is back")
            # after the commit point the import is finished later (watchdog, worker start, status poller)
        except ImportStopped:
            self._cleanup_staging()  # declared abandoned while it was still working: leave nothing behind
        except Exception as exc:
            self.fail("internal_error", f"import stopped by an internal error ({type(exc).__name__}); "
                      "nothing was imported")
            raise

    def help(self, plan_timeout: float = 120.0) -> int:
        """Stage chunks of this import until none is left; returns how many this call staged."""
        deadline = time.monotonic() + plan_timeout
        while True:
            status = self.field("status")
            if status == "running" and self.field("format") is not None:  # planned: chunks are queued
                return self._work(coordinator=False)
            if status not in ("queued", "running") or time.monotonic() > deadline:
                return 0  # over already, or its coordinator never started
            time.sleep(0.02)

    def _wait_for_chunks(self, count: int) -> None:
        params = self._params()
        fmt, plan = self._load_plan(params)
        chunk_by_index: dict[int, Chunk] | None = None
        while self.client.hlen(self.keys.done) < count:
            self._report_progress()
            expired = [int(_s(m)) for m in self.client.zrangebyscore(self.keys.claims, "-inf", time.time())]
            pending = [i for i in expired if not self.client.hexists(self.keys.done, i)]
            if pending:
                if chunk_by_index is None:
                    chunk_by_index = {c.index: c for c in plan_chunks(params["path"], fmt, plan.has_header,
                                                                      CHUNK_BYTES)}
                for index in pending:  # its worker is gone: stage it here
                    self.client.zadd(self.keys.claims, {index: time.time() + LEASE_SECONDS})
                    self.client.hincrby(self.keys.status, "takeovers", 1)
                    self._stage_chunk(params, fmt, plan, chunk_by_index[index])
                continue
            time.sleep(0.1)
        self._report_progress(force=True)



def clean_failed(client: redis.Redis) -> int:
    """Remove the staged rows of imports (failed, or committed) whose cleanup found the record down; returns how many
    are done."""
    cleaned = 0
    for member in client.smembers(UNCLEAN):
        tenant, import_id = _s(member).split("\t", 1)
        importer = Importer(client, tenant, import_id)
        if importer.field("status") in ("queued", "running", "committing"):
            continue  # started again meanwhile: its own run cleans up
        importer._cleanup_staging()
        cleaned += not client.sismember(UNCLEAN, member)
    return cleaned


__all__ = [
    "ImportStopped", "ImportTicket", "build_contact", "consent_record", "create_import", "enqueue_import",
    "import_chunk_job", "import_list_job", "reconcile_import", "resume_imports", "run_import_inline",
]
