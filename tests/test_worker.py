"""`dialer worker` stops when asked: at once after a job, and at once when asked twice during one.

Real `dialer worker` processes on a real redis-server. The deadlines are generous (a loaded CI
machine), but far below the 60 s that RQ's command-channel thread used to hold a stopping worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus

ROOT = Path(__file__).resolve().parents[1]
STOP_DEADLINE = 15.0  # seconds; a worker that stops at all stops in well under 1 s


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def start_worker(redis_url: str, *args: str) -> subprocess.Popen[bytes]:
    # Its own session: a signal sent to its process group reaches the worker and its children, as a
    # terminal's Ctrl+C does, and nothing else.
    return subprocess.Popen([sys.executable, "-m", "dialer", "worker", "--queues", "imports", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "DIALER_REDIS_URL": redis_url,
                                 "DIALER_CONFIG": ""},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"worker exited while waiting for {what}: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stop_time(proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    try:
        proc.wait(STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"worker still up {STOP_DEADLINE} s after the stop request")
    return time.monotonic() - started


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_worker_that_ran_a_job_stops_at_once_on_sigterm(redis_url: str, client: redis.Redis,
                                                          processes: str) -> None:
    queue = Queue("imports", connection=client)
    job = queue.enqueue("time.sleep", 0.05)
    proc = start_worker(redis_url, "--processes", processes)
    try:
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, proc, "the job")
        time.sleep(0.3)  # the worker is back in its idle wait, where it used to sit for 60 s
        proc.send_signal(signal.SIGTERM)
        stop_time(proc)
        assert proc.returncode == 0
        assert client.smembers("rq:workers") == set()  # left cleanly, deregistered
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_second_ctrl_c_stops_a_running_job_at_once(redis_url: str, client: redis.Redis, processes: str) -> None:
    queue = Queue("imports", connection=client)
    job = queue.enqueue("time.sleep", 120, job_timeout=300)
    proc = start_worker(redis_url, "--processes", processes)
    try:
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, proc, "the job to start")
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)  # a person pressing Ctrl+C twice: RQ ignored a second one within 1 s
        os.killpg(proc.pid, signal.SIGINT)
        stop_time(proc)
        assert Job.fetch(job.id, connection=client).get_status(refresh=True) != JobStatus.FINISHED
    finally:
        if proc.poll() is None:
            proc.kill()


def test_one_stop_request_lets_the_running_job_finish(redis_url: str, client: redis.Redis) -> None:
    queue = Queue("imports", connection=client)
    job = queue.enqueue("time.sleep", 1.5)
    proc = start_worker(redis_url)
    try:
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, proc, "the job to start")
        proc.send_signal(signal.SIGTERM)
        stop_time(proc)
        assert proc.returncode == 0
        assert job.get_status(refresh=True) == JobStatus.FINISHED  # warm shutdown: the job was not cut short
    finally:
        if proc.poll() is None:
            proc.kill()
