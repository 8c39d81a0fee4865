"""Contact queues of a campaign in Redis: ready (by priority), waiting (scheduled retries), in flight (claimed
with an owner and a lease), final (left the queue, with the reason).

Every move is one Lua script (dialer/runtime/queue_lua.py), so several dialer processes can share a queue: a
contact is claimed by one of them only (LPOP inside the script), and only the claim's holder, identified by the call
id it was given, can settle it (a process that lost its claim to a takeover cannot settle it a second time).

Compact (issue 18: at most 150 B of Redis per window contact, nothing once it left): a contact still to be dialed
is ONE string, its entry (id, number, country, postal code, state, zones, priority, attempts, last step: see
queue_lua), in a list per priority (a listpack: about its length + 3 bytes) or, waiting for a retry, with its due
time in one of the wait wheel's lists (the same: about its length + 17 bytes).
No per-contact hash entry exists until it is claimed, and a final contact keeps only its small `final` entry,
which the record's window moves to the record (dialer/runtime/window.py), so a finished contact costs nothing.

Keys (tenant-owned), prefix `t:{T}:campaign:{C}:q:`:
  ready:0..9 lists entries in dialing order (priority 9 first; within one, the order loaded, then due retries)
  wait:0..79, wait:far
             lists "<due ms>\x1f<entry>": retries and gate `next_allowed_at` by due time (the campaign clock, in
                   ms rounded up): minute lists, lap lists and the far list (queue_lua has the wheel)
  wait:due   zset  wait list number -> when a claim must look at it (at most 81 members)
  wait       zset  entry -> due time (seconds): the layout before the wheel, read and drained, never written
  inflight   zset  contact id -> lease expiry (UNIX seconds, Redis's clock)
  claims     hash  contact id -> JSON {owner, call_id, server, claimed_at, lease, entry}
  final      hash  contact id -> JSON {reason, detail, at, attempts, disposition}: why a contact the whole-list
                   loader queued (in `known`) left
  leaving    hash  the same for a contact of the record's window, until the window moves it to the record's
                   campaign_finals
  tally      hash  taken (contacts the queue ever took), final, attempts (calls placed), r:<reason> (finals by
                   reason), d:<code> (gate denials by code): the campaign's figures, kept when finals move
  known      set   contact ids the whole-list loader queued (dialer/runtime/loader.py: Redis's contact store)
  phones     hash  E.164 -> contact id, the whole-list loader's dedupe (the record's window dedupes in the record)
  window     hash  the record window's cursor and generation (dialer/runtime/window.py)

Times: due times are the campaign clock (injected: tests and demos run at a fixed instant); leases are UNIX
seconds on Redis's clock (the engine's `_lease_clock`: they measure whether a process is still alive, not the law,
and are compared by processes on machines whose clocks may drift).
Synchronous client (like dialer/facts.py); the engine calls it through asyncio.to_thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dialer.runtime import queue_lua
from dialer.runtime.queue_lua import FAR, FAR_MS, LAP_MS, MAX_PRIORITY, MINUTE_LISTS, PROMOTE_BATCH

STATES = ("ready", "wait", "inflight", "final")
READY_KEYS = tuple(f"ready:{p}" for p in range(MAX_PRIORITY + 1))
WHEEL_KEYS = (*(f"wait:{n}" for n in range(FAR)), "wait:far")  # the far list is number FAR in wait:due
SEP = "\x1f"
__all__ = ["MAX_PRIORITY", "PROMOTE_BATCH", "WHEEL_KEYS"]


def due_ms(due: float) -> int:
    """A due time (seconds) as the wheel keeps it: integer ms, rounded up (a contact is never promoted early)."""
    return -(-round(due * 1_000_000) // 1000)


def queue_prefix(tenant: str, campaign: str) -> str:
    return f"t:{{{tenant}}}:campaign:{campaign}:q:"


@dataclass(frozen=True)
class QueuedContact:
    """What the engine needs to decide and dial one contact."""

    contact_id: str
    phone: str
    country: str | None = None
    postal_code: str | None = None
    state: str | None = None
    zones: tuple[str, ...] = ()
    priority: int = 0

    def data(self) -> dict[str, Any]:
        return {"phone": self.phone, "country": self.country, "postal_code": self.postal_code, "state": self.state,
                "zones": list(self.zones), "priority": self.priority}

    def entry(self, attempts: int = 0, last: str = "") -> str:
        """The queue's compact string for this contact (field order: dialer/runtime/queue_lua.py)."""
        priority = max(0, min(MAX_PRIORITY, self.priority))
        fields = (self.contact_id, self.phone, self.country or "", self.postal_code or "", self.state or "",
                  ",".join(self.zones), str(priority), str(attempts), last)
        return SEP.join(f.replace(SEP, "") for f in fields)


@dataclass(frozen=True)
class Entry:
    """A parsed queue entry: the contact, its attempts so far and its last step."""

    contact: QueuedContact
    attempts: int
    last: dict[str, Any] | None

    @classmethod
    def parse(cls, raw: str | bytes) -> Entry:
        f = (_s(raw).split(SEP) + [""] * 9)[:9]
        contact = QueuedContact(f[0], f[1], f[2] or None, f[3] or None, f[4] or None,
                                tuple(z for z in f[5].split(",") if z), int(f[6] or 0))
        last = None
        if f[8]:
            step, reason, at = json.loads(f[8])
            last = {"step": step, "reason": reason, "at": at}
        return cls(contact, int(f[7] or 0), last)


@dataclass(frozen=True)
class Claim:
    """A contact claimed by a process: it alone may reserve, dial and settle it (with this call id)."""

    contact: QueuedContact
    call_id: str
    server: str
    owner: str
    claimed_at: float  # campaign clock
    attempts: int  # calls already placed before this one


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def queue_erase(client: Any, pipe: Any, tenant: str, campaign: str, e164: str, at: float) -> None:
    """Queue the erasure of a number from one campaign's queue on the caller's transaction `pipe` (its reply:
    0 not queued here, 1 erased, 2 in flight: run the erasure again once the call ended)."""
    p = queue_prefix(tenant, campaign)
    keys = [p + n for n in (*READY_KEYS, "wait", "claims", "final", "tally", "phones", "known", "leaving", "wait:due",
                            *WHEEL_KEYS)]
    client.register_script(queue_lua.ERASE)(keys=keys, args=[e164, at], client=pipe)


@dataclass(frozen=True)
class TakenOver:
    claim: Claim
    previous_owner: str


class ContactQueue:
    """One campaign's contact queue (see the module docstring for the layout)."""

    def __init__(self, client: Any, tenant: str, campaign: str) -> None:
        if not tenant or ":" in tenant or not campaign or ":" in campaign:
            raise ValueError("tenant and campaign must be non-empty ids without ':'")
        self.redis = client
        self.tenant = tenant
        self.campaign = campaign
        p = queue_prefix(tenant, campaign)
        self.keys = {name: p + name for name in
                     (*READY_KEYS, "wait", "inflight", "claims", "final", "leaving", "tally", "known", "phones",
                      "window", "wait:due", *WHEEL_KEYS)}
        self._load = client.register_script(queue_lua.LOAD)
        self._claim = client.register_script(queue_lua.CLAIM)
        self._settle = client.register_script(queue_lua.SETTLE)
        self._renew = client.register_script(queue_lua.RENEW)
        self._takeover = client.register_script(queue_lua.TAKEOVER)
        self._find = client.register_script(queue_lua.FIND)
        self._held = client.register_script(queue_lua.HELD)
        self._drop_finals = client.register_script(queue_lua.DROP_FINALS)
        self._counts = client.register_script(queue_lua.COUNTS)

    def _k(self, *names: str) -> list[str]:
        return [self.keys[n] for n in (*READY_KEYS, *names)]

    def _kw(self, *names: str) -> list[str]:
        """Keys of a script that reaches the waiting contacts: ready lists, `names`, then the wheel's lists."""
        return self._k(*names, *WHEEL_KEYS)

    # --- filling ---------------------------------------------------------------------------------

    def _load_keys(self) -> list[str]:
        return self._k("final", "tally", "window", "phones", "known", "leaving")

    def add(self, contacts: Iterable[QueuedContact], *, at: float, batch: int = 500, order_from: int = 0,
            ) -> dict[str, int]:
        """Queue contacts from Redis's contact store (the whole-list loader): ready now, by priority, in the order
        given. Idempotent: a contact the queue took before (`known`) is left where it is; a second contact with a
        number already queued leaves as final (`duplicate_number`). `order_from` is kept for callers: the order of
        a list is the order of the pushes."""
        del order_from
        totals = {"added": 0, "known": 0, "duplicates": 0}
        chunk: list[str] = []

        def flush() -> None:
            if not chunk:
                return
            added, known, dup, _ = self._load(keys=self._load_keys(), args=["t", at, "", "", *chunk])
            totals["added"] += int(added)
            totals["known"] += int(known)
            totals["duplicates"] += int(dup)
            chunk.clear()

        for c in contacts:
            chunk += [c.contact_id, "q", c.entry(), ""]
            if len(chunk) >= batch * 4:
                flush()
        flush()
        return totals

    def finalize_unqueued(self, contact_id: str, reason: str, detail: str, at: float) -> bool:
        """Record a contact that cannot even be queued (no valid number) as final, with its reason (whole-list
        loader: once per contact)."""
        reply = self._load(keys=self._load_keys(), args=["t", at, "", "", contact_id, "n", reason, detail])
        return int(reply[3]) == 1

    def load_window(self, items: Sequence[tuple[QueuedContact, str, str]], *, at: float, gen: str, after: str,
                    ) -> dict[str, int] | None:
        """Add one page of the record's window in one step, if the window's generation is still `gen`, and move its
        cursor to `after`. items: (contact, kind, detail): kind "q" queue it, "d" duplicate of the contact `detail`,
        "n" final without a valid number. None: the page is stale (read it again)."""
        args: list[Any] = ["w", at, gen, after]
        for contact, kind, detail in items:
            if kind == "n":
                args += [contact.contact_id, "n", "no_valid_number", "the contact has no valid phone number"]
            else:
                args += [contact.contact_id, kind, contact.entry() if kind == "q" else "", detail]
        reply = self._load(keys=self._load_keys(), args=args)
        if int(reply[0]) < 0:
            return None
        return {"added": int(reply[0]), "known": int(reply[1]), "duplicates": int(reply[2]),
                "no_number": int(reply[3])}

    def held(self) -> tuple[str, str, set[str]]:
        """The window's generation and cursor, and every contact id the queue holds (ready, waiting, in flight,
        final not yet moved to the record), read in one step."""
        raw = self._held(keys=self._kw("wait", "claims", "final", "window", "leaving"))
        return _s(raw[0]), _s(raw[1]), {_s(x) for x in raw[2:]}

    def finals_batch(self, limit: int = 1000) -> dict[str, dict[str, Any]]:
        """Up to about `limit` final contacts of the record's window still in Redis (`leaving`)."""
        _, raw = self.redis.hscan(self.keys["leaving"], 0, count=limit)
        return {_s(k): json.loads(v) for k, v in raw.items()}

    def drop_finals(self, contact_ids: Sequence[str]) -> int:
        """Final contacts now stored in the record leave Redis (and the window's generation moves)."""
        return int(self._drop_finals(keys=[self.keys["leaving"], self.keys["window"]], args=list(contact_ids)))

    def upgrade_layout(self) -> int:
        """Convert this queue from a layout before the current one, once (atomic, idempotent): ready and waiting
        contacts keep their place, claims their entry, finals stay and every contact it held stays known (never
        queued again); contacts waiting in the sorted set `wait` move into the wait wheel. Returns how many contacts
        it converted (0: nothing to convert)."""
        p = queue_prefix(self.tenant, self.campaign)
        keys = self._k("wait", "claims", "final", "tally", "known") + [
            p + n for n in ("state", "data", "attempts", "last", "ready")]
        held = int(self.redis.register_script(queue_lua.UPGRADE)(keys=keys))
        moved = int(self.redis.register_script(queue_lua.MIGRATE_WAIT)(
            keys=[self.keys[n] for n in ("wait", "wait:due", *WHEEL_KEYS)]))
        return held or moved

    # --- claiming and settling -------------------------------------------------------------------

    def claim(self, n: int, *, owner: str, now: float, lease_until: float, call_ids: Sequence[str],
              servers: Sequence[str]) -> list[Claim]:
        """Claim up to n ready contacts (due retries first become ready). `call_ids`/`servers`: one per slot."""
        return self.parse_claims(self.claim_on(None, n, owner=owner, now=now, lease_until=lease_until,
                                               call_ids=call_ids, servers=servers), owner=owner, now=now)

    def claim_on(self, pipe: Any, n: int, *, owner: str, now: float, lease_until: float, call_ids: Sequence[str],
                 servers: Sequence[str]) -> Any:
        """The claim script, run now (pipe None: its raw reply) or queued on a pipeline (e.g. in the same MULTI as
        the data-state check, dialer/runtime/datastate.py); parse_claims() reads the reply."""
        if n > len(call_ids) or n > len(servers):
            raise ValueError("one call id and one server per claimed contact")
        args: list[Any] = [now, lease_until, owner, n]
        for i in range(n):
            args += [call_ids[i], servers[i]]
        return self._claim(keys=self._kw("wait", "inflight", "claims", "wait:due"), args=args, client=pipe)

    @staticmethod
    def parse_claims(raw: Any, *, owner: str, now: float) -> list[Claim]:
        out = []
        for i in range(0, len(raw), 3):
            entry = Entry.parse(raw[i])
            out.append(Claim(entry.contact, _s(raw[i + 1]), _s(raw[i + 2]), owner, now, entry.attempts))
        return out

    def promote_due(self, now: float) -> None:
        """Move due retries to ready without claiming (for accurate depth figures)."""
        self.claim(0, owner="", now=now, lease_until=0, call_ids=(), servers=())

    def _settle_call(self, contact_id: str, call_id: str, action: str, *, count_attempt: bool, due: float = 0.0,
                     final: dict[str, Any] | None = None, last: tuple[str, str, float] | None = None) -> bool:
        args = [contact_id, call_id, action, "1" if count_attempt else "0", str(due_ms(due)),
                json.dumps(final or {}, separators=(",", ":")),
                # the last step, compact ([step, reason, at to the ms]): it rides in the entry while it waits
                json.dumps([last[0], last[1], round(last[2], 3)], separators=(",", ":")) if last else "",
                str(due_ms(last[2])) if last else "0"]  # settled at: a retry due a lap later waits in the far list
        return bool(self._settle(keys=self._kw("wait:due", "inflight", "claims", "final", "tally", "known",
                                               "leaving"), args=args))

    def retry(self, claim: Claim, due: float, *, reason: str, count_attempt: bool, at: float) -> bool:
        """Waiting until `due` (a retry rule, or the gate's next_allowed_at; rounded up to the ms)."""
        return self._settle_call(claim.contact.contact_id, claim.call_id, "retry", count_attempt=count_attempt,
                                 due=due, last=("retry", reason, at))

    def requeue(self, claim: Claim, *, reason: str, at: float) -> bool:
        """Back to ready at once (behind its priority's ready contacts), no attempt counted (never placed)."""
        return self._settle_call(claim.contact.contact_id, claim.call_id, "requeue", count_attempt=False, due=at,
                                 last=("requeue", reason, at))

    def finish(self, claim: Claim, *, reason: str, at: float, count_attempt: bool, detail: str = "",
               disposition: str | None = None) -> bool:
        """The contact leaves the queue for good, with its reason."""
        final = {"reason": reason, "detail": detail, "at": at, "disposition": disposition}
        return self._settle_call(claim.contact.contact_id, claim.call_id, "final", count_attempt=count_attempt,
                                 final=final)

    def renew(self, owner: str, contact_ids: Sequence[str], lease_until: float) -> int:
        """Extend this owner's leases; returns how many it still holds."""
        if not contact_ids:
            return 0
        return int(self._renew(keys=[self.keys["inflight"], self.keys["claims"]],
                               args=[owner, lease_until, *contact_ids]))

    def take_over_expired(self, *, owner: str, now_wall: float, lease_until: float, limit: int = 100,
                          ) -> list[TakenOver]:
        """Claims whose lease expired become this owner's (with their call id and server, to be resolved)."""
        raw = self._takeover(keys=[self.keys["inflight"], self.keys["claims"]],
                             args=[now_wall, owner, lease_until, limit])
        out = []
        for i in range(0, len(raw), 2):
            old = json.loads(raw[i + 1])
            if not old.get("entry"):
                continue
            entry = Entry.parse(old["entry"])
            claim = Claim(entry.contact, old["call_id"], old.get("server") or "", owner,
                          float(old.get("claimed_at") or 0), entry.attempts)
            out.append(TakenOver(claim, old.get("owner") or ""))
        return out

    # --- reading ---------------------------------------------------------------------------------

    def counts(self, now: float | None = None) -> dict[str, int]:
        """ready, waiting (due_now among them), in flight, final (every contact that left, moved to the record
        or not). One script: a contact claimed meanwhile is never counted both ready and in flight."""
        raw = self._counts(keys=self._kw("wait", "inflight", "tally", "wait:due"),
                           args=["" if now is None else repr(now)])
        ready, waiting, due, inflight, final = (int(x) for x in raw)
        return {"ready": ready, "waiting": waiting, "due": due, "inflight": inflight, "final": final}

    def tally(self) -> dict[str, int]:
        """The queue's counters: taken, final, attempts, r:<reason>, d:<gate denial code>."""
        return {_s(k): int(v) for k, v in self.redis.hgetall(self.keys["tally"]).items()}

    def final_reasons(self) -> dict[str, int]:
        """Contacts that left the queue, by reason (those moved to the record included)."""
        return {k[2:]: n for k, n in sorted(self.tally().items()) if k.startswith("r:") and n}

    def find(self, *, contact_id: str = "", e164: str = "") -> list[Found]:
        """The queue's contacts with this id or number (linear in the window: not for the dialing path)."""
        raw = self._find(keys=self._kw("wait", "claims", "final", "phones", "leaving"), args=[contact_id, e164])
        out = []
        for i in range(0, len(raw), 5):
            entry = Entry.parse(raw[i + 2]) if raw[i + 2] else None
            out.append(Found(_s(raw[i]), _s(raw[i + 1]), entry, float(raw[i + 3]) if raw[i + 3] else None,
                             json.loads(raw[i + 4]) if raw[i + 4] else None))
        return out

    def held_entries(self) -> Iterator[Found]:
        """Every contact the queue holds with its entry (ready, waiting, in flight), then those final in Redis."""
        for name in READY_KEYS:
            for raw in self.redis.lrange(self.keys[name], 0, -1):
                entry = Entry.parse(raw)
                yield Found(entry.contact.contact_id, "ready", entry, None, None)
        for raw, due in self.redis.zrange(self.keys["wait"], 0, -1, withscores=True):
            entry = Entry.parse(raw)
            yield Found(entry.contact.contact_id, "wait", entry, float(due), None)
        for name in WHEEL_KEYS:
            for item in self.redis.lrange(self.keys[name], 0, -1):
                ms, _, raw = _s(item).partition(SEP)
                entry = Entry.parse(raw)
                yield Found(entry.contact.contact_id, "wait", entry, int(ms) / 1000, None)
        for cid, claim in self.claims().items():
            yield Found(cid, "inflight", Entry.parse(claim["entry"]), None, None)
        for cid, final in self.final_states().items():
            yield Found(cid, "final", None, None, final)

    def _one(self, contact_id: str) -> Found | None:
        found = self.find(contact_id=contact_id)
        return found[0] if found else None

    def state_of(self, contact_id: str) -> str | None:
        found = self._one(contact_id)
        return found.state if found else None

    def final_state(self, contact_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(self.keys["final"], contact_id) or self.redis.hget(self.keys["leaving"], contact_id)
        return None if raw is None else json.loads(raw)

    def final_states(self) -> dict[str, dict[str, Any]]:
        """Every contact that left: those the record's window moved to the record (this process's record,
        dialer.record.current; left out when it cannot be read) and those still in Redis."""
        from dialer.record.contacts import campaign_finals
        from dialer.record.current import contact_record
        from dialer.record.store import RecordUnavailable

        try:
            moved = campaign_finals(contact_record(), self.tenant, self.campaign)
        except RecordUnavailable:
            moved = {}
        return {**moved, **{_s(k): json.loads(v) for name in ("final", "leaving")
                            for k, v in self.redis.hscan_iter(self.keys[name], count=1000)}}

    def last_step(self, contact_id: str) -> dict[str, Any] | None:
        found = self._one(contact_id)
        return found.last if found else None

    def attempts(self, contact_id: str) -> int:
        found = self._one(contact_id)
        return found.attempts if found else 0

    def claims(self) -> dict[str, dict[str, Any]]:
        return {_s(k): json.loads(v) for k, v in self.redis.hgetall(self.keys["claims"]).items()}

    def next_due(self) -> float | None:
        """The earliest due time of a waiting contact (seconds), None when none waits."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrange(self.keys["wait"], 0, 0, withscores=True)
        pipe.zrange(self.keys["wait:due"], 0, -1, withscores=True)
        old, lists = pipe.execute()
        times = [float(old[0][1])] if old else []
        # a list's time is its earliest due time, a lap list's a lap before, the far list's 25.6 h before
        times += [(score + (0 if int(n) < MINUTE_LISTS else LAP_MS if int(n) < FAR else FAR_MS)) / 1000
                  for n, score in lists]
        return min(times) if times else None


@dataclass(frozen=True)
class Found:
    """A contact found in the queue: its state, entry (None once final), due time (waiting) and final reason."""

    contact_id: str
    state: str
    entry: Entry | None
    due: float | None
    final: dict[str, Any] | None

    @property
    def attempts(self) -> int:
        if self.entry is not None:
            return self.entry.attempts
        return int((self.final or {}).get("attempts") or 0)

    @property
    def last(self) -> dict[str, Any] | None:
        """The last step: {step, reason, at} (and `due` while waiting), or how it left (final)."""
        if self.entry is not None:
            if self.entry.last is not None and self.due is not None:
                return {**self.entry.last, "due": self.due}
            return self.entry.last
        if self.final is not None:
            return {"step": "final", "reason": self.final.get("reason"), "at": self.final.get("at")}
        return None
