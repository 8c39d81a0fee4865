"""An RQ worker run in-process leaves its stop handlers behind; tests/conftest.py puts the session's back."""

from __future__ import annotations

import signal

import redis
from rq import Queue

from dialer.jobs import InlineWorker
from tests.conftest import STOP_SIGNALS, restored_signal_handlers


def test_an_inline_worker_run_leaves_the_session_signal_handlers(redis_client: redis.Redis) -> None:
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    queue = Queue("imports", connection=redis_client)
    job = queue.enqueue("math.sqrt", 4)
    with restored_signal_handlers():
        assert InlineWorker([queue], connection=redis_client).work(burst=True)
        # What the fixture is for: RQ's handlers are in place after its worker returned.
        inside = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        assert all(getattr(handler, "__name__", "") == "request_stop" for handler in inside.values()), inside
    assert job.return_value() == 2.0
    assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == before
