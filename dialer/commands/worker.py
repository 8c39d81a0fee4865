"""`dialer worker [--queues imports,registry,...] [--burst]`: run RQ workers on our queues.

Run as many as you like, on as many machines, against the same Redis: each takes jobs from the
queues in the order given. `--processes N` starts N worker processes here. At start, imports whose
coordinator died after their commit point are finished (dialer.contacts.jobs.resume_imports).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import socket
import uuid
from typing import Any

import redis

from dialer import redisconn
from dialer.cli import CommandError, redis_unreachable
from dialer.config import Config
from dialer.jobs import QUEUES, STOP_SIGNALS, DialerWorker, configure

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser = sub.add_parser("worker", help="run RQ workers on the dialer's queues")
    parser.add_argument("--queues", help=f"comma-separated queues (default: setting worker.queues; "
                        f"known: {', '.join(QUEUES)})")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--processes", type=int, default=1, help="worker processes to start here (default 1)")
    parser.add_argument("--name", help="worker name prefix (default: host name)")
    parser.set_defaults(func=run)


def parse_queues(text: str) -> list[str]:
    names = [q.strip() for q in text.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown or not names:
        raise CommandError(f"unknown queue {unknown[0] if unknown else '(none)'}: known queues are {', '.join(QUEUES)}")
    return names


def work(url: str, queues: list[str], burst: bool, name: str, own_group: bool = False,
         data_url: str | None = None) -> bool:
    """Run one RQ worker on `url` (the queues' Redis: redis.jobs_url, else redis.url); jobs reach the data on
    `data_url` (redis.url) when it is another Redis, e.g. a Redis Cluster (dialer.jobs.job_data_connection)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if own_group:
        # A terminal's Ctrl+C reaches the whole foreground group; the parent forwards it once, so a
        # child in the parent's group would see each request twice.
        os.setpgrp()
    if data_url is not None:
        configure(data_url, url)
    client = redisconn.connect(url)
    worker = DialerWorker(queues, connection=client, name=name)
    return worker.work(burst=burst, logging_level=logging.getLevelName(logging.getLogger().level))


def _move_legacy_contacts(client: redis.Redis) -> None:
    """Contacts an older dialer kept in Redis go into the record (dialer/contacts/move.py): at every start, so an
    upgrade loses nothing; a record that is down leaves them where they are (said once; the next start retries)."""
    from dialer.contacts.move import legacy_tenants, move_contacts
    from dialer.record.current import contact_record
    from dialer.record.store import RecordUnavailable

    tenants = legacy_tenants(client)
    if not tenants:
        return
    try:
        moved = move_contacts(client, contact_record(), tenants)
    except RecordUnavailable as exc:
        log.error("contacts still in Redis were not moved into the record (%s): run `dialer record move-contacts` "
                  "once it is back", exc)
        return
    log.info("moved %d contacts from Redis into the record", moved.total)


def run(args: argparse.Namespace, config: Config) -> int:
    queues = parse_queues(args.queues or config["worker.queues"])
    client = redisconn.connect(config.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    if "imports" in queues:
        from dialer.contacts.jobs import resume_imports

        resumed = resume_imports(client)
        if resumed:
            log.info("resumed or closed %d interrupted imports", len(resumed))
        _move_legacy_contacts(client)
    prefix = args.name or socket.gethostname()
    watchdog = None
    if "imports" in queues and not args.burst:
        # imports whose coordinator died are found within ~12 s (dialer/contacts/watchdog.py), without a poll
        from dialer.contacts.watchdog import start_watch

        watchdog = start_watch(config.redis_url)
    try:
        return _run_workers(args, config, queues, prefix)
    finally:
        if watchdog is not None:
            watchdog.set()


def _run_workers(args: argparse.Namespace, config: Config, queues: list[str], prefix: str) -> int:
    if args.processes <= 1:
        work(config.jobs_url, queues, args.burst, f"{prefix}.{uuid.uuid4().hex[:6]}", data_url=config.redis_url)
        return 0
    procs = [
        multiprocessing.Process(target=work, args=(config.jobs_url, queues, args.burst,
                                                   f"{prefix}.{uuid.uuid4().hex[:6]}", True, config.redis_url),
                                daemon=False)
        for _ in range(args.processes)
    ]

    def forward(signum: int, _frame: object) -> None:
        # Pass the stop request on: each RQ worker finishes its current job (warm shutdown), then exits.
        for proc in procs:
            if proc.pid and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    # Children are forked with the stop signals blocked (they unblock once RQ is ready), and the
    # parent takes them only once it can forward them: no stop request is lost or half-handled.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for proc in procs:
        proc.start()
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    for proc in procs:
        proc.join()
    return 0 if all(p.exitcode == 0 for p in procs) else 1
