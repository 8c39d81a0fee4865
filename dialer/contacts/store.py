"""Redis layout of contact lists and the staged, all-or-nothing commit of an import.

Keys (tenant T, list L, campaign C, import I, contact id K; full table in docs/contacts.md):
  t:T:contact:K              hash    one contact (phones as JSON, kept fields as x.<name>)
  t:T:phone:{e164}           set     contact ids holding this number (data-subject requests)
  t:T:lists                  set     list ids;  t:T:list:L  hash  list metadata
  t:T:list:L:members         set     contact ids;  t:T:list:L:phones  set  E.164 (dedupe)
  t:T:campaign:C:contacts    set     contact ids;  t:T:campaign:C:phones  set  E.164 (dedupe)
  t:T:import:I               hash    status, rows_done, rows_total, summary (the gateway reads it)
  t:T:import:I:errors        list    row errors (JSON), in row order per chunk, duplicates last
  t:T:imports                zset    import ids by creation time; t:T:upload:{sha} string -> import id
  t:T:staging:I:*                    everything an import writes before its commit point

The commit: workers stage rows in the record's staging tables (dialer/contacts/staging.py) and write only under
t:T:staging:I: in Redis (chunk leases, counters, the error report). The commit point is one MULTI/EXEC setting
status=committing; after it the import rolls forward (a crashed coordinator is resumed) and before it nothing
outside staging exists. Publishing makes the staged rows contacts in one record transaction
(dialer/contacts/publish.py: contacts live in the record, docs/record.md), then one script (FINALIZE) sets the
status and the list's metadata. The contact, phone and member keys above
(t:T:contact:K, t:T:phone:*, t:T:list:L:members|phones, t:T:campaign:C:*) are no longer written: they
hold only contacts imported before the record, until `dialer record move-contacts` moves them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


NO_CAMPAIGN = "no-campaign"  # campaign keys end in :phones or :contacts, so this suffix names none of them


def tenant_prefix(tenant: str) -> str:
    return f"t:{{{tenant}}}:"


class Keys:
    """Key names for one tenant (and import)."""

    def __init__(self, tenant: str, import_id: str = "") -> None:
        self.tenant = tenant
        self.p = tenant_prefix(tenant)
        self.import_id = import_id

    def contact(self, cid: str) -> str:
        return f"{self.p}contact:{cid}"

    def phone(self, e164: str) -> str:
        return f"{self.p}phone:{e164}"

    @property
    def lists(self) -> str:
        return f"{self.p}lists"

    def list(self, list_id: str) -> str:
        return f"{self.p}list:{list_id}"

    def list_members(self, list_id: str) -> str:
        return f"{self.p}list:{list_id}:members"

    def list_phones(self, list_id: str) -> str:
        return f"{self.p}list:{list_id}:phones"

    def list_lock(self, list_id: str) -> str:
        return f"{self.p}list:{list_id}:commit-lock"

    @property
    def no_campaign(self) -> str:
        """Stands for "no campaign" in a script's KEYS (never written): in the tenant's slot, where "" would not be."""
        return f"{self.p}{NO_CAMPAIGN}"

    def campaign_contacts(self, campaign: str) -> str:
        return f"{self.p}campaign:{campaign}:contacts"

    def campaign_phones(self, campaign: str) -> str:
        return f"{self.p}campaign:{campaign}:phones"

    def campaign_lock(self, campaign: str) -> str:
        return f"{self.p}campaign:{campaign}:commit-lock"

    @property
    def imports(self) -> str:
        return f"{self.p}imports"

    def upload(self, fingerprint: str) -> str:
        return f"{self.p}upload:{fingerprint}"

    @property
    def status(self) -> str:
        return f"{self.p}import:{self.import_id}"

    @property
    def errors(self) -> str:
        return f"{self.p}import:{self.import_id}:errors"

    # Staging (all under one prefix; the set `staged` names every key to delete).
    @property
    def stg(self) -> str:
        return f"{self.p}staging:{self.import_id}:"

    @property
    def staged(self) -> str:
        return self.stg + "keys"

    @property
    def todo(self) -> str:
        return self.stg + "todo"

    @property
    def claims(self) -> str:
        return self.stg + "claims"

    @property
    def done(self) -> str:
        return self.stg + "done"

    def chunk_errors(self, chunk: int, attempt: str) -> str:
        return f"{self.stg}errors:{chunk:05d}:{attempt}"

    def consents(self, chunk: int, attempt: str) -> str:
        return f"{self.stg}consents:{chunk:05d}:{attempt}"

    @property
    def new_members(self) -> str:
        return self.stg + "members"

    @property
    def duplicates(self) -> str:
        return self.stg + "duplicates"

    @property
    def counters(self) -> str:
        return self.stg + "counters"

    @property
    def attempts(self) -> str:
        """Every chunk attempt started (set): the commit deletes the staged rows of those it does not publish."""
        return self.stg + "attempts"


# KEYS: list members, campaign contacts (Keys.no_campaign if none), new members, status, staged-keys set, list meta,
#       lists set, list's imports list.
# ARGV: status fields as JSON object, list id, import id, contacts added, now (ISO), region.
# The last step of a commit: the list (and campaign) gain all new contacts at once. Runs once only.
FINALIZE = """
if redis.call('HGET', KEYS[4], 'status') ~= 'committing' then return 0 end
local fields = cjson.decode(ARGV[1])
for name, value in pairs(fields) do redis.call('HSET', KEYS[4], name, value) end
redis.call('SADD', KEYS[7], ARGV[2])
redis.call('HINCRBY', KEYS[6], 'contacts', tonumber(ARGV[4]))
redis.call('HINCRBY', KEYS[6], 'imports', 1)
redis.call('HSET', KEYS[6], 'id', ARGV[2], 'updated_at', ARGV[5], 'last_import', ARGV[3])
redis.call('HSETNX', KEYS[6], 'created_at', ARGV[5])
redis.call('HSETNX', KEYS[6], 'region', ARGV[6])
redis.call('RPUSH', KEYS[8], ARGV[3])
local staged = redis.call('SMEMBERS', KEYS[5])
for _, key in ipairs(staged) do redis.call('UNLINK', key) end
redis.call('UNLINK', KEYS[5])
return 1
"""

# KEYS: lock keys. ARGV: token, ttl ms. All locks or none.
LOCK_ALL = """
for _, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if cur and cur ~= ARGV[1] then return 0 end
end
for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
return 1
"""

UNLOCK_ALL = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""

# KEYS: todo list, claims zset. ARGV: deadline. Takes one chunk and leases it, atomically.
CLAIM = """
local item = redis.call('LPOP', KEYS[1])
if not item then return false end
local chunk = cjson.decode(item)
redis.call('ZADD', KEYS[2], ARGV[1], chunk.index)
return item
"""


# KEYS: the contact (routes the script to the tenant's cluster slot). ARGV: tenant prefix, contact id.
# Removes one contact and every index entry pointing at it, atomically.
# Facts about the person (consents, opt-outs, attempts: dialer/facts.py) are not touched: an opt-out
# must outlive the contact.
ERASE = """
local prefix, cid = ARGV[1], ARGV[2]
local key = prefix .. 'contact:' .. cid
if redis.call('EXISTS', key) == 0 then return 0 end
local list = redis.call('HGET', key, 'list') or ''
local campaign = redis.call('HGET', key, 'campaign') or ''
local phones = cjson.decode(redis.call('HGET', key, 'phones') or '[]')
for _, p in ipairs(phones) do
  redis.call('SREM', prefix .. 'phone:' .. p.e, cid)
  if list ~= '' then redis.call('SREM', prefix .. 'list:' .. list .. ':phones', p.e) end
  if campaign ~= '' then redis.call('SREM', prefix .. 'campaign:' .. campaign .. ':phones', p.e) end
end
if list ~= '' then
  if redis.call('SREM', prefix .. 'list:' .. list .. ':members', cid) == 1 then
    redis.call('HINCRBY', prefix .. 'list:' .. list, 'contacts', -1)
  end
end
if campaign ~= '' then redis.call('SREM', prefix .. 'campaign:' .. campaign .. ':contacts', cid) end
redis.call('DEL', key)
return 1
"""


class Scripts:
    def __init__(self, client: redis.Redis) -> None:
        self.finalize = client.register_script(FINALIZE)
        self.lock_all = client.register_script(LOCK_ALL)
        self.unlock_all = client.register_script(UNLOCK_ALL)
        self.claim = client.register_script(CLAIM)
        self.erase = client.register_script(ERASE)


# ---- readers (the gateway, the pacing engine, data-subject requests) ----

def import_status(client: redis.Redis, tenant: str, import_id: str) -> dict[str, Any] | None:
    """The import's status hash, decoded (summary as a dict); None if unknown for this tenant."""
    raw = client.hgetall(Keys(tenant, import_id).status)
    if not raw:
        return None
    status = {_s(k): _s(v) for k, v in raw.items()}
    for name in ("rows_done", "rows_total"):
        if name in status:
            status[name] = int(status[name])
    if "summary" in status:
        status["summary"] = json.loads(status["summary"])
    for name in ("format", "columns"):
        if name in status:
            status[name] = json.loads(status[name])
    for name in ("mapping", "commit_token", "heartbeat", "path"):  # internals (path: a server directory)
        status.pop(name, None)
    return status


def _contact(raw: dict[Any, Any]) -> dict[str, Any]:
    """A stored contact hash, decoded: phones expanded from their compact stored form."""
    contact: dict[str, Any] = {_s(k): _s(v) for k, v in raw.items()}
    contact["phones"] = [
        {"e164": p["e"], "line_type": p["t"], "timezones": [z for z in p["z"].split(",") if z],
         "country": p["c"], "subdivision": p["s"] or None, "extension": p.get("x") or None, "column": p.get("k")}
        for p in json.loads(contact.get("phones") or "[]")
    ]
    contact["timezones"] = [z for z in contact.get("timezones", "").split(",") if z]
    contact["phone_subdivision"] = contact.get("phone_subdivision") or None
    return contact


def decoded(data: dict[str, Any]) -> dict[str, Any]:
    """A contact as the record stores it (dialer.record.contacts: `data`) in the shape readers show."""
    phones = data.get("phones")
    return _contact({**data, "phones": phones if isinstance(phones, str) else json.dumps(phones or [])})


def _record() -> Any:
    from dialer.record.current import contact_record

    return contact_record()


# Contacts live in the record (issue 18, docs/record.md): these readers keep the signatures they had when contacts
# lived in Redis and read the process's record (dialer.record.current); a record that cannot be read raises
# dialer.record.store.RecordUnavailable (API: 503; CLI: one line). Subject requests (get_contact,
# contacts_for_phone) also find contacts an older dialer kept in Redis and not moved yet, so an access or an
# erasure during an upgrade misses nobody.

def redis_contact(client: redis.Redis, tenant: str, contact_id: str) -> dict[str, Any] | None:
    """A contact an older dialer kept in Redis's contact store (until `dialer record move-contacts`)."""
    raw = client.hgetall(Keys(tenant).contact(contact_id))
    return _contact(raw) if raw else None


def get_contact(client: redis.Redis | None, tenant: str, contact_id: str) -> dict[str, Any] | None:
    """The contact, once its import is committed (the import writes a list's contacts into the record in one
    transaction: dialer/contacts/publish.py)."""
    from dialer.record.contacts import get_contact as stored

    data = stored(_record(), tenant, contact_id)
    if data is None and client is not None:  # not moved into the record yet (an upgrade: dialer/contacts/move.py)
        return redis_contact(client, tenant, contact_id)
    return decoded(data) if data is not None else None


def contacts_for_phone(client: redis.Redis | None, tenant: str, e164: str) -> list[str]:
    """Contact ids holding this number (for access and erasure requests)."""
    from dialer.record.contacts import contact_ids_for_phone

    found = contact_ids_for_phone(_record(), tenant, e164)
    if client is not None:  # and contacts an older dialer kept in Redis, until they are moved into the record
        found = sorted({*found, *(_s(m) for m in client.smembers(Keys(tenant).phone(e164)))})
    return found


def erase_phone(client: redis.Redis | None, tenant: str, e164: str) -> list[str]:
    """Erasure request: delete every contact holding this number (all its numbers and fields, its list
    memberships). Returns the ids erased. Consents, opt-outs and attempt history in dialer/facts.py stay: they are
    evidence, and an opt-out must keep working after the erasure."""
    from dialer.record.contacts import erase_phone as erase

    return erase(_record(), tenant, e164)


def list_member_ids(client: redis.Redis | None, tenant: str, list_id: str, count: int = 1000) -> Iterator[str]:
    from dialer.record.contacts import member_ids

    yield from member_ids(_record(), tenant, list_id=list_id, page=max(count, 1000))


def campaign_member_ids(client: redis.Redis | None, tenant: str, campaign: str, count: int = 1000) -> Iterator[str]:
    """The contacts imported into the campaign itself (not its lists' members)."""
    from dialer.record.contacts import member_ids

    yield from member_ids(_record(), tenant, campaign=campaign, page=max(count, 1000))


def iter_contacts(client: redis.Redis | None, tenant: str, ids: Iterator[str],
                  batch: int = 500) -> Iterator[dict[str, Any]]:
    """Contacts for a stream of ids, read in batches (memory bounded by `batch`); ids no longer stored are
    skipped."""
    record = _record()
    pending: list[str] = []

    def flush() -> Iterator[dict[str, Any]]:
        rows = record.query(f"SELECT id, data FROM contacts WHERE tenant = %s AND id IN "
                            f"({', '.join(['%s'] * len(pending))})", (tenant, *pending))
        found = {str(cid): data for cid, data in rows}
        for cid in pending:
            if cid in found:
                yield decoded(json.loads(found[cid]))
        pending.clear()

    for cid in ids:
        pending.append(cid)
        if len(pending) >= batch:
            yield from flush()
    if pending:
        yield from flush()


def list_count(tenant: str, list_id: str) -> int:
    """Members of a list (the record's count, never Redis's)."""
    rows = _record().query("SELECT COUNT(*) FROM list_members WHERE tenant = %s AND list_id = %s", (tenant, list_id))
    return int(rows[0][0])


def iter_errors(client: redis.Redis, tenant: str, import_id: str, batch: int = 1000) -> Iterator[dict[str, Any]]:
    key = Keys(tenant, import_id).errors
    start = 0
    while True:
        items = client.lrange(key, start, start + batch - 1)
        if not items:
            return
        for item in items:
            yield json.loads(item)
        start += len(items)
