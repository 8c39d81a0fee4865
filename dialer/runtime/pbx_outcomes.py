"""The runtime's use of the outcomes our dialplan keeps in AstDB (dialer/ami/outcomes.py).

A call settled without its final events (taken over from a dead process, or gone after a reconnect: `unknown`) is
looked up in its server's AstDB first, so it is recorded with what really happened; every answered call's entry is
deleted once its outcome is stored (on a Redis Cluster: and on every replica, replicas.py). Without a connection
the call stays `unknown` (counted, cooled off) and the entry stays for an operator: never a guess in the person's
favour of a second call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis

from dialer.ami import outcomes
from dialer.ami.calls import Outcome
from dialer.ami.client import ActionFailed, AMIError
from dialer.ami.dispositions import Disposition
from dialer.ami.pool import AMIPool
from dialer.facts import attempt_from_json, person_key
from dialer.gate import CALL_INDEX_TTL, call_index_key
from dialer.runtime.replicas import ReplicaSync

log = logging.getLogger(__name__)


def may_be_stored(outcome: Outcome) -> bool:
    """Whether the dialplan may have stored this call's outcome (it ran: the call was answered, or we cannot tell)."""
    return outcome.answered_at is not None or outcome.disposition is Disposition.UNKNOWN


async def settle_with_pbx(pool: AMIPool, server: str, outcome: Outcome, *, taken_over: bool) -> Outcome:
    """The outcome to record: the events' own, or the stored one when the events could not know (see
    outcomes.settle). Asked only for calls taken over or settled without their events."""
    if not may_be_stored(outcome):
        return outcome
    if not taken_over and outcome.disposition is not Disposition.UNKNOWN:
        return outcome
    client = pool.clients.get(server)
    if client is None or not client.connected:
        log.warning("call %s: server %s not connected, its stored outcome cannot be read; recorded as %s",
                    outcome.call_id, server, outcome.disposition)
        return outcome
    try:
        stored = await outcomes.read(client, outcome.call_id)
    except AMIError as exc:
        log.warning("call %s: stored outcome not readable on %s (%s); recorded as %s", outcome.call_id, server, exc,
                    outcome.disposition)
        return outcome
    settled = outcomes.settle(outcome, stored)
    if settled is not outcome:
        log.info("call %s: outcome %s read back from AstDB on %s (events said %s)", outcome.call_id,
                 settled.disposition, server, outcome.disposition)
    return settled


async def forget_stored(pool: AMIPool, server: str, outcome: Outcome) -> None:
    """Delete the call's AstDB entry once its outcome is stored (one left behind, if the process stops first, is
    harmless: the call is settled, a successor reads only the calls it takes over, and StoredOutcomeSweep deletes
    it)."""
    if not may_be_stored(outcome):
        return
    client = pool.clients.get(server)
    if client is None or not client.connected:
        return
    try:
        await outcomes.forget(client, outcome.call_id)
    except ActionFailed as exc:
        message = (exc.response.get("Message") or "").lower()
        if "permission denied" in message:  # an AMI user without `system` (asterisk/manager.conf.sample)
            if server not in _denied:
                _denied.add(server)
                log.error("AMI %s: stored call outcomes cannot be deleted (%s): they pile up in AstDB until cleared "
                          "(database deltree dialer_outcome) or `system` is granted", server, exc)
        else:  # e.g. "Asterisk is shutting down" (a restart): nothing to grant, the sweep after the re-login deletes it
            log.debug("call %s: AstDB outcome not deleted on %s yet (%s); the sweep deletes it", outcome.call_id,
                      server, exc)
    except AMIError as exc:
        log.warning("call %s: AstDB outcome not deleted on %s (%s)", outcome.call_id, server, exc)


_denied: set[str] = set()  # servers whose DBDel was refused (logged once per process)


# --- entries nobody deleted -------------------------------------------------------------------------------------

CallState = Callable[[str, str], "str | None"]  # (tenant, call id) -> reserved | an outcome | released | unconfirmed
#                                                  | None


def call_state(client: redis.Redis, tenant: str, call_id: str, replicas: ReplicaSync | None = None) -> str | None:
    """What the gate knows of a call: its recorded outcome, `reserved` (no outcome yet: a live or taken-over call),
    `released` (never placed), or None (no call index: another system's id, or older than the index's 7 days).
    With `replicas` (Redis Cluster), a settled state not yet on every replica is `unconfirmed`: a failover could
    still take it back, so the PBX's copy must stay (replicas.py)."""
    number = client.get(call_index_key(tenant, call_id))
    if number is None:
        return None
    raw = client.hget(person_key(tenant, number.decode() if isinstance(number, bytes) else str(number), "att"),
                      call_id)
    state = "released" if raw is None else attempt_from_json(raw).outcome
    if state != "reserved" and replicas is not None and not replicas.written(tenant).ok:
        return "unconfirmed"
    return state


class StoredOutcomeSweep:
    """Deletes the entries whose call is settled but which were not deleted (the process stopped, or lost its
    server, between storing the outcome and DBDel), after every login and every `interval` seconds. An entry of a
    call still `reserved` is kept: its owner or a successor reads it; one whose outcome is not on every Redis
    replica yet (`unconfirmed`) too, until a later sweep. One the dialer cannot place (no call index)
    is kept as long as the index would live, then deleted with a warning."""

    def __init__(self, pool: AMIPool, state: CallState, *, interval: float = 300.0,
                 max_age: float = CALL_INDEX_TTL) -> None:
        self.pool, self.state, self.interval, self.max_age = pool, state, interval, max_age
        self.deleted = 0
        self.stopping = False
        self._synced: dict[str, int] = {}  # server -> client.connections at its last sweep

    async def run(self, clock: Callable[[], float] = time.time) -> None:
        last: dict[str, float] = {}
        while not self.stopping:  # a flag as well as cancel(): see AstDBSync.run
            for name, client in self.pool.clients.items():
                due = clock() - last.get(name, -1e18) >= self.interval
                if client.connected and (due or self._synced.get(name) != client.connections):
                    last[name], self._synced[name] = clock(), client.connections
                    try:
                        self.deleted += await self.sweep_once(name, clock())
                    except AMIError as exc:
                        log.warning("AMI %s: stored outcomes not swept (%s); retried", name, exc)
                    except Exception:
                        log.exception("AMI %s: stored outcome sweep failed; retried", name)
            await asyncio.sleep(1.0)

    async def sweep_once(self, name: str, now: float) -> int:
        client = self.pool.clients[name]
        listing = await client.event_list("DBGetTree", {"Family": outcomes.FAMILY}, timeout=10.0)
        deleted = 0
        for message in listing.events:
            if (message.name or "") != "DBGetTreeResponse":
                continue
            call_id = (message.get("Key") or "").rsplit("/", 1)[-1]
            entry = outcomes.parse_value(call_id, message.get("Val") or "")
            if isinstance(entry, str):
                continue  # logged when read; left for an operator
            state = await asyncio.to_thread(self.state, entry.tenant, call_id)
            if state in ("reserved", "unconfirmed"):
                continue
            if state is None:
                if now - entry.at < self.max_age:
                    continue
                log.warning("AMI %s: stored outcome of call %s (tenant %s, %s) belongs to no call the dialer "
                            "knows; deleted after %d days", name, call_id, entry.tenant, entry.disposition,
                            self.max_age // 86400)
            if await outcomes.forget(client, call_id):
                deleted += 1
        return deleted
