"""RQ plumbing shared by every background job: queue names, how to get a queue, and our workers.

Queues: imports (contact lists), registry (national opposition registries), exports (CSV exports),
retention (data retention and erasure). `dialer worker` listens on all of them by default
(setting worker.queues); run several workers, on several machines, against the same Redis.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

import redis
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import StopRequested

from dialer.redisconn import connect, is_cluster

QUEUES: tuple[str, ...] = ("imports", "registry", "exports", "retention")
IMPORTS, REGISTRY, EXPORTS, RETENTION = QUEUES


# RQ 3.0 does not run on a Redis Cluster: its keys (rq:job:<id>, rq:queue:<name>, rq:wip:<name> ...) carry no
# hash tags and it writes them together in MULTI blocks and scripts (CROSSSLOT). With redis.url a cluster, the
# queues live on the plain Redis named by redis.jobs_url, and jobs read and write the data on the cluster.
_urls: dict[str, str] = {}
_clients: dict[str, redis.Redis] = {}


def configure(data_url: str, jobs_url: str) -> None:
    """Set by each process from its settings (dialer.cli, gateway.app): where the data and the queues live."""
    _urls.update(data=data_url, jobs=jobs_url)


def _separate() -> bool:
    return bool(_urls.get("jobs")) and _urls.get("jobs") != _urls.get("data")


def _client(url: str) -> redis.Redis:
    if url not in _clients:
        _clients[url] = connect(url)
    return _clients[url]


def jobs_connection(client: redis.Redis) -> redis.Redis:
    """The Redis RQ uses, given a data client: that client itself unless redis.jobs_url names another one."""
    if _separate():
        return _client(_urls["jobs"])
    if is_cluster(client):
        raise RuntimeError("setting redis.jobs_url is required with a Redis Cluster: RQ does not run on one "
                           "(docs/redis.md)")
    return client


def job_data_connection(job: Any) -> redis.Redis:
    """Inside a job: the Redis holding the data (the worker's own connection unless the queues live apart)."""
    return _client(_urls["data"]) if _separate() else job.connection


def get_queue(client: redis.Redis, name: str) -> Queue:
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r} (known: {', '.join(QUEUES)})")
    return Queue(name, connection=jobs_connection(client))


log = logging.getLogger(__name__)

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

# How long the command-channel thread waits for a message before it looks at its stop flag. RQ 3 uses
# 60 s and joins that thread without a bound when the worker stops, so a worker that had run a job
# (and so was idle in that wait) took up to 60 s to exit after SIGTERM.
PUBSUB_POLL_SECONDS = 0.25


class PromptStop:
    """What every worker of ours does on top of RQ's: stop at once when asked, and at once when asked twice.

    The first stop request lets the current job finish (warm shutdown); a second one, however soon,
    takes the job down with the worker."""

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL_SECONDS, daemon=True, exception_handler=self._pubsub_exception_handler)

    def request_force_stop(self, signum: int, frame: Any) -> None:
        # RQ ignores a second signal within 1 s of the first, as a guard against its own worker pool
        # sending one beside the terminal's; a person pressing Ctrl+C twice does exactly that, and the
        # job then ran to its end. Our pool never duplicates a signal (children have their own process
        # group, see dialer.commands.worker), so every second request is meant.
        log.warning("Worker %s: second stop request, stopping now", self.name)
        if self.horse_pid:
            self.kill_horse()
            self.wait_for_horse()
        raise SystemExit()


class DialerWorker(PromptStop, Worker):
    """`dialer worker`'s worker: each job in a forked work horse.

    Stop signals are held until its own handlers are in place: RQ registers the worker in Redis
    before it installs its SIGTERM handler, and a stop request arriving in between would kill it
    the hard way and leave it registered. `dialer worker` blocks the signals first, and they are
    delivered (to RQ's warm-shutdown handler) once it is ready."""

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        except StopRequested:
            # A stop held while blocked is delivered right here, outside RQ's loop, whose handler then
            # raises StopRequested (idle worker): that escaped work() and the process died with a
            # traceback, still registered. Record it instead; the loop checks it first and leaves cleanly.
            self._stop_requested = True


class InlineWorker(PromptStop, SimpleWorker):
    """Runs each job in the worker's own process (no work horse): for tests and embedded use."""
