"""Imports whose coordinator died: found by heartbeat within about 12 s, without waiting for anyone to poll.

A coordinator (dialer.contacts.jobs.Importer.run) beats every BEAT_SECONDS from a thread of its own, stamped with
Redis's clock (`alive_at` in the import's status hash), whatever it is doing (staging, waiting for helpers, a
long commit). Every `dialer worker` runs `sweep` every SWEEP_SECONDS: an import "running" or "committing" whose
beat is older than STALE_SECONDS is taken over by exactly one sweeper (one script re-stamps it), then

  running     (before the commit point) -> failed "abandoned", staging removed; helpers still staging for it see
              the status at their next batch and stop, removing what they wrote;
  committing  (after the commit point)  -> the sweeper finishes the commit, beating while it does.

Contacts reach the record in one transaction (dialer.contacts.publish): an unfinished commit shows none of them,
a finished one all of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dialer import redisconn

log = logging.getLogger(__name__)

BEAT_SECONDS = 2.0
STALE_SECONDS = 10.0  # 5 missed beats
SWEEP_SECONDS = 2.0

# KEYS: status hash. Stamp alive_at with Redis's clock.
_BEAT = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'alive_at', string.format('%.3f', tonumber(t[1]) + tonumber(t[2]) / 1e6))
return 1
"""

# KEYS: status hash. ARGV: stale seconds. Takes an import whose coordinator stopped beating: returns its status
# (running | committing) and re-stamps it, so a second sweeper leaves it alone; nil otherwise.
_TAKE = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'running' and st ~= 'committing' then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local alive = tonumber(redis.call('HGET', KEYS[1], 'alive_at') or '')
if alive == nil then alive = tonumber(redis.call('HGET', KEYS[1], 'heartbeat') or '0') end
if now - alive <= tonumber(ARGV[1]) then return false end
redis.call('HSET', KEYS[1], 'alive_at', string.format('%.3f', now))
redis.call('HINCRBY', KEYS[1], 'watchdog_takeovers', 1)
return st
"""


@contextmanager
def beating(client: Any, status_key: str, every: float = BEAT_SECONDS) -> Iterator[None]:
    """Stamp the import alive every `every` seconds from a thread while the body runs (a Redis hiccup skips a
    beat; STALE_SECONDS leaves room for several)."""
    beat = client.register_script(_BEAT)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                beat(keys=[status_key])
            except Exception as exc:  # never kill the import for a missed beat
                log.debug("import heartbeat skipped (%s)", exc)
            stop.wait(every)

    thread = threading.Thread(target=loop, name="import-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 1)


def sweep(client: Any, stale_after: float = STALE_SECONDS) -> list[tuple[str, str]]:
    """One pass over the active imports; returns (import id, what was done) for each one taken over."""
    from dialer.contacts.jobs import ACTIVE, FINAL, Importer, clean_failed
    from dialer.contacts.store import Keys, _s

    take = client.register_script(_TAKE)
    done: list[tuple[str, str]] = []
    clean_failed(client)  # staged rows of failed imports that found the record down
    for member in client.smembers(ACTIVE):
        tenant, import_id = _s(member).split("\t", 1)
        keys = Keys(tenant, import_id)
        status = client.hget(keys.status, "status")
        if status is None or _s(status) in FINAL:
            client.srem(ACTIVE, member)
            continue
        taken = take(keys=[keys.status], args=[stale_after])
        if not taken:
            continue
        importer = Importer(client, tenant, import_id)
        if _s(taken) == "committing":
            log.warning("import %s: its coordinator stopped after the commit point; finishing the commit here",
                        import_id)
            from dialer.record.store import RecordUnavailable

            try:
                with beating(client, keys.status):
                    importer.commit()
            except RecordUnavailable:
                continue  # logged once per try; the next sweep tries again once its beat is stale
            done.append((import_id, "committed"))
        else:
            importer.fail("abandoned", f"the import's worker stopped (no heartbeat for {stale_after:.0f} s) before "
                          "its commit: nothing was imported; import the file again")
            done.append((import_id, "failed"))
    return done


def watch(url: str, stop: threading.Event, every: float = SWEEP_SECONDS) -> None:
    """The sweeper loop `dialer worker` runs in a thread until `stop` is set."""

    client = redisconn.connect(url)
    try:
        while not stop.wait(every):
            try:
                sweep(client)
            except Exception:  # a bug or Redis down: log it, sweep again later
                log.exception("import watchdog: sweep failed; retrying in %.0f s", every)
    finally:
        client.close()


def start_watch(url: str) -> threading.Event:
    """Start the sweeper thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=watch, args=(url, stop), name="import-watchdog", daemon=True).start()
    return stop
