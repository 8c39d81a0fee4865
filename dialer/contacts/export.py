"""CSV exports of contacts, attempts and outcomes, streamed (memory bounded), formula-safe.

A campaign's export covers the contacts it dials: its attached lists' members and the contacts imported into
it directly, as the engine loads them.

Kinds:
  contacts  one row per contact of a list or campaign: id, phone (E.164), line type, zones,
            jurisdiction, the other numbers, the imported fields and kept columns (x.<name>)
  attempts  one row per call attempt (from dialer/facts.py history) of those contacts' numbers
  outcomes  one row per number: attempts, last attempt time, last outcome
Every cell goes through csvsafe.protect: E.164 numbers come out as '+33612345678.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TextIO

import redis

from dialer.contacts.csvsafe import SafeWriter
from dialer.contacts.store import Keys, _s, iter_contacts, list_member_ids

KINDS = ("contacts", "attempts", "outcomes")
BASE_FIELDS = ("first_name", "last_name", "full_name", "email", "postal_code", "city", "country", "state",
               "external_id")


def _members(client: redis.Redis, tenant: str, list_id: str | None, campaign: str | None) -> Iterator[str]:
    if (list_id is None) == (campaign is None):
        raise ValueError("export one list or one campaign")
    if list_id:
        return list_member_ids(client, tenant, list_id)
    return campaign_contact_ids(client, tenant, campaign or "")


def campaign_contact_ids(client: redis.Redis, tenant: str, campaign: str) -> Iterator[str]:
    """The contacts a campaign dials, as its window reads them from the record (dialer/runtime/window.py): the
    members of its attached lists and the contacts imported straight into it (`--campaign`), each once, in id
    order."""
    from dialer.campaigns import campaign_key
    from dialer.record.contacts import member_ids
    from dialer.record.current import contact_record

    raw = client.hget(campaign_key(tenant, campaign), "config")
    lists = json.loads(_s(raw)).get("lists") or [] if raw else []
    return member_ids(contact_record(), tenant, campaign=campaign, lists=lists)


def kept_columns(client: redis.Redis, tenant: str, list_id: str) -> list[str]:
    """Kept (x.<name>) columns of every import into the list, in first-seen order."""
    keys = Keys(tenant)
    names: list[str] = []
    for import_id in client.lrange(f"{keys.list(list_id)}:imports", 0, -1):
        columns = client.hget(Keys(tenant, _s(import_id)).status, "columns")
        for column in json.loads(columns or "{}").get("columns", []):
            if column["field"].startswith("keep:") and "x." + column["field"][5:] not in names:
                names.append("x." + column["field"][5:])
    return names


def export_contacts(client: redis.Redis, tenant: str, out: TextIO, *, list_id: str | None = None,
                    campaign: str | None = None) -> int:
    """Write the contacts of a list (or campaign) as CSV. Returns the number of contacts."""
    kept = kept_columns(client, tenant, list_id) if list_id else []
    writer = SafeWriter(out)
    writer.row(["contact_id", "list", "phone", "line_type", "phone_country", "phone_subdivision", "timezones",
                "other_phones", *BASE_FIELDS, *kept])
    count = 0
    for contact in iter_contacts(client, tenant, _members(client, tenant, list_id, campaign)):
        others = " ".join(p["e164"] for p in contact["phones"][1:])
        writer.row([contact.get("id"), contact.get("list"), contact.get("phone"), contact.get("line_type"),
                    contact.get("phone_country"), contact.get("phone_subdivision") or "",
                    " ".join(contact["timezones"]), others, *[contact.get(f, "") for f in BASE_FIELDS],
                    *[contact.get(k, "") for k in kept]])
        count += 1
    return count


def _numbers(client: redis.Redis, tenant: str, list_id: str | None, campaign: str | None,
             ) -> Iterator[tuple[str, str]]:
    for contact in iter_contacts(client, tenant, _members(client, tenant, list_id, campaign)):
        for phone in contact["phones"]:
            yield contact["id"], phone["e164"]


def export_attempts(client: redis.Redis, tenant: str, out: TextIO, *, list_id: str | None = None,
                    campaign: str | None = None, kind: str = "attempts") -> int:
    """Write attempts (one row each) or outcomes (one row per number) from the facts history."""
    from dialer.facts import FactStore

    facts = FactStore(client)
    writer = SafeWriter(out)
    if kind == "attempts":
        writer.row(["contact_id", "phone", "at", "campaign", "call_id", "outcome"])
    else:
        writer.row(["contact_id", "phone", "attempts", "last_attempt_at", "last_campaign", "last_outcome"])
    count = 0
    for contact_id, e164 in _numbers(client, tenant, list_id, campaign):
        history = [a for a in facts.attempts(tenant, e164) if not campaign or a.campaign == campaign]
        if kind == "attempts":
            for attempt in history:
                writer.row([contact_id, e164, attempt.at.isoformat(), attempt.campaign, attempt.call_id,
                            attempt.outcome])
                count += 1
        else:
            last = history[-1] if history else None
            writer.row([contact_id, e164, len(history), last.at.isoformat() if last else "",
                        last.campaign if last else "", last.outcome if last else ""])
            count += 1
    return count


def export(client: redis.Redis, tenant: str, kind: str, out: TextIO, *, list_id: str | None = None,
           campaign: str | None = None) -> int:
    """One entry point for the gateway and the CLI: kind is contacts, attempts or outcomes."""
    if kind == "contacts":
        return export_contacts(client, tenant, out, list_id=list_id, campaign=campaign)
    if kind in ("attempts", "outcomes"):
        return export_attempts(client, tenant, out, list_id=list_id, campaign=campaign, kind=kind)
    raise ValueError(f"unknown export {kind!r} (known: {', '.join(KINDS)})")




def export_job(tenant: str, kind: str, path: str, list_id: str | None = None, campaign: str | None = None) -> int:
    """RQ entry point (queue "exports"): write the export to `path` (a file the caller can serve)."""
    from rq import get_current_job

    from dialer.jobs import job_data_connection

    job = get_current_job()
    assert job is not None
    tmp = f"{path}.part"
    from dialer.private_files import create_private

    with create_private(tmp, "w", newline="", encoding="utf-8-sig") as out:  # 0600; BOM for Excel
        count = export(job_data_connection(job), tenant, kind, out, list_id=list_id, campaign=campaign)
    os.replace(tmp, path)  # the file appears complete or not at all
    from datetime import UTC, datetime

    from dialer.audit_events import export_written

    export_written(job_data_connection(job), tenant, kind, os.path.abspath(path), count, datetime.now(UTC),
                   actor="job:export", list_id=list_id, campaign=campaign)
    job.meta["rows"] = count
    job.save_meta()
    return count


def enqueue_export(client: redis.Redis, tenant: str, kind: str, path: str, *, list_id: str | None = None,
                   campaign: str | None = None) -> str:
    """Queue an export on "exports"; returns the RQ job id (job.meta["rows"] when done; result = rows)."""
    from dialer.jobs import EXPORTS, get_queue

    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r} (known: {', '.join(KINDS)})")
    job = get_queue(client, EXPORTS).enqueue(export_job, tenant, kind, path, list_id, campaign,
                                             job_timeout=3600, result_ttl=86400)
    return job.id
