"""Contract end: export everything a tenant has, then delete it, keeping only what the law requires.

    offboard(client, tenant, path, at, actor, secret_key) -> OffboardReport

The export is a directory (or a .zip when `path` ends in .zip) the tenant receives (GDPR Art. 28(3)(g):
return the data, then delete it):
  manifest.json        what is in it, row counts, sha256 of every file, the audit verification
  contacts.jsonl       every contact (all fields)
  lists.json           lists with their member ids; campaigns.json: campaigns with their control history
  campaign_queues.jsonl  per campaign and contact: its queue state, dialing data, attempts, final reason
  people.jsonl         per number: consent records (evidence), relationships, attempts, opt-outs, last uses
  optouts.jsonl        the opt-out log
  imports.json         import statuses and summaries; import_errors.jsonl: every error report entry
  audit.jsonl          the whole audit trail (seq, at, kind, actor, payload, hash)
  suppression.json     the suppression hashes (no numbers)
Then every `t:{T}:*` key is deleted except what we must keep:
  t:{T}:suppression, t:{T}:suppression:key    erased people must never be called again if the tenant returns
  t:{T}:audit (and :head, :base, :anchors)    our evidence as processor of what was done (no numbers); it keeps
                                              being trimmed by its retention period
  t:{T}:retention:policy                      so that trimming goes on with the tenant's period
The tenant's API tokens are deleted, the tenant leaves the `tenants` set and joins `tenants:offboarded`
(the retention scheduler still visits it), and registered export files are deleted from disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from dialer.audit import AuditLog, iso
from dialer.audit_events import exports_key
from dialer.runtime.queues import ContactQueue

OFFBOARDED = "tenants:offboarded"
KEEP_SUFFIXES = ("suppression", "suppression:key", "audit", "audit:head", "audit:base", "audit:anchors",
                 "retention:policy")


class OffboardError(Exception):
    pass


@dataclass
class OffboardReport:
    tenant: str
    path: str
    files: dict[str, int]
    deleted_keys: int
    kept_keys: list[str]
    audit_seq: int
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _scan(client: redis.Redis, pattern: str) -> list[str]:
    return sorted(_s(k) for k in client.scan_iter(match=pattern, count=1000))


def _hash(client: redis.Redis, key: str) -> dict[str, Any]:
    return {_s(k): _json(v) for k, v in client.hgetall(key).items()}


def _write_exports(client: redis.Redis, tenant: str, out: Path, secret_key: str | bytes) -> dict[str, int]:
    p = f"t:{{{tenant}}}:"
    counts: dict[str, int] = {}

    def jsonl(name: str, rows: Any) -> None:
        n = 0
        with open(out / name, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True, default=str) + "\n")
                n += 1
        counts[name] = n

    def dump(name: str, value: Any, n: int) -> None:
        with open(out / name, "w", encoding="utf-8") as fh:
            json.dump(value, fh, ensure_ascii=False, sort_keys=True, indent=1, default=str)
        counts[name] = n

    from dialer.contacts.store import redis_contact

    # contacts an older dialer kept in Redis, not moved into the record yet (the record's: record_contacts.jsonl)
    contact_keys = [k for k in _scan(client, p + "contact:*")]
    jsonl("contacts.jsonl", (c for c in (redis_contact(client, tenant, k[len(p + "contact:"):])
                                         for k in contact_keys) if c is not None))
    lists = {}
    for list_id in sorted(_s(x) for x in client.smembers(p + "lists")):
        lists[list_id] = {**_hash(client, f"{p}list:{list_id}"),
                          "members": sorted(_s(m) for m in client.smembers(f"{p}list:{list_id}:members"))}
    dump("lists.json", lists, len(lists))
    campaigns = {}
    for cid in sorted(_s(c) for c in client.zrange(p + "campaigns", 0, -1)):
        campaigns[cid] = {**_hash(client, f"{p}campaign:{cid}"),
                          "control": [{_s(k): _s(v) for k, v in f.items()}
                                      for _, f in client.xrange(f"{p}campaign:{cid}:control")],
                          "contacts": sorted(_s(m) for m in client.smembers(f"{p}campaign:{cid}:contacts"))}
    dump("campaigns.json", campaigns, len(campaigns))

    def queued() -> Any:  # the runtime queues: what each contact's campaign did with it (dialer/runtime/queues.py)
        for cid in campaigns:
            for held in ContactQueue(client, tenant, cid).held_entries():
                yield {"campaign": cid, "contact_id": held.contact_id, "state": held.state,
                       "data": held.entry.contact.data() if held.entry else None, "attempts": held.attempts,
                       "final": held.final}
    jsonl("campaign_queues.jsonl", queued())

    numbers = sorted({k[len(p + "p:"):].rsplit(":", 1)[0] for k in _scan(client, p + "p:*")})
    dnc = {_s(k): _json(v) for k, v in client.hgetall(p + "dnc").items()}

    def people() -> Any:
        for e164 in numbers:
            k = f"{p}p:{e164}:"
            yield {"phone": e164,
                   "consents": [_json(x) for x in client.lrange(k + "consent", 0, -1)],
                   "relationships": [_json(x) for x in client.lrange(k + "rel", 0, -1)],
                   "attempts": [_json(x) for x in client.hvals(k + "att")],
                   "consent_last_used": {_s(m): s for m, s in client.zrange(k + "consent_used", 0, -1,
                                                                            withscores=True)},
                   "company_optout": dnc.get(e164)}
    jsonl("people.jsonl", people())
    campaign_dnc = {k: _hash(client, k) for k in _scan(client, p + "campaign:*:dnc")}
    dump("optouts.json", {"company": dnc, "campaigns": campaign_dnc}, len(dnc) + sum(map(len, campaign_dnc.values())))
    jsonl("optout_log.jsonl", ({"id": _s(i), **{_s(a): _s(b) for a, b in f.items()}}
                               for i, f in client.xrange(p + "optouts")))
    imports = {}
    errors = []
    for import_id in (_s(i) for i in client.zrange(p + "imports", 0, -1)):
        imports[import_id] = {k: v for k, v in _hash(client, f"{p}import:{import_id}").items()
                              if k not in ("commit_token", "heartbeat")}
        errors += [{"import_id": import_id, **json.loads(e)} for e in client.lrange(f"{p}import:{import_id}:errors",
                                                                                    0, -1)]
    dump("imports.json", imports, len(imports))
    jsonl("import_errors.jsonl", errors)
    audit = AuditLog(client, secret_key)
    jsonl("audit.jsonl", ({"seq": e.seq, "at": iso(e.at), "kind": e.kind, "actor": e.actor, "payload": e.payload,
                           "written": iso(e.written), "hash": e.hash} for e in audit.entries(tenant)))
    suppression = _hash(client, p + "suppression")
    dump("suppression.json", suppression, len(suppression))
    from datetime import date

    from dialer.subject_requests import register_key
    from dialer.usage.meter import days_key
    from dialer.usage.report import usage

    days = sorted(_s(d) for d in client.zrange(days_key(tenant), 0, -1))
    billed = usage(client, tenant, date.fromisoformat(f"{days[0][:4]}-{days[0][4:6]}-{days[0][6:]}"),
                   date.fromisoformat(f"{days[-1][:4]}-{days[-1][4:6]}-{days[-1][6:]}")) if days else {"days": []}
    jsonl("usage.jsonl", billed["days"])  # billing figures per day and campaign (dialer/usage)
    jsonl("subject_requests.jsonl", (_json(v) for v in client.hvals(register_key(tenant))))
    return counts


def _export_record_rows(record: Any, tenant: str, out: Path, name: str, what: str) -> int | None:
    """One of the tenant's record tables as JSON lines in `out/name` (`what`: its contacts, or what became of each
    contact that left a campaign's dial window); None when there is no record, or no such store in it."""
    if record is None:
        return None
    from dialer.record.contacts import iter_tenant_contacts, iter_tenant_finals
    from dialer.record.store import RecordNotMigrated, RecordUnavailable

    rows = {"contacts": iter_tenant_contacts, "campaign finals": iter_tenant_finals}[what]
    n = 0
    try:
        with open(out / name, "w", encoding="utf-8") as fh:
            for row in rows(record, tenant):
                fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True, default=str) + "\n")
                n += 1
    except RecordNotMigrated:  # no record (or no contact store) was ever set up
        (out / name).unlink(missing_ok=True)
        return None
    except RecordUnavailable as exc:
        raise OffboardError(f"the record's {what} cannot be read ({exc}): nothing was deleted") from None
    return n


def offboard(client: redis.Redis, tenant: str, path: str | os.PathLike[str], at: datetime, *, actor: str,
             secret_key: str | bytes, record: Any = None) -> OffboardReport:
    """Export all the tenant's data to `path`, verify it was written, then delete the tenant's data. Nothing is
    deleted if the export fails. The audit trail records the offboarding (kind retention, action offboard).
    `record`: the tenant's contacts in the record's contact store are exported (record_contacts.jsonl) and
    deleted too; a record that cannot be read stops the offboarding before anything is deleted."""
    from dialer.privacy import PrivacyError, check_tenant

    try:
        check_tenant(tenant)
    except PrivacyError as exc:
        raise OffboardError(exc.message) from None
    target = Path(path)
    if target.exists() and (target.is_file() or any(target.iterdir())):
        raise OffboardError(f"{target} exists and is not empty: choose a new path for the export")
    if record is None:  # the tenant's contacts live in the record (docs/record.md): never leave them behind
        from dialer.record.current import contact_record
        from dialer.record.store import RecordUnavailable

        try:
            record = contact_record()
        except RecordUnavailable as exc:
            raise OffboardError(f"the record's contacts cannot be read ({exc}): nothing was deleted") from None
    audit = AuditLog(client, secret_key)
    verified = audit.verify(tenant)
    work = Path(tempfile.mkdtemp(prefix=f"offboard-{tenant}-", dir=target.parent if target.parent.exists() else None))
    try:
        counts = _write_exports(client, tenant, work, secret_key)
        in_record = _export_record_rows(record, tenant, work, "record_contacts.jsonl", "contacts")
        if in_record is not None:
            counts["record_contacts.jsonl"] = in_record
            finals = _export_record_rows(record, tenant, work, "record_campaign_finals.jsonl", "campaign finals")
            if finals is not None:
                counts["record_campaign_finals.jsonl"] = finals
        manifest = {"tenant": tenant, "exported_at": iso(at), "files": {}, "audit_verify": str(verified)}
        for name in sorted(counts):
            digest = hashlib.sha256((work / name).read_bytes()).hexdigest()
            manifest["files"][name] = {"rows": counts[name], "sha256": digest}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        if target.suffix == ".zip":
            tmp_zip = target.with_suffix(".zip.part")
            with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as zf:
                for file in sorted(work.iterdir()):
                    zf.write(file, file.name)
            os.replace(tmp_zip, target)
        else:
            if target.exists():
                target.rmdir()
            shutil.move(str(work), target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)

    warnings = []
    for export_path in [_s(k) for k in client.hkeys(exports_key(tenant))]:
        try:
            Path(export_path).unlink(missing_ok=True)
        except OSError as exc:
            warnings.append(f"export file {export_path} not deleted: {exc.strerror}")
    if in_record:
        from dialer.record.contacts import delete_tenant
        from dialer.record.store import RecordUnavailable

        try:
            delete_tenant(record, tenant)
        except RecordUnavailable as exc:
            raise OffboardError(f"the record's contacts could not be deleted ({exc}); the export at {target} is "
                                "complete, run the offboarding again with a new export path") from None
    p = f"t:{{{tenant}}}:"
    keep = {p + s for s in KEEP_SUFFIXES}
    tokens = [f"token:{_s(sha)}" for sha in client.hvals(p + "tokens")]  # API tokens stop working at once
    if tokens:
        client.unlink(*tokens)
    doomed = [k for k in _scan(client, p + "*") if k not in keep]
    for n in range(0, len(doomed), 500):
        client.unlink(*doomed[n:n + 500])
    # Three steps (the sets are global, the record is in the tenant's slot: no one MULTI on a Redis Cluster),
    # in an order that a crash can only leave half-done towards "offboarded", and that a rerun completes.
    client.hset(f"tenant:{{{tenant}}}", mapping={"offboarded_at": iso(at)})
    client.sadd(OFFBOARDED, tenant)
    client.srem("tenants", tenant)
    for member in client.smembers("dialer:imports:active"):
        if _s(member).startswith(f"{tenant}\t"):
            client.srem("dialer:imports:active", member)
    seq = audit.append(tenant, "retention", actor, {
        "action": "offboard", "export": str(target), "files": counts, "deleted_keys": len(doomed),
        "kept": sorted(keep)}, at).seq
    kept = sorted(k for k in keep if client.exists(k))
    return OffboardReport(tenant, str(target), counts, len(doomed), kept, seq, warnings)
