"""An import's commit (issue 18): the commit point, then roll forward until committed.

The commit point is one MULTI setting status=committing (before it, nothing of the import is visible and a failure
removes what it staged; after it, the import always completes: a crashed coordinator is finished by the watchdog,
a worker's start or a status poller). Then, holding the list's (and campaign's) commit lock in Redis:
  - publish: the staged rows become contacts in one short record transaction (dialer/contacts/publish.py), then
    its outcome is written to Redis once (the `published` mark);
  - the consents staged with the rows go through the fact store; the chunks' error lists join the report;
  - FINALIZE (dialer/contacts/store.py) sets the status and the list's metadata in one script.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from dialer.contacts.store import Keys, Scripts, _s
from dialer.facts import FactStore
from dialer.record.store import RecordUnavailable
from dialer.webhooks.events import emit
from rules.model import Consent

log = logging.getLogger("dialer.contacts.jobs")

LOCK_MS = 600_000
RECORD_WAIT_SECONDS = 60.0  # a commit waits this long for a record that is down, then the watchdog retries it
ACTIVE = "dialer:imports:active"  # "tenant\timport_id" of imports not yet committed or failed
CONSENT_PAGE = 500  # staged consents read per record query at the commit
CONSENT_GROUP = 100  # consents written per Redis transaction (with the commit's progress)
CONSENT_READ = ("row_no", "pos", "phone", "given_at", "purpose", "written", "source", "evidence")
class ConsentsDeferred(RecordUnavailable):
    """This process cannot write the import's consents now (no suppression key, or another one than the list's: an
    erased number's consent would get through). A RecordUnavailable so every caller of the commit treats it the
    same way: the import stays committing and a process with the key finishes it (watchdog, worker start)."""


UNCLEAN = "dialer:imports:unclean"  # "tenant\timport_id" of finished imports whose staged rows the record still holds


def _now() -> datetime:
    return datetime.now(UTC)


class ImportCommit:
    """The commit half of dialer.contacts.jobs.Importer."""

    client: redis.Redis
    tenant: str
    import_id: str
    keys: Keys
    scripts: Scripts
    field: Callable[[str], str | None]
    _set: Callable[..., None]
    _params: Callable[[], dict[str, str]]
    _report_progress: Callable[..., None]
    _cleanup_staging: Callable[[], None]

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
        from dialer.contacts.publish import forget_staged, publish
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
        attempts = [done[index]["attempt"] for index in sorted(done)]
        losers = sorted({_s(a) for a in self.client.smembers(keys.attempts)} - set(attempts))
        if not self.field("published"):
            wait = RECORD_WAIT_SECONDS if record_wait is None else record_wait
            deadline = time.monotonic() + wait
            while True:
                try:
                    began = time.monotonic()
                    outcome = publish(contact_record(), self.tenant, self.import_id, losers, list_id, campaign,
                                      beat=lambda: self.scripts.lock_all(keys=self._lock_keys(params),
                                                                         args=[token, LOCK_MS]))
                    # how long the record's transaction took (SQLite: how long it held the write lock)
                    self._set(publish_seconds=round(time.monotonic() - began, 3))
                    break
                except RecordUnavailable as exc:
                    self._set(record_error=str(exc))
                    if time.monotonic() >= deadline:
                        log.error("import %s: the record cannot be written (%s); the commit finishes when it "
                                  "is back", self.import_id, exc)
                        raise
                    self._report_progress()
                    time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
            self._record_outcome(outcome)
            self.client.hdel(keys.status, "record_error")
        # before FINALIZE: a commit that dies here is run again (status committing) and deletes what is left
        try:
            forget_staged(contact_record(), self.tenant, self.import_id, attempts)
        except RecordUnavailable as exc:  # invisible rows left behind: removed when the record is back (UNCLEAN)
            self.client.sadd(UNCLEAN, f"{self.tenant}\t{self.import_id}")
            log.warning("import %s: its staged rows stay in the record until it is back (%s)", self.import_id, exc)
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

    def _record_outcome(self, outcome: Any) -> None:
        """record_outcome, leaving out of the report the duplicates whose number was erased since the publish (the
        counts keep them: no number in a count), decided in its transaction (WATCH of the suppression list: an
        erasure meanwhile runs it again; the erasure cleans the reports once more after its entry is written)."""
        import dataclasses

        from dialer.contacts.publish import record_outcome
        from dialer.suppression import person_ref, process_key, suppression_key

        secret, key = process_key(), suppression_key(self.tenant)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    values = sorted({str(d.get("value") or "") for d in outcome.duplicates} - {""})
                    erased: set[str] = set()
                    if values and secret and pipe.hlen(key):
                        hits = pipe.hmget(key, [person_ref(secret, v) for v in values])
                        erased = {v for v, hit in zip(values, hits, strict=True) if hit is not None}
                    kept = dataclasses.replace(outcome, duplicates=[d for d in outcome.duplicates
                                                                    if str(d.get("value") or "") not in erased])
                    pipe.multi()
                    record_outcome(pipe, self.keys, kept)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

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
        """Write the consents staged with the published attempts' rows (import_consents) through the fact store, in
        file order (row, then the row's number): CONSENT_GROUP a transaction, each audited as FactStore does, with
        the import's progress (`consents_done`), so a commit run again after a crash goes on after the last group
        written: none twice, none lost. Numbers erased meanwhile get none (checked in the same transaction). Then
        the staged consents go."""
        from dialer.audit import AuditLog
        from dialer.record.current import contact_record
        from dialer.suppression import Suppression, SuppressionUnavailable, person_ref, process_key, suppression_key

        secret = process_key()
        checker = Suppression(self.client, secret)  # refs without the list's key match nothing: fail closed
        # audited like every consent change (dialer/audit_events.py), in the same transaction as the record
        store = FactStore(self.client, audit=AuditLog(self.client, secret))
        record = contact_record()
        cursor = self.field("consents_done")  # the progress as read: each group is written only if it still is
        row_no, pos = (int(x) for x in (cursor or "0,-1").split(","))
        for index in sorted(done):
            while True:
                page = record.query(
                    f"SELECT {', '.join(CONSENT_READ)} FROM import_consents WHERE tenant = %s AND import_id = %s AND "
                    "attempt = %s AND (row_no > %s OR (row_no = %s AND pos > %s)) ORDER BY row_no, pos LIMIT %s",
                    (self.tenant, self.import_id, done[index]["attempt"], row_no, row_no, pos, CONSENT_PAGE))
                if not page:
                    break
                for start in range(0, len(page), CONSENT_GROUP):
                    group = [dict(zip(CONSENT_READ, values, strict=True))
                             for values in page[start:start + CONSENT_GROUP]]
                    after = f"{int(group[-1]['row_no'])},{int(group[-1]['pos'])}"
                    try:
                        wrote = store.add_consents_unless_erased(
                            self.tenant, [(doc["phone"], consent_record({**doc, "row": doc["row_no"]},
                                                                        self.import_id),
                                           person_ref(secret, doc["phone"])) for doc in group],
                            suppression_key(self.tenant), actor="job:import",
                            also=[("hset", (self.keys.status, "consents_done", after))],
                            fence=(self.keys.status, "consents_done", cursor), checker=checker)
                    except SuppressionUnavailable as exc:
                        log.error("import %s: its consents cannot be written by this process (%s); the commit "
                                  "finishes in one that has the key", self.import_id, exc)
                        raise ConsentsDeferred(str(exc)) from None
                    if wrote is None:  # another run of this commit wrote meanwhile: go on from where it got to
                        cursor = self.field("consents_done")
                        row_no, pos = (int(x) for x in (cursor or "0,-1").split(","))
                        break
                    cursor = after
                    row_no, pos = (int(x) for x in after.split(","))
        for index in sorted(done):  # consents an older dialer's worker staged in Redis (an import across an upgrade)
            key = self.keys.consents(index, done[index]["attempt"])
            while True:
                items = self.client.lrange(key, 0, 199)
                if not items:
                    break
                for item in items:
                    legacy = json.loads(item)
                    store.add_consent(self.tenant, legacy["e164"], consent_record(legacy, self.import_id),
                                      actor="job:import")
                self.client.ltrim(key, len(items), -1)
        try:
            with record.transaction() as tx:
                tx.execute("DELETE FROM import_consents WHERE tenant = %s AND import_id = %s",
                           (self.tenant, self.import_id))
        except RecordUnavailable as exc:  # all written (consents_done): removed when the record is back (UNCLEAN)
            self.client.sadd(UNCLEAN, f"{self.tenant}\t{self.import_id}")
            log.warning("import %s: its staged consents stay in the record until it is back (%s)", self.import_id,
                        exc)


def _audit(client: redis.Redis, tenant: str, import_id: str) -> None:
    """The import's outcome in the tenant's audit trail (counts only, no rows)."""
    from dialer.audit_events import import_finished

    try:
        import_finished(client, tenant, import_id, _now())
    except redis.RedisError as exc:  # the import stands; say loudly that its audit entry is missing
        log.error("import %s: audit entry not written (%s)", import_id, exc)


def consent_record(doc: dict[str, Any], import_id: str) -> Consent:
    """The rules.model.Consent of a staged consent (columns of one row, see dialer.contacts.rows)."""
    return Consent(
        given_at=datetime.fromisoformat(doc["given_at"]), purpose=doc["purpose"] or "telemarketing",
        written=bool(doc["written"]), source=doc["source"] or f"list import {import_id}",
        evidence=doc["evidence"] or f"list import {import_id}, row {doc['row']}",
    )
