"""Imports as RQ jobs, and the functions the gateway and the CLI call.

    ticket = enqueue_import(client, tenant, path, list_id, region="FR", mapping=None, campaign=None)
    import_status(client, tenant, ticket.import_id)   # status, rows_done, rows_total, summary

An import runs in one coordinator job (`import_list_job`, queue "imports") that splits the file into
chunks (dialer.contacts.chunks) and stages them, helped by the helper jobs (`import_chunk_job`)
enqueued behind it; any worker on any machine can take a chunk (the file path must be readable
there). Chunks are leased: a chunk whose worker died is taken again once its lease expires. When
every chunk is staged, the coordinator commits (dialer.contacts.store). If the coordinator dies,
`reconcile_import` (status pollers) or `resume_imports` (`dialer worker` at start) fails the import
(before its commit point) or finishes the commit (after).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
import redis
from rq import get_current_job

from dialer.contacts.chunks import Chunk, iter_records, plan_chunks
from dialer.contacts.columns import Column, ColumnPlan, Mapping, parse_mapping, plan_columns
from dialer.contacts.limits import DEFAULT_MAX_BAD_SHARE, BadShare, hopeless_message, split_kept
from dialer.contacts.rows import RowError, RowResult, process_record
from dialer.contacts.sniff import FileError, FileFormat, sample_records, sniff
from dialer.contacts.store import Keys, Scripts, _s, import_status
from dialer.facts import FactStore
from dialer.jobs import IMPORTS, get_queue, job_data_connection, jobs_connection
from dialer.record.store import RecordUnavailable
from dialer.webhooks.events import emit
from rules.model import Consent

log = logging.getLogger(__name__)

BATCH = 1000  # rows per Redis round trip while staging
LEASE_SECONDS = 120  # a chunk not renewed for this long is taken by another worker
LOCK_MS = 600_000
RECORD_WAIT_SECONDS = 60.0  # a commit waits this long for a record that is down, then the watchdog retries it
CHUNK_BYTES = 4 << 20
ACTIVE = "dialer:imports:active"  # "tenant\timport_id" of imports not yet committed or failed
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


class ImportStopped(Exception):
    """The import left the "running" state (failed elsewhere) while this worker was staging."""


@dataclass(frozen=True)
class ImportTicket:
    import_id: str
    duplicate_of: str | None = None  # set when this exact upload was already imported
    job_id: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


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


def build_contact(result: RowResult, cid: str, list_id: str, campaign: str, import_id: str,
                  row: int) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A valid row as the stored contact (kept fields as x.<name>, phones in their compact form) and its phones."""
    phones = [{"e": p.e164, "t": p.line_type, "z": ",".join(p.timezones), "c": p.country,
               "s": p.subdivision or "", "x": p.extension or "", "k": column}
              for column, p in result.phones]
    main = result.phones[0][1]
    contact: dict[str, Any] = {k if not k.startswith("keep:") else "x." + k[5:]: v for k, v in result.fields.items()}
    contact.update({
        "id": cid, "list": list_id, "campaign": campaign, "import": import_id, "row": row,
        "phone": main.e164,
        "line_type": main.line_type, "timezones": phones[0]["z"], "phone_country": main.country,
        "phone_subdivision": main.subdivision or "",
        "phones": json.dumps(phones, separators=(",", ":")),
    })
    return contact, phones


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

class Importer:
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
        """Delete every key under the import's staging prefix (staged contacts are found by SCAN)."""
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
        pipe.sadd(self.keys.staged, self.keys.todo, self.keys.claims, self.keys.done, self.keys.seen,
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
            _suppressed(self.client, self.tenant)  # fail before any work when erased numbers cannot be checked
            if status == "running":  # a re-run after a crash before the commit point: start over
                self._cleanup_staging()
            self._set(status="running", started_at=_now().isoformat(), heartbeat=time.time())
            params = self._params()
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

    # -- staging
    def _work(self, coordinator: bool) -> int:
        params = self._params()
        fmt, plan = self._load_plan(params)
        staged = 0
        while True:
            item = self.scripts.claim(keys=[self.keys.todo, self.keys.claims], args=[time.time() + LEASE_SECONDS])
            if not item:
                if not coordinator and self.field("status") != "running":
                    # failed while this helper finished a chunk (its `done` entry came after the cleanup)
                    self._cleanup_staging()
                return staged
            try:
                self._stage_chunk(params, fmt, plan, Chunk(**json.loads(item)))
            except ImportStopped:
                if coordinator:
                    raise
                self._cleanup_staging()  # failed meanwhile: remove what this helper wrote after the cleanup
                return staged
            staged += 1

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

    def _stage_chunk(self, params: dict[str, str], fmt: FileFormat, plan: ColumnPlan, chunk: Chunk) -> None:
        attempt = uuid.uuid4().hex[:8]
        keys = self.keys
        rows_key = keys.rows(chunk.index, attempt)
        errors_key = keys.chunk_errors(chunk.index, attempt)
        consents_key = keys.consents(chunk.index, attempt)
        self.client.sadd(keys.staged, rows_key, errors_key, consents_key)
        region = params["region"]
        counts: Counter[str] = Counter()
        packed: list[str] = []
        errors: list[tuple[str, str]] = []  # (reason, JSON entry)
        consents: list[str] = []
        seen_args: list[Any] = []
        pending_rows = 0
        batch_read = batch_rejected = 0
        max_bad_share = float(params.get("max_bad_share") or DEFAULT_MAX_BAD_SHARE)
        list_id, import_id, campaign = params["list"], self.import_id, params.get("campaign") or ""
        suppressed, secret = _suppressed(self.client, self.tenant)
        registered_at = datetime.fromisoformat(params["created_at"]) if params.get("created_at") else None

        def flush() -> None:
            nonlocal pending_rows, batch_read, batch_rejected
            kept: list[str] = []
            if errors:  # only the first ERRORS_KEPT entries of the whole import are stored; the rest counted
                listed = int(self.client.hincrby(keys.counters, "errors_listed", len(errors)))
                kept, unlisted = split_kept(errors, listed - len(errors))
                for reason, count in unlisted.items():
                    counts[f"unlisted:{reason}"] += count
            pipe = self.client.pipeline(transaction=False)
            if packed:
                pipe.rpush(rows_key, *packed)
            if kept:
                pipe.rpush(errors_key, *kept)
            if consents:
                pipe.rpush(consents_key, *consents)
            if seen_args:
                self.scripts.seen_min(keys=[keys.seen], args=seen_args, client=pipe)
            pipe.hincrby(keys.status, "rows_done", pending_rows)
            pipe.hincrby(keys.counters, "judged_read", batch_read)
            pipe.hincrby(keys.counters, "judged_rejected", batch_rejected)
            pipe.zadd(keys.claims, {chunk.index: time.time() + LEASE_SECONDS}, xx=True)
            pipe.hget(keys.status, "status")
            replies = pipe.execute()
            if _s(replies[-1]) != "running":
                raise ImportStopped(self.import_id)
            share = BadShare(int(replies[-4]), int(replies[-3]))
            if share.hopeless(max_bad_share):
                self._stop_hopeless(share, max_bad_share, counts, examples)
                raise ImportStopped(self.import_id)
            packed.clear()
            errors.clear()
            consents.clear()
            seen_args.clear()
            pending_rows = batch_read = batch_rejected = 0
            self._report_progress()

        examples: list[str] = []

        for record in iter_records(params["path"], fmt, chunk.start, chunk.end, chunk.first_row, chunk.first_line,
                                   chunk.skip):
            pending_rows += 1
            if record.cells is None:
                counts["rows_read"] += 1
                counts["rejected"] += 1
                counts["invalid:malformed_record"] += 1
                batch_read += 1
                batch_rejected += 1
                span = f" (the record runs over {record.lines} lines from line {record.line})" \
                    if record.lines > 1 else ""
                errors.append(("malformed_record", json.dumps(RowError(
                    record.row, record.line, "", "", "malformed_record",
                    f"unreadable CSV record: {record.error}{span}; those lines are not imported",
                ).as_dict())))
            elif not any(cell.strip() for cell in record.cells):
                counts["blank_rows"] += 1
            else:
                counts["rows_read"] += 1
                batch_read += 1
                result = process_record(record.cells, record.row, record.line, plan, region, registered_at)
                if suppressed and result.phones:
                    _drop_suppressed(result, record.row, record.line, suppressed, secret)
                if result.rejected and record.lines > 1 and result.errors:
                    # A quote left open swallows the following lines: say which lines were lost.
                    first = result.errors[0]
                    last_line = record.line + record.lines - 1
                    result.errors[0] = dataclasses.replace(
                        first, message=f"{first.message} (this record runs over lines {record.line}-{last_line})")
                for error in result.errors:
                    errors.append((error.reason, json.dumps(error.as_dict())))
                    counts[f"{error.severity}s"] += 1
                if result.rejected:
                    counts["rejected"] += 1
                    counts[f"invalid:{result.rejected}"] += 1
                    batch_rejected += 1
                    if len(examples) < 3 and result.errors:
                        first = result.errors[0]
                        examples.append(f"row {first.row} ({first.column or 'record'}): {first.message}")
                else:
                    cid = f"{import_id}-{record.row}"
                    contact, phones = build_contact(result, cid, list_id, campaign, import_id, record.row)
                    numbers = ",".join(phone["e"] for phone in phones)
                    # the contact travels in its row item (JSON escapes tabs): one LRANGE gives the commit all
                    packed.append(f"{cid}\t{record.row}\t{record.line}\t{numbers}\t"
                                  f"{json.dumps({k: str(v) for k, v in contact.items()}, separators=(',', ':'))}")
                    for phone in phones:
                        seen_args.extend((record.row, phone["e"]))
                    if result.consent is not None:
                        for _, phone in result.phones:
                            consents.append(json.dumps({"e164": phone.e164, **result.consent}))
                            counts["consents"] += 1
            if pending_rows >= BATCH:
                flush()
        flush()
        self.client.hsetnx(keys.done, chunk.index, json.dumps({"attempt": attempt, "counts": dict(counts)}))

    def _stop_hopeless(self, share: BadShare, max_share: float, counts: Counter[str], examples: list[str]) -> None:
        by_reason = Counter({k[8:]: v for k, v in counts.items() if k.startswith("invalid:")})
        self.fail("too_many_bad_rows", hopeless_message(share, max_share, by_reason, examples))

    # -- commit
    def _summary(self) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        for value in self.client.hvals(self.keys.done):
            counts.update(json.loads(value)["counts"])
        extra = {_s(k): int(v) for k, v in self.client.hgetall(self.keys.counters).items()}
        unlisted: Counter[str] = Counter()
        for key, value in [*counts.items(), *extra.items()]:
            if key.startswith(("unlisted:", "unlisted_dup:")):
                unlisted[key.split(":", 1)[1]] += value
        return {
            "rows_read": counts["rows_read"],
            "valid": counts["rows_read"] - counts["rejected"],
            "invalid": counts["rejected"],
            "invalid_by_reason": {k[8:]: v for k, v in sorted(counts.items()) if k.startswith("invalid:")},
            "duplicates": extra.get("duplicate_rows", 0),
            "duplicate_phones": extra.get("duplicate_phones", 0),
            "duplicates_by_reason": {k[4:]: v for k, v in sorted(extra.items()) if k.startswith("dup:")},
            "contacts_added": extra.get("contacts", 0),
            "blank_rows": counts["blank_rows"],
            "warnings": counts["warnings"],
            "consents": counts["consents"],
            # The error report keeps the first ERRORS_KEPT entries; the others are counted by reason.
            "errors_not_listed": dict(sorted(unlisted.items())),
        }

    def _lock_keys(self, params: dict[str, str]) -> list[str]:
        locks = [self.keys.list_lock(params["list"])]
        if params.get("campaign"):
            locks.append(self.keys.campaign_lock(params["campaign"]))
        return locks

    def _lock(self, params: dict[str, str], token: str) -> None:
        locks = self._lock_keys(params)
        while not self.scripts.lock_all(keys=locks, args=[token, LOCK_MS]):
            self._report_progress()
            time.sleep(0.2)  # another import is committing into this list or campaign

    def commit(self, record_wait: float | None = None) -> None:
        """Commit point, then roll forward: contacts into the record (one transaction), then Redis's counters and
        report, consents, the list's metadata. `record_wait`: how long to wait for a record that is down before
        giving up for now (the import stays committing: the watchdog, a worker's start or a status poller
        finishes it later; RecordUnavailable is raised)."""
        from dialer.contacts.publish import publish, record_outcome
        from dialer.record.current import contact_record

        params = self._params()
        token = params.get("commit_token") or uuid.uuid4().hex
        if params["status"] != "committing":
            self._lock(params, token)
            done = {int(_s(k)): json.loads(v) for k, v in self.client.hgetall(self.keys.done).items()}
            pipe = self.client.pipeline(transaction=True)  # --- the commit point ---
            pipe.hset(self.keys.status, mapping={"status": "committing", "commit_token": token,
                                                 "committing_at": _now().isoformat()})
            pipe.execute()
            params = self._params()
        else:
            self._lock(params, token)
        done = {int(_s(k)): json.loads(v) for k, v in self.client.hgetall(self.keys.done).items()}
        list_id, campaign = params["list"], params.get("campaign") or ""
        keys = self.keys
        chunks = [(index, done[index]["attempt"]) for index in sorted(done)]
        if not self.field("published"):
            wait = RECORD_WAIT_SECONDS if record_wait is None else record_wait
            deadline = time.monotonic() + wait
            while True:
                try:
                    outcome = publish(self.client, contact_record(), keys, chunks, list_id, campaign,
                                      beat=lambda: self.scripts.lock_all(keys=self._lock_keys(params),
                                                                         args=[token, LOCK_MS]))
                    break
                except RecordUnavailable as exc:
                    self._set(record_error=str(exc))
                    if time.monotonic() >= deadline:
                        log.error("import %s: the record cannot be written (%s); the commit finishes when it "
                                  "is back", self.import_id, exc)
                        raise
                    self._report_progress()
                    time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
            record_outcome(self.client, keys, outcome)
            self.client.hdel(keys.status, "record_error")
        self._report_progress()
        self._record_consents(done)
        summary = self._summary()
        error_moves: list[str] = []
        for index in sorted(done):
            error_moves += [keys.chunk_errors(index, done[index]["attempt"]), f"{keys.errors}:{index:05d}"]
        error_moves += [keys.duplicates, f"{keys.errors}:dups"]
        self._merge_errors(error_moves)
        fields = {"status": "committed", "finished_at": _now().isoformat(), "summary": json.dumps(summary),
                  "rows_done": params.get("rows_total", "0")}
        self.scripts.finalize(
            keys=[keys.list_members(list_id), keys.campaign_contacts(campaign) if campaign else keys.no_campaign,
                  keys.new_members, keys.status, keys.staged, keys.list(list_id), keys.lists,
                  f"{keys.list(list_id)}:imports"],
            args=[json.dumps(fields), list_id, self.import_id, summary["contacts_added"], _now().isoformat(),
                  params["region"]],
        )
        if self.field("takeovers"):
            self._cleanup_staging()  # a slow worker may have staged a chunk again after it was published
        self.scripts.unlock_all(keys=self._lock_keys(params), args=[token])
        self.client.srem(ACTIVE, f"{self.tenant}\t{self.import_id}")
        self._report_progress(force=True)
        log.info("import %s committed: %s", self.import_id, summary)
        _audit(self.client, self.tenant, self.import_id)
        emit(self.client, self.tenant, "import.finished", self.import_id,
             {"import_id": self.import_id, "list": list_id, "campaign": campaign or None, "summary": summary})

    def _merge_errors(self, moves: list[str]) -> None:
        """Append the staged error lists, in chunk order, to the import's error report (idempotent:
        each source list is emptied as it is copied, and a re-run continues where it stopped)."""
        final = self.keys.errors
        for src in moves[0::2]:
            while True:
                items = self.client.lrange(src, 0, 999)
                if not items:
                    break
                pipe = self.client.pipeline(transaction=True)
                pipe.rpush(final, *items)
                pipe.ltrim(src, len(items), -1)
                pipe.execute()

    def _record_consents(self, done: dict[int, dict[str, Any]]) -> None:
        """Write the staged consent records through the fact store (one transaction each, as FactStore
        does; a re-run after a crash may write a record twice, never lose one)."""
        from dialer.audit import AuditLog
        from dialer.suppression import process_key

        # audited like every consent change (dialer/audit_events.py), in the same transaction as the record
        store = FactStore(self.client, audit=AuditLog(self.client, process_key()))
        for index in sorted(done):
            key = self.keys.consents(index, done[index]["attempt"])
            while True:
                items = self.client.lrange(key, 0, 199)
                if not items:
                    break
                for item in items:
                    doc = json.loads(item)
                    store.add_consent(self.tenant, doc["e164"], consent_record(doc, self.import_id),
                                      actor="job:import")
                self.client.ltrim(key, len(items), -1)


def _audit(client: redis.Redis, tenant: str, import_id: str) -> None:
    """The import's outcome in the tenant's audit trail (counts only, no rows)."""
    from dialer.audit_events import import_finished

    try:
        import_finished(client, tenant, import_id, _now())
    except redis.RedisError as exc:  # the import stands; say loudly that its audit entry is missing
        log.error("import %s: audit entry not written (%s)", import_id, exc)


def _suppressed(client: redis.Redis, tenant: str) -> tuple[frozenset[str], bytes]:
    """The tenant's suppression list (keyed hashes of erased numbers, dialer/suppression.py) and the key.
    An import cannot check it without the key: it fails as a whole (suppression_unavailable)."""
    from dialer.suppression import Suppression, SuppressionUnavailable

    store = Suppression(client)
    try:
        return store.snapshot(tenant), store.key
    except SuppressionUnavailable as exc:
        raise FileError("suppression_unavailable", f"{exc}; nothing was imported") from None


def _drop_suppressed(result: Any, row: int, line: int, suppressed: frozenset[str], secret: bytes) -> None:
    """Numbers erased at their owner's request are never imported again: each is reported (masked, since the
    report must not bring the number back) with reason SUPPRESSED; a row left without a number is rejected."""
    from dialer.audit import AuditLog
    from dialer.suppression import person_ref

    kept = []
    for column, phone in result.phones:
        if person_ref(secret, phone.e164) in suppressed:
            result.errors.append(RowError(row, line, column, AuditLog.mask(phone.e164), "SUPPRESSED",
                                          "this number was erased at its owner's request and is on the "
                                          "suppression list: not imported"))
        else:
            kept.append((column, phone))
    if len(kept) < len(result.phones):
        result.phones = kept
        if not kept:
            result.rejected = "SUPPRESSED"
            result.consent = None


def consent_record(doc: dict[str, Any], import_id: str) -> Consent:
    """The rules.model.Consent of a staged consent (columns of one row, see dialer.contacts.rows)."""
    return Consent(
        given_at=datetime.fromisoformat(doc["given_at"]), purpose=doc["purpose"] or "telemarketing",
        written=bool(doc["written"]), source=doc["source"] or f"list import {import_id}",
        evidence=doc["evidence"] or f"list import {import_id}, row {doc['row']}",
    )


__all__ = [
    "ImportStopped", "ImportTicket", "create_import", "enqueue_import", "import_chunk_job", "import_list_job",
    "reconcile_import", "resume_imports", "run_import_inline",
]
