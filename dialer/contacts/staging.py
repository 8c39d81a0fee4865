"""Staging an import's chunks straight into the record (issue 18): what a worker does with one chunk.

A worker parses its chunk (dialer.contacts.chunks), judges every row (dialer.contacts.rows) and writes the valid
ones, normalized, into the record's staging tables (`import_contacts`, `import_phones`: dialer/record/
contacts_schema.py), RECORD_BATCH rows per record transaction (PostgreSQL: COPY). Readers never look there: the
rows become contacts only when the import's commit moves them (dialer/contacts/publish.py). Redis keeps what is
small: the import's status and counters, the chunk queue and leases, and the error report (capped, ERRORS_KEPT).

Every staging of a chunk has its own `attempt` id, written in each of its rows. A chunk whose worker died is
staged again under a new attempt; the chunk's `done` entry (HSETNX: the first attempt to finish wins) names the
attempt the commit publishes, and the rows of any other attempt are deleted (by the loser itself, by the commit,
or by the import's cleanup when it fails): a chunk retried after a crash never doubles rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from json.encoder import encode_basestring as _quote  # the encoder's own string quoting (ensure_ascii=False)
from typing import Any

import redis

from dialer.contacts.chunks import Chunk, iter_records
from dialer.contacts.columns import ColumnPlan
from dialer.contacts.limits import DEFAULT_MAX_BAD_SHARE, BadShare, hopeless_message, split_kept
from dialer.contacts.rows import RowError, RowResult, process_record
from dialer.contacts.sniff import FileError, FileFormat
from dialer.contacts.store import Keys, Scripts, _s
from dialer.record.contacts_schema import COLUMNS
from dialer.record.store import Record, RecordUnavailable
from dialer.runtime.loader import priority_of
from dialer.suppression import version as suppression_version
from dialer.suppression import version_key

log = logging.getLogger(__name__)

BATCH = 1000  # rows per Redis round trip (counters, lease, status check)
RECORD_BATCH = 5000  # staged rows per record transaction
LEASE_SECONDS = 120  # a chunk not renewed for this long is taken by another worker
STAGE_WAIT_SECONDS = 60.0  # a staging write waits this long for a busy or unreachable record before giving up

STAGED_CONTACT = [*COLUMNS["contacts"], "attempt", "line"]
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # contact_row's JSON, set up once
STAGED_PHONE = ["tenant", "import_id", "attempt", "row_no", "pos", "contact_id", "phone", "col"]
STAGED_CONSENT = COLUMNS["import_consents"]


class ImportStopped(Exception):
    """The import left the "running" state (failed elsewhere) while this worker was staging."""


def contact_data(result: RowResult, cid: str, list_id: str, campaign: str, import_id: str,
                 row: int) -> dict[str, Any]:
    """A valid row as the record stores it (`contacts.data`): kept fields as x.<name>, every value a string,
    `phones` the list of compact phones (e, t, z, c, s, x, k: number, line type, zones, country, subdivision,
    extension, column)."""
    phones = [{"e": p.e164, "t": p.line_type, "z": ",".join(p.timezones), "c": p.country,
               "s": p.subdivision or "", "x": p.extension or "", "k": column}
              for column, p in result.phones]
    main = result.phones[0][1]
    contact: dict[str, Any] = {k if not k.startswith("keep:") else "x." + k[5:]: v for k, v in result.fields.items()}
    contact.update({
        "id": cid, "list": list_id, "campaign": campaign, "import": import_id, "row": str(row),
        "phone": main.e164, "line_type": main.line_type, "timezones": phones[0]["z"], "phone_country": main.country,
        "phone_subdivision": main.subdivision or "", "phones": phones,
    })
    return contact


def build_contact(result: RowResult, cid: str, list_id: str, campaign: str, import_id: str,
                  row: int) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The contact with `phones` as compact JSON text (the shape dialer.record.contacts.store_contacts takes), and
    its phones."""
    contact = contact_data(result, cid, list_id, campaign, import_id, row)
    phones = contact["phones"]
    contact["phones"] = json.dumps(phones, separators=(",", ":"))
    return contact, phones


class StagedRows:
    """One chunk attempt's rows on their way into the record's staging tables, RECORD_BATCH at a time."""

    def __init__(self, record: Record, tenant: str, import_id: str, attempt: str,
                 wait: float = STAGE_WAIT_SECONDS) -> None:
        self.record, self.tenant, self.import_id, self.attempt, self.wait = record, tenant, import_id, attempt, wait
        self.contacts: list[tuple[Any, ...]] = []
        self.phones: list[tuple[Any, ...]] = []
        self.consents: list[tuple[Any, ...]] = []

    def add_consent(self, row: int, phones: list[Any], consent: dict[str, Any]) -> None:
        """The row's consent (dialer.contacts.rows: date, purpose, written, source, evidence), once per number,
        staged with the row (issue 18: not in Redis)."""
        for pos, (_column, phone) in enumerate(phones):
            self.consents.append((self.tenant, self.import_id, self.attempt, row, pos, phone.e164,
                                  consent["given_at"], consent["purpose"], int(bool(consent["written"])),
                                  consent["source"], consent["evidence"]))

    def add(self, contact: dict[str, Any], row: int, line: int) -> None:
        """One contact as contact_data builds it (dialer.record.contacts.contact_row's columns, without its
        generic conversions: this runs for every row of every import)."""
        cid = contact["id"]
        self.contacts.append((
            self.tenant, cid, self.import_id, contact["campaign"] or None, row, contact["phone"],
            contact.get("country") or contact["phone_country"] or None, contact.get("postal_code") or None,
            contact.get("state") or None, contact["timezones"], priority_of(contact), _encode(contact),
            self.attempt, line))
        for pos, phone in enumerate(contact["phones"]):
            self.phones.append((self.tenant, self.import_id, self.attempt, row, pos, cid, phone["e"], phone["k"]))

    def add_result(self, result: RowResult, cid: str, list_id: str, campaign: str, row: int, line: int) -> None:
        """The same rows as add(contact_data(...)) (tests/test_import_staging.py compares them, JSON text byte for
        byte), straight from the judged row: no contact dict built and then encoded, the JSON written as text
        with the encoder's own string quoting. This runs for every row of every import."""
        fields = result.fields
        import_id, attempt, tenant = self.import_id, self.attempt, self.tenant
        main = result.phones[0][1]
        main_zones = ",".join(main.timezones)
        parts = [f"{_quote(k if not k.startswith('keep:') else 'x.' + k[5:])}:{_quote(v)}" for k, v in fields.items()]
        phones = ",".join(
            f'{{"e":{_quote(p.e164)},"t":{_quote(p.line_type)},"z":{_quote(",".join(p.timezones))},'
            f'"c":{_quote(p.country)},"s":{_quote(p.subdivision or "")},"x":{_quote(p.extension or "")},'
            f'"k":{_quote(column)}}}'
            for column, p in result.phones)
        parts.append(
            f'"id":{_quote(cid)},"list":{_quote(list_id)},"campaign":{_quote(campaign)},"import":{_quote(import_id)},'
            f'"row":"{row}","phone":{_quote(main.e164)},"line_type":{_quote(main.line_type)},'
            f'"timezones":{_quote(main_zones)},"phone_country":{_quote(main.country)},'
            f'"phone_subdivision":{_quote(main.subdivision or "")},"phones":[{phones}]')
        kept_priority = fields.get("keep:priority")  # priority_of reads x.priority: a kept column named so
        self.contacts.append((
            tenant, cid, import_id, campaign or None, row, main.e164, fields.get("country") or main.country or None,
            fields.get("postal_code") or None, fields.get("state") or None, main_zones,
            priority_of({"x.priority": kept_priority}) if kept_priority else 0, "{" + ",".join(parts) + "}",
            attempt, line))
        for pos, (column, phone) in enumerate(result.phones):
            self.phones.append((tenant, import_id, attempt, row, pos, cid, phone.e164, column))

    def __len__(self) -> int:
        return len(self.contacts)

    def flush(self) -> None:
        """Write the pending rows in one record transaction. A record that is busy (SQLite: another writer holds
        the lock) or down is retried for `wait` seconds, then RecordUnavailable is raised."""
        if not self.contacts:
            return
        deadline = time.monotonic() + self.wait
        while True:
            try:
                with self.record.transaction() as tx:
                    tx.insert_rows("import_contacts", STAGED_CONTACT, self.contacts)
                    tx.insert_rows("import_phones", STAGED_PHONE, self.phones)
                    tx.insert_rows("import_consents", STAGED_CONSENT, self.consents)
                break
            except RecordUnavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
        self.contacts.clear()
        self.phones.clear()
        self.consents.clear()

    def scrub(self, suppressed: frozenset[str], secret: bytes) -> int:
        """After the suppression list moved (an erasure while this chunk was staged): delete this attempt's staged
        contacts holding a number now on it. Returns how many went."""
        from dialer.record.contacts import drop_staged_holding
        from dialer.suppression import person_ref

        self.flush()  # the pending rows were judged against the old list too
        with self.record.transaction() as tx:
            phones = [str(r[0]) for r in tx.query(
                "SELECT DISTINCT phone FROM import_phones WHERE tenant = %s AND import_id = %s AND attempt = %s",
                (self.tenant, self.import_id, self.attempt))]
            erased = [p for p in phones if person_ref(secret, p) in suppressed]
            return drop_staged_holding(tx, self.tenant, self.import_id, erased, attempt=self.attempt)

    def drop(self) -> None:
        """Delete what this attempt staged (it lost to another attempt of its chunk, or the import stopped). A record
        that cannot be reached now is only logged: the commit deletes every attempt it does not publish, and a
        failed import's cleanup deletes all its rows."""
        self.contacts.clear()
        self.phones.clear()
        self.consents.clear()
        try:
            with self.record.transaction() as tx:
                for table in ("import_consents", "import_phones", "import_contacts"):
                    tx.execute(f"DELETE FROM {table} WHERE tenant = %s AND import_id = %s AND attempt = %s",
                               (self.tenant, self.import_id, self.attempt))
        except RecordUnavailable as exc:
            log.warning("import %s: staged rows of attempt %s not removed yet (%s)", self.import_id, self.attempt,
                        exc)


def drop_import(record: Record, tenant: str, import_id: str) -> None:
    """Everything the import staged in the record, and its commit's outcome (a failed import, or once committed)."""
    with record.transaction() as tx:
        for table in ("import_consents", "import_phones", "import_contacts", "import_outcomes"):
            tx.execute(f"DELETE FROM {table} WHERE tenant = %s AND import_id = %s", (tenant, import_id))


def suppressed_numbers(client: redis.Redis, tenant: str) -> tuple[frozenset[str], bytes]:
    """The tenant's suppression list (keyed hashes of erased numbers, dialer/suppression.py) and the key.
    An import cannot check it without the key: it fails as a whole (suppression_unavailable)."""
    from dialer.suppression import Suppression, SuppressionUnavailable

    store = Suppression(client)
    try:
        return store.snapshot(tenant), store.key
    except SuppressionUnavailable as exc:
        raise FileError("suppression_unavailable", f"{exc}; nothing was imported") from None


def drop_suppressed(result: Any, row: int, line: int, suppressed: frozenset[str], secret: bytes) -> None:
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


class ChunkStaging:
    """The staging half of dialer.contacts.jobs.Importer: claim chunks, stage each into the record."""

    client: redis.Redis
    tenant: str
    import_id: str
    keys: Keys
    scripts: Scripts
    field: Callable[[str], str | None]
    _params: Callable[[], dict[str, str]]
    _load_plan: Callable[[dict[str, str]], tuple[FileFormat, ColumnPlan]]
    _report_progress: Callable[..., None]
    _cleanup_staging: Callable[[], None]
    fail: Callable[[str, str], None]

    def _work(self, coordinator: bool) -> int:
        params = self._params()
        fmt, plan = self._load_plan(params)
        staged = 0
        while True:
            item = self.scripts.claim(keys=[self.keys.todo, self.keys.claims], args=[time.time() + LEASE_SECONDS])
            if not item:
                if not coordinator and self.field("status") == "failed":
                    # failed while this helper finished a chunk (its `done` entry came after the cleanup)
                    self._cleanup_staging()
                return staged
            try:
                self._stage_chunk(params, fmt, plan, Chunk(**json.loads(item)))
            except ImportStopped:
                if coordinator:
                    raise
                if self.field("status") == "failed":
                    self._cleanup_staging()  # failed meanwhile: remove what this helper wrote after the cleanup
                return staged
            staged += 1

    def _stage_chunk(self, params: dict[str, str], fmt: FileFormat, plan: ColumnPlan, chunk: Chunk) -> None:
        from dialer.record.current import contact_record

        attempt = uuid.uuid4().hex[:8]
        keys = self.keys
        errors_key = keys.chunk_errors(chunk.index, attempt)
        self.client.sadd(keys.staged, errors_key)
        self.client.sadd(keys.attempts, attempt)  # before any row: the commit finds every attempt that wrote
        rows = StagedRows(contact_record(), self.tenant, self.import_id, attempt)
        region = params["region"]
        counts: Counter[str] = Counter()
        errors: list[tuple[str, str]] = []  # (reason, JSON entry)
        pending_rows = 0
        batch_read = batch_rejected = 0
        max_bad_share = float(params.get("max_bad_share") or DEFAULT_MAX_BAD_SHARE)
        list_id, import_id, campaign = params["list"], self.import_id, params.get("campaign") or ""
        # the list's version first: an erasure after this read is seen at the next batch (flush), rows and all
        seen = suppression_version(self.client, self.tenant)
        suppressed, secret = suppressed_numbers(self.client, self.tenant)
        registered_at = datetime.fromisoformat(params["created_at"]) if params.get("created_at") else None
        examples: list[str] = []

        def stopped() -> None:
            """This attempt will never be published: remove what it staged, then stop."""
            rows.drop()
            self.client.unlink(errors_key)
            raise ImportStopped(self.import_id)

        def flush(final: bool = False) -> None:
            nonlocal pending_rows, batch_read, batch_rejected, seen, suppressed, secret
            if final or len(rows) >= RECORD_BATCH:
                rows.flush()  # before the status check below: a write that lands after a failure is seen there
            kept: list[str] = []
            if errors:  # only the first ERRORS_KEPT entries of the whole import are stored; the rest counted
                listed = int(self.client.hincrby(keys.counters, "errors_listed", len(errors)))
                kept, unlisted = split_kept(errors, listed - len(errors))
                for reason, count in unlisted.items():
                    counts[f"unlisted:{reason}"] += count
            pipe = self.client.pipeline(transaction=False)
            if kept:
                pipe.rpush(errors_key, *kept)
            pipe.hincrby(keys.status, "rows_done", pending_rows)
            pipe.hincrby(keys.counters, "judged_read", batch_read)
            pipe.hincrby(keys.counters, "judged_rejected", batch_rejected)
            pipe.zadd(keys.claims, {chunk.index: time.time() + LEASE_SECONDS}, xx=True)
            pipe.hget(keys.status, "status")
            pipe.get(version_key(self.tenant))  # after the rows reached the record: see the erasures made since
            replies = pipe.execute()
            if _s(replies[-2]) != "running":
                stopped()
            if int(replies[-1] or 0) != seen:
                # An erasure since this chunk read the suppression list: its number may be staged now (its own
                # deletion of staged rows may have come before they were written). Rows from here on are judged
                # against the new list, those staged before are deleted; the publish never sees them.
                seen = suppression_version(self.client, self.tenant)
                suppressed, secret = suppressed_numbers(self.client, self.tenant)
                rows.scrub(suppressed, secret)
            share = BadShare(int(replies[-5]), int(replies[-4]))
            if share.hopeless(max_bad_share):
                by_reason = Counter({k[8:]: v for k, v in counts.items() if k.startswith("invalid:")})
                self.fail("too_many_bad_rows", hopeless_message(share, max_bad_share, by_reason, examples))
                stopped()
            errors.clear()
            pending_rows = batch_read = batch_rejected = 0
            self._report_progress()

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
            elif not "".join(record.cells).strip():  # only blank cells (any(c.strip() ...) without a generator a row)
                counts["blank_rows"] += 1
            else:
                counts["rows_read"] += 1
                batch_read += 1
                result = process_record(record.cells, record.row, record.line, plan, region, registered_at)
                if suppressed and result.phones:
                    drop_suppressed(result, record.row, record.line, suppressed, secret)
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
                    rows.add_result(result, cid, list_id, campaign, record.row, record.line)
                    if result.consent is not None:
                        rows.add_consent(record.row, result.phones, result.consent)
                        counts["consents"] += len(result.phones)
            if pending_rows >= BATCH:
                flush()
        flush(final=True)
        won = self.client.hsetnx(keys.done, chunk.index, json.dumps({"attempt": attempt, "counts": dict(counts)}))
        if not won:  # another attempt of this chunk (its worker was thought dead) finished first: it is published
            rows.drop()
            self.client.unlink(errors_key)


__all__ = ["ChunkStaging", "ImportStopped", "StagedRows", "build_contact", "contact_data", "drop_import"]
