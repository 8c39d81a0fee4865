"""Keypress opt-outs kept in Asterisk's AstDB, read back so none is lost while the AMI connection is down.

Asterisk does not replay events: a `DialerOptOut` UserEvent raised while the dialer is disconnected is gone. So
our dialplan also writes each opt-out to AstDB before raising the event (asterisk/README.md, the event contract):

    family dialer_optout, key <call id>, value "<epoch>,<campaign id>,<tenant id>"

After every (re)connect and every `interval` seconds the pool reads the family (`DBGetTree`), records each entry
through the same sink as the events (OptOutRecorder -> FactStore.add_optout, which writes a call's opt-out once),
and deletes the entry (`DBDel`) only once the sink has returned, i.e. once the opt-out is durably stored.

The number comes from the call tracker when this process placed the call, else from `resolve(tenant, call_id)`
(the runtime passes the gate's call index, `t:{T}:call:{call_id}`). An entry whose number cannot be found, or
whose value cannot be read, is kept in AstDB and logged: never deleted unrecorded.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dialer.ami.calls import CallTracker, OptOut
from dialer.ami.client import ActionFailed, AMIClient, AMIError
from dialer.ami.protocol import Message

log = logging.getLogger(__name__)

FAMILY = "dialer_optout"
DEFAULT_INTERVAL = 30.0
# Ids become parts of Redis keys: the same characters the gateway accepts in a path (no ':' or '*').
_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

# resolve(tenant, call_id) -> E.164 or None; sync (run in a worker thread) or async
Resolver = Callable[[str, str], "str | Awaitable[str | None] | None"]


@dataclass(frozen=True)
class Entry:
    """One AstDB opt-out: the call id (key) and what the dialplan stored with it."""

    call_id: str
    at: float  # the dialplan's ${EPOCH}
    campaign_id: str
    tenant: str


def parse_entry(message: Message) -> Entry | str:
    """A DBGetTreeResponse -> Entry, or a one-line reason it cannot be used (the entry is then kept).

    Asterisk 22 sends the full key (`/dialer_optout/<call id>`) in `Key` and no `Family`; a `Family` field with a
    bare key is accepted too."""
    key = message.get("Key") or ""
    family = message.get("Family")
    if family is None and key.startswith("/"):
        family, _, key = key[1:].partition("/")
    if family != FAMILY:
        return f"entry {message.get('Key')!r} is not in family {FAMILY}"
    epoch, _, rest = (message.get("Val") or "").partition(",")
    campaign, _, tenant = rest.partition(",")
    if not _ID.match(key) or not _ID.match(campaign) or not _ID.match(tenant):
        return f"entry {key!r}: call id, campaign or tenant missing or not an id"
    try:
        at = float(epoch)
    except ValueError:
        return f"entry {key!r}: time {epoch!r} is not an epoch"
    return Entry(key, at, campaign, tenant)


async def sync_optouts(
    name: str,
    client: AMIClient,
    tracker: CallTracker,
    sink: Callable[[str, OptOut], object],
    resolve: Resolver | None,
    *,
    timeout: float | None = None,
) -> tuple[int, int]:
    """Read the family, record and delete every usable entry. Returns (recorded from AstDB and deleted, kept);
    an entry the sink says it had already (returns False: heard from the event) is deleted, not counted."""
    listing = await client.event_list("DBGetTree", {"Family": FAMILY}, timeout=timeout)
    done = kept = 0
    for message in listing.events:
        if (message.name or "") != "DBGetTreeResponse":
            continue
        entry = parse_entry(message)
        if isinstance(entry, str):
            log.error("AMI %s: AstDB opt-out %s; kept in AstDB for an operator", name, entry)
            kept += 1
            continue
        attempt = tracker.get(entry.call_id)
        number = attempt.contact if attempt is not None else await _resolve(resolve, entry.tenant, entry.call_id)
        if not number:
            log.error("AMI %s: AstDB opt-out of call %s (tenant %s): number unknown (call index expired?); kept in "
                      "AstDB", name, entry.call_id, entry.tenant)
            kept += 1
            continue
        result = sink(name, OptOut(call_id=entry.call_id, campaign_id=entry.campaign_id, tenant=entry.tenant,
                                   contact=number, at=entry.at, digit=None, uniqueid=None))
        if inspect.isawaitable(result):
            result = await result  # returns once stored (OptOutRecorder retries until then); raising keeps the entry
        try:
            await client.action("DBDel", {"Family": FAMILY, "Key": entry.call_id}, timeout=timeout)
        except ActionFailed as exc:
            if (exc.response.get("Message") or "") != "Database entry not found":  # another process deleted it
                raise
        if result is not False:  # False: the sink had it already (from the event): nothing was lost
            done += 1
    return done, kept


async def _resolve(resolve: Resolver | None, tenant: str, call_id: str) -> str | None:
    if resolve is None:
        return None
    if inspect.iscoroutinefunction(resolve):
        return await resolve(tenant, call_id)  # type: ignore[no-any-return]
    result = await asyncio.to_thread(resolve, tenant, call_id)
    if inspect.isawaitable(result):
        result = await result
    return result  # type: ignore[return-value]


class AstDBSync:
    """One loop per server: sync after every login (the first and each reconnect) and every `interval` seconds."""

    def __init__(self, name: str, client: AMIClient, tracker: CallTracker, sink: Callable[[str, OptOut], object],
                 resolve: Resolver | None, interval: float = DEFAULT_INTERVAL) -> None:
        self.name, self.client, self.tracker, self.sink, self.resolve = name, client, tracker, sink, resolve
        self.interval = interval
        self.synced_connection = 0  # client.connections at the last complete sync
        self.recorded = 0
        self.passes = 0
        self.stopping = False
        self._denied_logged = False

    async def run(self, clock: Callable[[], float]) -> None:
        last = -1e18
        # A flag as well as the pool's cancel: Python 3.11's asyncio.wait_for (inside the client's actions) can
        # swallow a cancellation that lands as its action completes, which would leave this loop running.
        while not self.stopping:
            if self.client.connected and (self.client.connections != self.synced_connection
                                          or clock() - last >= self.interval):
                connection = self.client.connections
                last = clock()
                try:
                    done, _ = await sync_optouts(self.name, self.client, self.tracker, self.sink, self.resolve)
                    self.recorded += done
                    self.passes += 1
                    self.synced_connection = connection
                    if done:
                        log.warning("AMI %s: %d opt-outs read back from AstDB and stored", self.name, done)
                except ActionFailed as exc:
                    self.synced_connection = connection  # refused: retried on the interval, not in a loop
                    message = (exc.response.get("Message") or "").lower()
                    if "permission denied" not in message:
                        # e.g. "Asterisk is shutting down" (a restart: the sync after the re-login catches up)
                        log.info("AMI %s: AstDB opt-out sync refused (%s); retried", self.name, exc)
                    elif not self._denied_logged:
                        self._denied_logged = True
                        log.error("AMI %s: AstDB opt-outs cannot be read or deleted (%s): grant the AMI user "
                                  "write = system,reporting (asterisk/manager.conf.sample)", self.name, exc)
                except (AMIError, OSError) as exc:
                    log.warning("AMI %s: AstDB opt-out sync interrupted (%s); retried", self.name, exc)
                except Exception:
                    log.exception("AMI %s: AstDB opt-out sync failed; retried", self.name)
            await asyncio.sleep(min(1.0, self.interval))
