"""`dialer campaigns ...` and `dialer dnc check`: campaigns and the company DNC from the shell, for people and scripts.

  dialer campaigns create --tenant T FILE          a TOML or JSON file with the campaign's configuration (as the API)
  dialer campaigns list --tenant T [--status S]
  dialer campaigns show --tenant T ID              configuration, status, queue counts, final reasons, abandons
  dialer campaigns start|pause|resume|stop|archive --tenant T ID
  dialer campaigns contacts --tenant T ID          each contact: state, attempts, each call's outcome, final reason
  dialer campaigns wait --tenant T ID [--timeout S] [--until completed|idle]
  dialer dnc check --tenant T NUMBER               whether a number is on the tenant's company DNC (and why)

Every command takes `--json` (one JSON document on stdout). The store (dialer/campaigns.py) validates and audits as
the API does; the actor is `cli:<login name>`. Phone numbers are masked unless `--full-numbers` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from dialer import redisconn
from dialer.cli import CommandError
from dialer.config import Config

ACTIONS = ("start", "pause", "resume", "stop", "archive")


def register(sub: Any) -> None:
    parser = sub.add_parser("campaigns", help="create, list, show, control and watch campaigns")
    actions = parser.add_subparsers(dest="campaigns_action", required=True, metavar="ACTION")

    def add(name: str, help_text: str, func: Any, campaign: bool = True) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text)
        p.add_argument("--tenant", required=True, help="the tenant (client company) the campaign belongs to")
        if campaign:
            p.add_argument("id", help="campaign id")
        p.add_argument("--json", action="store_true", help="one JSON document on stdout")
        p.set_defaults(func=func)
        return p

    create = add("create", "create a draft campaign from a TOML or JSON file", run_create, campaign=False)
    create.add_argument("file", help="the configuration (the API's campaign fields), .toml or .json")
    create.add_argument("--start", action="store_true", help="start it at once")
    listing = add("list", "the tenant's campaigns", run_list, campaign=False)
    listing.add_argument("--status", help="only campaigns in this status")
    add("show", "a campaign's configuration, status and figures", run_show)
    for action in ACTIONS:
        add(action, f"{action} a campaign", run_control).set_defaults(action=action)
    contacts = add("contacts", "each contact's state and outcome", run_contacts)
    contacts.add_argument("--full-numbers", action="store_true", help="print whole phone numbers (default: masked)")
    wait = add("wait", "wait until the campaign is settled", run_wait)
    wait.add_argument("--until", choices=("completed", "idle"), default="completed",
                      help="completed (default): the runtime completed it; idle: its contacts queued, none in flight "
                           "or due now (some may wait for a retry)")
    wait.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600); exit status 1 on timeout")

    dnc = sub.add_parser("dnc", help="the company do-not-call list")
    dnc_actions = dnc.add_subparsers(dest="dnc_action", required=True, metavar="ACTION")
    check = dnc_actions.add_parser("check", help="whether a number is on the tenant's company DNC")
    check.add_argument("--tenant", required=True, help="whose company DNC")
    check.add_argument("number", help="E.164 number, e.g. +33145678901")
    check.add_argument("--campaign", help="also the campaign's own DNC list")
    check.add_argument("--json", action="store_true", help="one JSON document on stdout")
    check.set_defaults(func=run_dnc_check)


def _client(config: Config) -> redis.Redis:
    return redisconn.connect(config.redis_url, decode_responses=True)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, sort_keys=True, default=str) if args.json else text)


def _guard(work: Any) -> Any:
    from dialer.campaigns import CampaignError

    try:
        return work()
    except KeyError as exc:
        raise CommandError(f"no campaign {exc.args[0]}") from None
    except CampaignError as exc:
        raise CommandError(f"{exc.code}: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError):
        raise  # dialer.cli says it in one line naming the server (password hidden)
    except redis.RedisError as exc:
        raise CommandError(f"Redis refused the request: {exc}") from None


def _read_config(path: str) -> dict[str, Any]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise CommandError(f"{path}: not valid {'JSON' if file.suffix.lower() == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"{path}: expected a table (object) of campaign fields")
    return data.get("campaign", data) if isinstance(data.get("campaign"), dict) else data


def _tenant_exists(client: redis.Redis, tenant: str) -> None:
    if not client.sismember("tenants", tenant):
        raise CommandError(f"no tenant {tenant} (create it with: dialer tenant create {tenant})")


def run_create(args: argparse.Namespace, config: Config) -> int:
    from dialer.campaigns import CONFIG_SCHEMA, CampaignStore
    from gateway.errors import ApiError
    from gateway.validation import validate

    settings = _read_config(args.file)
    try:
        validate(settings, CONFIG_SCHEMA)  # the API's own checks: the same answer from the shell
    except ApiError as exc:
        raise CommandError(f"{args.file}: {exc.field or 'campaign'}: {exc.message}") from None
    client = _client(config)
    try:
        def work() -> Any:
            _tenant_exists(client, args.tenant)
            store = CampaignStore(client)
            created = store.create(args.tenant, settings, by=_actor(), at=datetime.now(UTC))
            if args.start:
                created = store.control(args.tenant, created.id, "start", by=_actor(), at=datetime.now(UTC))
            return created

        created = _guard(work)
    finally:
        client.close()
    _out(args, created.as_dict(), f"campaign {created.id} created ({created.status})")
    return 0


def run_list(args: argparse.Namespace, config: Config) -> int:
    from dialer.campaigns import CampaignStore

    client = _client(config)
    try:
        found = _guard(lambda: CampaignStore(client).list(args.tenant, args.status))
    finally:
        client.close()
    lines = [f"{c.id}\t{c.status}\t{c.config.get('name', '')}\t{c.config.get('pacing_mode', '')}" for c in found]
    _out(args, {"items": [c.as_dict() for c in found]}, "\n".join(lines) if lines else "(no campaigns)")
    return 0


def _figures(client: redis.Redis, tenant: str, campaign: str) -> dict[str, Any]:
    from dialer.runtime.report import campaign_summary

    return campaign_summary(client, tenant, campaign, datetime.now(UTC))


def run_show(args: argparse.Namespace, config: Config) -> int:
    from dialer.campaigns import CampaignStore

    client = _client(config)
    try:
        def work() -> dict[str, Any]:
            found = CampaignStore(client).get(args.tenant, args.id)
            if found is None:
                raise KeyError(args.id)
            return {**found.as_dict(), "figures": _figures(client, args.tenant, args.id)}

        data = _guard(work)
    finally:
        client.close()
    figures = data["figures"]
    queue = figures["queue"]
    text = (f"campaign {data['id']} ({data.get('name', '')}): {data['status']}\n"
            f"queue: ready {queue.get('ready', 0)}, waiting {queue.get('waiting', 0)}, in flight "
            f"{queue.get('inflight', 0)}, final {queue.get('final', 0)}\n"
            f"attempts {figures['attempts']}; final reasons "
            f"{', '.join(f'{k} {v}' for k, v in figures['final_reasons'].items()) or 'none'}\n"
            f"abandons 24 h: {figures['abandons'].get('abandons_24h', 0)} of "
            f"{figures['abandons'].get('answers_24h', 0)} live answers")
    if figures.get("legal_campaign"):  # the window the cap applies to: all the legal campaign's members together
        legal = figures["legal_campaign"]
        text += (f"\nlegal campaign {legal['key']} ({len(legal['members'])} campaigns, {legal['dialing']} may dial): "
                 f"abandons 24 h {legal['abandons'].get('abandons_24h', 0)} of "
                 f"{legal['abandons'].get('answers_24h', 0)} live answers, 30 days "
                 f"{legal['abandons'].get('abandons_30d', 0)} of {legal['abandons'].get('answers_30d', 0)}")
    if figures.get("refused"):
        refused = figures["refused"]
        text += f"\nnot dialed since {refused['since']}: {refused['code']}: {refused['text']}"
    _out(args, data, text)
    return 0


def run_control(args: argparse.Namespace, config: Config) -> int:
    from dialer.campaigns import CampaignStore

    client = _client(config)
    try:
        moved = _guard(lambda: CampaignStore(client).control(args.tenant, args.id, args.action, by=_actor(),
                                                              at=datetime.now(UTC)))
    finally:
        client.close()
    _out(args, moved.as_dict(), f"campaign {moved.id}: {args.action} -> {moved.status}")
    return 0


def _phone_of(client: Any, record: Any, tenant: str, contact_id: str, held: Any) -> str:
    """A contact's number: from its queue entry, else Redis's contact store, else the record's."""
    from dialer.contacts.store import get_contact
    from dialer.record.contacts import get_contact as record_contact

    if held is not None and held.entry is not None:
        return str(held.entry.contact.phone)
    found = get_contact(client, tenant, contact_id)
    if found is None and record is not None:
        found = record_contact(record, tenant, contact_id)
    return str((found or {}).get("phone") or "")


def run_contacts(args: argparse.Namespace, config: Config) -> int:
    from dialer.campaigns import CampaignStore
    from dialer.facts import attempt_from_json, person_key
    from dialer.logs import mask_phone
    from dialer.record.contacts import campaign_finals
    from dialer.record.store import Record, RecordNotMigrated, RecordUnavailable
    from dialer.runtime.queues import ContactQueue

    client = _client(config)
    try:
        def work() -> list[dict[str, Any]]:
            if CampaignStore(client).get(args.tenant, args.id) is None:
                raise KeyError(args.id)
            queue = ContactQueue(client, args.tenant, args.id)
            held = {h.contact_id: h for h in queue.held_entries()}
            finals = {cid: h.final for cid, h in held.items() if h.final is not None}
            record: Any = Record.from_config(config)
            try:  # contacts that left a record window: their finals and numbers are in the record
                finals = {**campaign_finals(record, args.tenant, args.id), **finals}
            except (RecordNotMigrated, RecordUnavailable):
                record.close()
                record = None
            ids = sorted(set(held) | set(finals))
            try:
                phones = [_phone_of(client, record, args.tenant, cid, held.get(cid)) for cid in ids]
            finally:
                if record is not None:
                    record.close()
            # each call's outcome as the gate recorded it (the person's history, this campaign's calls only)
            pipe = client.pipeline(transaction=False)
            for phone in phones:
                pipe.hvals(person_key(args.tenant, phone, "att"))
            histories = pipe.execute()
            rows = []
            for contact_id, phone, history in zip(ids, phones, histories, strict=True):
                calls = sorted((a for a in map(attempt_from_json, history) if a.campaign == args.id),
                               key=lambda a: a.at)
                one = held.get(contact_id)
                final = finals.get(contact_id)
                rows.append({"contact": contact_id, "phone": phone if args.full_numbers else mask_phone(phone),
                             "state": "final" if final else one.state if one else "",
                             "attempts": int(final.get("attempts") or 0) if final else one.attempts if one else 0,
                             "outcomes": [{"at": a.at.isoformat(), "outcome": a.outcome, "call_id": a.call_id}
                                          for a in calls],
                             "last": one.last if one and not final else
                             {"step": "final", "reason": final.get("reason"), "at": final.get("at")} if final else None,
                             "final": final})
            return rows

        rows = _guard(work)
    finally:
        client.close()
    lines = []
    for row in rows:
        final = row["final"] or {}
        outcome = (f"{final.get('reason')}" + (f" ({final.get('disposition') or final.get('detail')})"
                                               if final.get("disposition") or final.get("detail") else "")
                   if final else (row["last"] or {}).get("reason", ""))
        calls = ", ".join(c["outcome"] for c in row["outcomes"]) or "no call"
        lines.append(f"{row['contact']}\t{row['phone']}\t{row['state']}\t{row['attempts']} attempts\t{outcome}"
                     f"\tcalls: {calls}")
    _out(args, {"items": rows}, "\n".join(lines) if lines else "(no contacts)")
    return 0


def run_wait(args: argparse.Namespace, config: Config) -> int:
    from dialer.campaigns import CampaignStore
    from dialer.runtime.queues import ContactQueue

    client = _client(config)
    deadline = time.monotonic() + max(0.0, args.timeout)
    try:
        while True:
            def work() -> tuple[str, dict[str, int]]:
                found = CampaignStore(client).get(args.tenant, args.id)
                if found is None:
                    raise KeyError(args.id)
                return found.status, ContactQueue(client, args.tenant, args.id).counts(time.time())

            status, counts = _guard(work)
            # idle: the runtime has queued the campaign's contacts (none known yet is not idle: it has not started)
            # and none is in flight or due now
            known = sum(counts.get(k, 0) for k in ("ready", "waiting", "inflight", "final"))
            idle = known > 0 and counts.get("inflight", 0) == 0 and counts.get("ready", 0) + counts.get("due", 0) == 0
            settled = status in ("completed", "archived") or (args.until == "idle" and idle)
            if settled or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    finally:
        client.close()
    data = {"campaign": args.id, "status": status, "queue": counts, "settled": settled}
    _out(args, data, f"campaign {args.id}: {status}; queue {counts}" + ("" if settled else " (timed out)"))
    return 0 if settled else 1


def run_dnc_check(args: argparse.Namespace, config: Config) -> int:
    import phonenumbers

    from dialer.facts import FactStore

    number = args.number.strip()
    try:
        parsed = phonenumbers.parse(number, None)
        valid = phonenumbers.is_valid_number(parsed)
    except phonenumbers.NumberParseException:
        valid = False
    if not valid or not number.startswith("+"):
        raise CommandError(f"{args.number!r}: not a valid E.164 number (+ and country code, e.g. +33145678901)")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    client = redisconn.connect(config.redis_url, decode_responses=True)
    try:
        def work() -> Any:
            _tenant_exists(client, args.tenant)  # a misspelt tenant is not "not on the DNC": its list is unknown
            return FactStore(client).optout(args.tenant, e164, args.campaign)

        found = _guard(work)
    finally:
        client.close()
    data: dict[str, Any] = {"number": e164, "listed": found is not None}
    if found is not None:
        data.update({k: v.isoformat() if isinstance(v, datetime) else v for k, v in dataclasses.asdict(found).items()})
    text = (f"{e164}: on the DNC ({data.get('scope', 'company')}, source {data.get('source', '?')}, "
            f"since {data.get('at', '?')})" if found is not None else f"{e164}: not on the DNC")
    _out(args, data, text)
    return 0
