"""Retention per tenant: keep each kind of data only as long as the tenant's policy and the law say.

Periods (days) per kind, defaults and legal minimums in dialer/data/retention.toml (counsel's file); a
tenant's own periods live in `t:{T}:retention:policy` (hash kind -> days) and can never go below the
minimum. `run(client, tenant, at)` applies the policy at the instant `at` (the caller's clock: tests pass a
controlled one); it runs as the RQ job `retention_job` on queue `retention`, enqueued for every tenant by
`dialer retention schedule` (a small periodic enqueuer) or by hand with `dialer retention run`. Each round of the
scheduler also enqueues the record's retention (dialer.record.retention.record_retention_job: the archived audit
trail, gate decisions and call records, by each tenant's audit period).

What a run removes (and what it never removes):
  attempts          attempt records older than the period (a number's history; its version is bumped)
  consent_evidence  consent records whose period ended, counted from the later of the grant, the withdrawal
                    and the last use (German numbers: last use recorded by the gate; DE minimum 5 years).
                    A withdrawal is kept while any consent it cancels is kept, so removing evidence can
                    never make anyone callable.
  error_reports     import error reports of imports finished before the period (the summary stays)
  exports           export files registered by the dialer, older than the period (deleted from disk)
  call_data         hourly call counters of campaigns older than the period
  audit             audit entries older than the period, by trimming the chain's start: the kept chain starts
                    at a signed base (AuditLog.trim_before), so `dialer audit verify` still checks it all
  never             opt-outs (company and campaign DNC, the opt-out log): they stay in force as long as
                    the tenant exists; suppression entries of erased people
Each run appends one `retention` audit entry with what it removed, and anchors the trail (signed head).
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import redis

from dialer.audit import AuditLog, iso
from dialer.audit_events import exports_key
from dialer.facts import attempt_from_json, consent_from_json, person_key
from dialer.gate import call_index_key, consent_use_key
from dialer.runtime.queue_lua import FAR as WAIT_FAR
from rules.model import Consent

log = logging.getLogger(__name__)

KINDS = ("attempts", "call_data", "error_reports", "exports", "consent_evidence", "audit")
POLICY_FILE = Path(__file__).parent / "data" / "retention.toml"
SCAN_COUNT = 1000


class PolicyError(ValueError):
    """A policy change the law or the format does not allow; str() names the kind."""


@lru_cache(maxsize=1)
def _law() -> dict[str, Any]:
    with open(POLICY_FILE, "rb") as fh:
        return tomllib.load(fh)


def defaults() -> dict[str, int]:
    return {k: int(_law()["defaults"][k]) for k in KINDS}


def minimum(kind: str) -> int:
    """The legal floor of a kind for any person (the highest country minimum for consent evidence)."""
    value = _law().get("minimum", {}).get(kind, 0)
    if isinstance(value, dict):
        return max((int(v) for v in value.values()), default=0)
    return int(value)


def consent_minimum(country: str) -> int:
    value = _law().get("minimum", {}).get("consent_evidence", {})
    return int(value.get(country, 0)) if isinstance(value, dict) else int(value)


def policy_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:retention:policy"


def get_policy(client: redis.Redis, tenant: str) -> dict[str, int]:
    """The tenant's periods in days: its own where set, else the defaults."""
    policy = defaults()
    for k, v in client.hgetall(policy_key(tenant)).items():
        name = k.decode() if isinstance(k, bytes) else k
        if name in policy:
            policy[name] = int(v)
    return policy


def set_policy(client: redis.Redis, tenant: str, changes: dict[str, int], *, actor: str,
               at: datetime) -> dict[str, int]:
    """Change some periods (days). Refuses unknown kinds, non-positive periods and periods under the law's
    floor for a kind in general (the per-country consent minimum is applied on top at every run anyway)."""
    from dialer.privacy import PrivacyError, check_tenant

    try:
        check_tenant(tenant)
    except PrivacyError as exc:
        raise PolicyError(exc.message) from None
    for kind, days in changes.items():
        if kind not in KINDS:
            raise PolicyError(f"{kind}: unknown kind (known: {', '.join(KINDS)})")
        if not isinstance(days, int) or days <= 0:
            raise PolicyError(f"{kind}: a period is a positive number of days")
        # Consent evidence: the highest country minimum. Which law applies to a record is not always known from
        # the number (a French mobile of a person living in Germany), so the floor is the strictest (fail closed).
        floor = minimum(kind)
        if days < floor:
            raise PolicyError(f"{kind}: {days} days is under the legal minimum of {floor} days")
    if changes:
        client.hset(policy_key(tenant), mapping={k: str(v) for k, v in changes.items()})
        AuditLog(client).append(tenant, "retention", actor, {"action": "policy", "changes": changes}, at)
    return get_policy(client, tenant)


# --- pure decisions -----------------------------------------------------------------------------------

def _matches(withdrawal: Consent, consent: Consent) -> bool:
    return (withdrawal.purpose in (consent.purpose, "*", "any")
            and (withdrawal.campaign is None or withdrawal.campaign == consent.campaign))


def consent_keep(records: Sequence[Consent], last_use: dict[str, datetime], at: datetime, days: int,
                 country: str | None) -> list[bool]:
    """Which consent records to keep at `at`. A grant is kept until `days` (at least the country's minimum)
    after the later of its grant, its expiry, and its purpose's last use; a withdrawal until `days` after it,
    and in any case while a consent it cancels (same purpose, given before it) is kept."""
    period = timedelta(days=max(days, consent_minimum(country or "")))
    keep = []
    for r in records:
        if r.given_at is None:
            keep.append(None)  # decided below
            continue
        start = max(d for d in (r.given_at, r.expires_at, last_use.get(r.purpose)) if d is not None)
        keep.append(start + period > at)
    for n, r in enumerate(records):
        if keep[n] is None:
            assert r.withdrawn_at is not None
            cancels_kept = any(keep[m] and g.given_at is not None and g.given_at <= r.withdrawn_at and _matches(r, g)
                               for m, g in enumerate(records))
            keep[n] = cancels_kept or r.withdrawn_at + period > at
    return [bool(k) for k in keep]


# --- the run --------------------------------------------------------------------------------------------

@dataclass
class RetentionReport:
    tenant: str
    at: str
    policy: dict[str, int]
    removed: dict[str, int] = field(default_factory=dict)
    audit_seq: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _scan(client: redis.Redis, pattern: str) -> Iterator[str]:
    for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
        yield _s(key)


def _number_of(key: str, tenant: str, part: str) -> str:
    return key[len(f"t:{{{tenant}}}:p:"):-len(f":{part}")]


def _country(e164: str) -> str | None:
    try:
        from rules import geo

        return geo.jurisdiction_for_number(e164)[0]
    except Exception:  # an unparseable stored number: apply the highest minimum instead
        return None


def _prune_attempts(client: redis.Redis, tenant: str, cutoff: datetime) -> int:
    removed = 0
    for key in _scan(client, f"t:{{{tenant}}}:p:*:att"):
        old = [(_s(cid), raw) for cid, raw in client.hgetall(key).items() if attempt_from_json(raw).at < cutoff]
        if not old:
            continue
        e164 = _number_of(key, tenant, "att")
        pipe = client.pipeline(transaction=True)
        pipe.hdel(key, *[cid for cid, _ in old])
        for cid, _ in old:
            pipe.delete(call_index_key(tenant, cid))
        pipe.incr(person_key(tenant, e164, "ver"))
        pipe.execute()
        removed += len(old)
    return removed


def _prune_consents(client: redis.Redis, tenant: str, at: datetime, days: int) -> int:
    removed = 0
    for key in _scan(client, f"t:{{{tenant}}}:p:*:consent"):
        e164 = _number_of(key, tenant, "consent")
        country = _country(e164)
        uses = {_s(p): datetime.fromtimestamp(float(s), UTC)
                for p, s in client.zrange(consent_use_key(tenant, e164), 0, -1, withscores=True)}
        with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # a consent written meanwhile restarts the decision
                    raw = pipe.lrange(key, 0, -1)
                    keep = consent_keep([consent_from_json(r) for r in raw], uses, at, days,
                                        country if country is not None else "DE")
                    if all(keep):
                        pipe.unwatch()
                        break
                    pipe.multi()
                    pipe.delete(key)
                    kept = [r for r, k in zip(raw, keep, strict=True) if k]
                    if kept:
                        pipe.rpush(key, *kept)
                    else:
                        pipe.delete(consent_use_key(tenant, e164))
                    pipe.incr(person_key(tenant, e164, "ver"))
                    pipe.execute()
                    removed += len(raw) - len(kept)
                    break
                except redis.WatchError:
                    continue
    return removed


def _prune_error_reports(client: redis.Redis, tenant: str, cutoff: datetime) -> int:
    removed = 0
    for import_id in client.zrangebyscore(f"t:{{{tenant}}}:imports", "-inf", cutoff.timestamp()):
        import_id = _s(import_id)
        status = f"t:{{{tenant}}}:import:{import_id}"
        finished = client.hget(status, "finished_at")
        if not finished or datetime.fromisoformat(_s(finished)) >= cutoff:
            continue
        n = client.llen(f"{status}:errors")
        if n:
            pipe = client.pipeline(transaction=True)
            pipe.delete(f"{status}:errors")
            pipe.hset(status, "errors_removed_at", iso(cutoff))
            pipe.execute()
            removed += n
    return removed


def _prune_exports(client: redis.Redis, tenant: str, cutoff: datetime, problems: list[str]) -> int:
    removed = 0
    for path, raw in client.hgetall(exports_key(tenant)).items():
        meta = json.loads(raw)
        if datetime.fromisoformat(meta["at"].replace("Z", "+00:00")) >= cutoff:
            continue
        try:
            Path(_s(path)).unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"export {_s(path)} not deleted: {exc.strerror}")
            continue
        client.hdel(exports_key(tenant), path)
        removed += 1
    return removed


def _prune_call_data(client: redis.Redis, tenant: str, cutoff: datetime) -> int:
    label = cutoff.strftime("%Y%m%d%H")
    old = [k for k in _scan(client, f"t:{{{tenant}}}:campaign:*:hour:*") if k.rsplit(":", 1)[1] < label]
    for n in range(0, len(old), 500):
        client.unlink(*old[n:n + 500])
    return len(old) + _prune_finished_queues(client, tenant, cutoff)


# What a finished campaign's runtime queue no longer needs: everything naming a number (the entries of the ready
# lists, the wait wheel's lists (and its index), the former `wait` and `claims`, and the whole-list loader's
# `phones`), empty or nearly by then, and the loader's `known` (the campaign's completion removes both already:
# dialer.campaigns.forget_loader_index; this is for a process that died before it). `final` and `tally` stay:
# contact ids, reasons and counters only, the campaign's summary reads them.
FINISHED_QUEUE_PARTS = (*(f"ready:{p}" for p in range(10)), *(f"wait:{n}" for n in range(WAIT_FAR)), "wait:far", "wait",
                        "inflight", "claims", "phones", "wait:due", "known")


def _prune_finished_queues(client: redis.Redis, tenant: str, cutoff: datetime) -> int:
    """The runtime queue of a campaign completed (or archived) before the cutoff holds numbers it dialed (or did
    not get to): drop that part. Returns the number of queue entries removed."""
    from dialer.campaigns import CampaignStore
    from dialer.runtime.queues import queue_prefix

    removed = 0
    for campaign in CampaignStore(client).list(tenant):
        if campaign.status not in ("completed", "archived") or not campaign.updated_at:
            continue
        if datetime.fromisoformat(campaign.updated_at.replace("Z", "+00:00")) >= cutoff:
            continue
        p = queue_prefix(tenant, campaign.id)
        pipe = client.pipeline(transaction=False)
        for part in FINISHED_QUEUE_PARTS:
            kind = ("zset" if part in ("wait", "inflight", "wait:due") else "set" if part == "known" else
                    "list" if part.startswith(("ready:", "wait:")) else "hash")
            {"list": pipe.llen, "zset": pipe.zcard, "hash": pipe.hlen, "set": pipe.scard}[kind](p + part)
        sizes = dict(zip(FINISHED_QUEUE_PARTS, pipe.execute(), strict=True))
        # inflight repeats claims, wait:due indexes the wheel, known repeats contacts counted elsewhere
        removed += sum(int(n) for part, n in sizes.items() if part not in ("inflight", "wait:due", "known"))
        client.unlink(*(p + part for part in FINISHED_QUEUE_PARTS))
    return removed


def _trim_audit(audit: AuditLog, tenant: str, cutoff: datetime) -> int:
    """Trim entries recorded before the cutoff: the first entry to keep is the first at or after it. When every
    entry is past its period the last one is kept (the chain needs a start; this run's own entry follows it,
    and the next run removes it)."""
    keep_from = None
    first = last = None
    for entry in audit.entries(tenant):
        first = first or entry.seq
        last = entry.seq
        if entry.at >= cutoff:
            keep_from = entry.seq
            break
    if keep_from is None:
        keep_from = last
    if keep_from is None or first is None or keep_from <= first:
        return 0
    return audit.trim_before(tenant, keep_from)


def run(client: redis.Redis, tenant: str, at: datetime, *, secret_key: str | bytes = b"",
        actor: str = "job:retention") -> RetentionReport:
    """Apply the tenant's retention policy at the instant `at`. Each kind is pruned independently: a failure
    in one is reported (and logged) without stopping the others."""
    from dialer.privacy import check_tenant

    check_tenant(tenant)
    at = at.astimezone(UTC)
    policy = get_policy(client, tenant)
    report = RetentionReport(tenant, iso(at), policy)
    audit = AuditLog(client, secret_key)

    def cutoff(kind: str) -> datetime:
        return at - timedelta(days=max(policy[kind], minimum(kind) if kind != "consent_evidence" else 0))

    steps = {
        "attempts": lambda: _prune_attempts(client, tenant, cutoff("attempts")),
        "consent_evidence": lambda: _prune_consents(client, tenant, at, policy["consent_evidence"]),
        "error_reports": lambda: _prune_error_reports(client, tenant, cutoff("error_reports")),
        "exports": lambda: _prune_exports(client, tenant, cutoff("exports"), report.problems),
        "call_data": lambda: _prune_call_data(client, tenant, cutoff("call_data")),
        "audit": lambda: _trim_audit(audit, tenant, cutoff("audit")),
    }
    for kind, step in steps.items():
        try:
            report.removed[kind] = step()
        except (redis.RedisError, ValueError, RuntimeError, OSError) as exc:
            report.problems.append(f"{kind}: {exc}")
            log.error("retention of tenant %s: %s not applied: %s", tenant, kind, exc)
    report.audit_seq = audit.append(tenant, "retention", actor, {
        "action": "run", "policy": policy, "removed": report.removed, "problems": report.problems}, at).seq
    if secret_key:
        audit.anchor(tenant)
    log.info("retention of tenant %s at %s: removed %s", tenant, report.at, report.removed)
    return report


# --- background job and scheduler -----------------------------------------------------------------------

def retention_job(tenant: str, at_iso: str) -> dict[str, Any]:
    """RQ entry point (queue "retention"): run() at the instant the scheduler chose."""
    from rq import get_current_job

    from dialer.suppression import process_key

    job = get_current_job()
    assert job is not None
    from dialer.jobs import job_data_connection

    data = job_data_connection(job)
    return run(data, tenant, datetime.fromisoformat(at_iso), secret_key=process_key()).as_dict()


def tenants(client: redis.Redis) -> list[str]:
    """Every tenant with data to keep in check: the gateway's tenants and the offboarded ones (their audit
    trail and suppression list remain)."""
    from dialer.offboarding import OFFBOARDED

    return sorted({_s(t) for t in client.smembers("tenants")} | {_s(t) for t in client.smembers(OFFBOARDED)})


def enqueue_all(client: redis.Redis, at: datetime) -> list[str]:
    """Enqueue one retention job per tenant for the instant `at`, then one for the record (every tenant's
    archived audit trail, gate decisions and call records: dialer.record.retention); returns the job ids, the
    record's last."""
    from dialer.jobs import RETENTION, get_queue
    from dialer.record.retention import record_retention_job

    queue = get_queue(client, RETENTION)
    ids = [queue.enqueue(retention_job, tenant, iso(at), job_timeout=6 * 3600, result_ttl=7 * 86400,
                         description=f"retention of tenant {tenant} at {iso(at)}").id for tenant in tenants(client)]
    ids.append(queue.enqueue(record_retention_job, iso(at), job_timeout=6 * 3600, result_ttl=7 * 86400,
                             description=f"retention of the record at {iso(at)}").id)
    return ids
