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

QUEUES: tuple[str, ...] = ("imports", "registry", "exports", "retention")
IMPORTS, REGISTRY, EXPORTS, RETENTION = QUEUES


def get_queue(client: redis.Redis, name: str) -> Queue:
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r} (known: {', '.join(QUEUES)})")
    return Queue(name, connection=client)


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
