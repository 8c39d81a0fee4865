"""Shared fixtures. Redis is always a real redis-server, never a fake.

The session uses the server named by $DIALER_TEST_REDIS_URL (as .ci/run starts one) or
starts its own on a free loopback port. Under pytest-xdist (`-n N`) every worker starts its own
server whatever the environment says: pub/sub channels (stop requests, opt-outs, live figures)
are not per database, so two workers on one server would hear each other. Each test gets a
flushed database, so tests never see one another's keys. Tests that need persistence,
restarts or kills start their own server with `redis_factory`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import hypothesis
import pytest
import redis

from dialer.redisproc import RedisProcess


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A real PostgreSQL (Debian's package) for this test session: initdb into a temp dir, postgres on a free
    loopback port with its unix socket in that dir. Never the system cluster."""
    from dialer.record.pgproc import PostgresProcess, find_pg_bin

    if find_pg_bin() is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    # No fsync: the tests stop PostgreSQL as a crash at most (a process, never the machine), which the page cache
    # survives; with fsync each commit and the shutdown checkpoint waited on a shared disk (a worker's last
    # teardown took up to a minute).
    server = PostgresProcess(settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}).start()
    yield server
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: object) -> str:
    """URL of a fresh, empty database on the session's PostgreSQL."""
    import uuid

    return postgres_server.create_database("t_" + uuid.uuid4().hex[:12])  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def record(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[object]:
    """The record (dialer/record), migrated: the embedded SQLite file and a fresh database on the session's
    PostgreSQL, one test each."""
    from dialer.record.store import Record
    from dialer.record.url import parse_record_url

    if request.param == "sqlite":
        url = parse_record_url(f"sqlite:///{tmp_path}/record.db")
    else:
        url = parse_record_url(request.getfixturevalue("postgres_url"))
    store = Record(url, pool_size=2)
    store.migrate()
    from dialer.record import current

    current.use(store)  # imports in the test write their contacts here (docs/record.md), and in its processes:
    request.getfixturevalue("monkeypatch").setenv(
        "DIALER_RECORD_URL", url.url if url.dialect == "postgresql" else f"sqlite:///{url.path}")
    yield store
    current.use(None)
    store.close()


@pytest.fixture(autouse=True)
def contact_record(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test's own data directory, so its own default record (the embedded SQLite file, made only if the test
    uses it) for the contacts its imports write: in this process (dialer.record.current), in the processes it
    starts and in every config without a `record.url` (they find the same file). A test that asks for `record`
    (SQLite and PostgreSQL) puts its own in place."""
    from dialer.private_files import default_data_dir
    from dialer.record import current
    from dialer.record.store import Record
    from dialer.record.url import parse_record_url

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data")))
    monkeypatch.delenv("DIALER_RECORD_URL", raising=False)
    current.use_lazy(lambda: Record(parse_record_url("", data_dir=str(default_data_dir()))))
    yield
    current.use(None)


# Property tests and the schemathesis fuzz draw the same examples on every run, so CI passes or fails on the code,
# never on the draw (a random draw found a real bug on 2026-12-06, and failed that run by chance). To explore new
# examples, run with DIALER_FUZZ_RANDOM=1 and turn what it finds into a fixed test.
hypothesis.settings.register_profile("fixed", derandomize=True)
if os.environ.get("DIALER_FUZZ_RANDOM") != "1":
    hypothesis.settings.load_profile("fixed")


@pytest.fixture(autouse=True)
def fresh_process_settings() -> Iterator[None]:
    """Each test starts with none of the per-process settings an earlier test in the same worker may have left:
    - the secret key (dialer.suppression.configure, which `dialer.cli.main` calls): a key left behind once made the
      retention job sign its audit anchor with another key, and the chain's verification failed in that order only;
    - the usage plan cache (dialer.usage.plan keeps a tenant's plan 5 s, whatever Redis it came from): a usage
      test's 10-attempt hard stop held the next test's campaign of the same tenant, which never completed;
    - the RQ queues' Redis (dialer.jobs.configure, which `dialer.cli.main` and the gateway call): a Redis Cluster
      test left the stopped cluster's URLs, and the next test's jobs failed to connect;
    - the root logger's handlers (dialer.logs.setup_logging, which `dialer.cli.main` calls, writes to the test's
      captured stderr, closed after it: a later test's background thread then printed "--- Logging error ---")."""
    import logging

    from dialer import jobs, suppression
    from dialer.usage import plan

    def forget() -> None:
        suppression._process_key = None
        plan._cache.clear()
        jobs._urls.clear()
        jobs._clients.clear()

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    forget()
    yield
    forget()
    root.handlers[:] = handlers
    root.setLevel(level)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def restored_signal_handlers() -> Iterator[None]:
    """The SIGTERM and SIGINT handlers as they were, whatever ran inside: an RQ worker run in-process
    (jobs.InlineWorker, DialerWorker ... .work()) installs its own (rq.worker.base.request_stop) and never puts
    the old ones back. Left in a pytest-xdist worker, a signal at session end ran RQ's handler, which raised
    StopRequested inside a gc callback ("--- Logging error ---", PytestUnraisableExceptionWarning)."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)


@pytest.fixture(autouse=True)
def no_leftover_signal_handlers() -> Iterator[None]:
    """Each test starts and ends with the session's SIGTERM/SIGINT handlers (tests/test_conftest_signals.py)."""
    with restored_signal_handlers():
        yield


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    url = os.environ.get("DIALER_TEST_REDIS_URL")
    if url and not os.environ.get("PYTEST_XDIST_WORKER"):
        yield url
        return
    with RedisProcess() as server:
        yield server.url


@pytest.fixture(scope="session", autouse=True)
def slot_audit(request: pytest.FixtureRequest) -> Iterator[None]:
    """DIALER_SLOT_AUDIT=1: every Lua script the tests run on the session's redis-server is checked for keys in
    more than one hash slot (tests/slot_audit.py); the findings are printed and written to
    $DIALER_SLOT_AUDIT_REPORT (default slot-audit.txt)."""
    if os.environ.get("DIALER_SLOT_AUDIT") != "1":
        yield
        return
    from urllib.parse import urlsplit

    from tests.slot_audit import SlotAudit, known_scripts

    url = urlsplit(request.getfixturevalue("redis_server_url"))
    with SlotAudit(url.hostname or "127.0.0.1", url.port or 6379) as audit:
        yield
    found = audit.problems(known_scripts())
    report = os.environ.get("DIALER_SLOT_AUDIT_REPORT", "slot-audit.txt")
    with open(report, "w") as out:
        out.write(f"{len(audit.runs)} script runs, {len(audit.scripts_run())} scripts\n" + "\n".join(found) + "\n")
    print(f"\nslot audit: {len(audit.runs)} script runs, {len(found)} problems (see {report})")


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """URL of a flushed database on the session's real redis-server."""
    # ASYNC: the server frees the keys in a background thread. A blocking FLUSHDB of a big import took longer
    # than redis-py's 5 s socket timeout on a loaded machine and kept the server busy for the next test.
    client = redis.Redis.from_url(redis_server_url, socket_timeout=60)
    client.flushdb(asynchronous=True)
    yield redis_server_url
    client.flushdb(asynchronous=True)
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_factory() -> Iterator[type]:
    """Start extra redis-servers (persistent ones, ones to kill); all are stopped after the test."""
    started: list[RedisProcess] = []

    class Factory:
        @staticmethod
        def start(persistent: bool = False, directory: str | None = None, port: int | None = None) -> RedisProcess:
            server = RedisProcess(port=port, persistent=persistent, directory=directory).start()
            started.append(server)
            return server

    yield Factory
    for server in started:
        server.cleanup()


@pytest.fixture(scope="session")
def chromium_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One headless Chromium per test process, for the browser tests to connect to over CDP (tests/
    test_dashboard_browser.py, `browser`): each test still gets a fresh browser context (its own cookies,
    storage and cache, closed after it), but launching Chromium for each test cost about 1 CPU-second more."""
    import subprocess
    import time

    from tests.test_dashboard_browser import ARGS, CHROMIUM

    profile = tmp_path_factory.mktemp("chromium")
    proc = subprocess.Popen([CHROMIUM, *ARGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
                             "--no-first-run", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"  # Chromium writes its port, then the browser's path, once it listens
    deadline = time.monotonic() + 60
    while len(lines := (port_file.read_text().split() if port_file.exists() else [])) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Chromium ({CHROMIUM}) did not start: exit status {proc.poll()}")
        time.sleep(0.05)
    yield f"ws://127.0.0.1:{lines[0]}{lines[1]}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# Argon2id as the product runs it (RFC 9106 low-memory profile: 64 MiB, 3 passes, 4 lanes) costs about 0.2
# CPU-seconds a hash or a check; the tests that sign in, or fail to, 30 times in a row (rate limits) spent most of
# their CPU there. In this test process passwords are hashed with the same algorithm at the lowest cost (a check
# reads the cost from the hash it checks, so a hash made elsewhere costs what it says). Every `dialer` process a
# test starts (`dialer user create`, `dialer serve`) hashes as the product does, and tests/test_console_auth.py
# checks what such a process stored and that the product's profile is RFC 9106's.


def cheap_password_hashing() -> None:
    from argon2 import PasswordHasher

    from gateway import credentials

    credentials._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    credentials._dummy_hash.cache_clear()


def pytest_configure(config: pytest.Config) -> None:
    cheap_password_hashing()
    # The dialer's default data directory (record.db, staged uploads) is the user's: the tests, and the processes
    # they start, get one of their own. (A record migrated by another checkout's newer code once broke them.)
    data_home = tempfile.mkdtemp(prefix="dialer-test-data-")
    os.environ["XDG_DATA_HOME"] = data_home
    atexit.register(shutil.rmtree, data_home, True)
    # Under xdist, hand tests to workers one at a time as they finish (each keeps 2 queued), rather than in
    # chunks of a quarter of the suite: with the long tests first (below), no worker ends the run alone on a
    # long test it was given at the start.
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "maxschedchunk", 0) is None:
        config.option.maxschedchunk = 1


def slow_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The tests listed in tests/slow_tests.txt (measured, slowest first) in that order, then all the others in
    their usual order: the longest tests start at once instead of last."""
    listed: dict[str, int] = {}
    with open(os.path.join(os.path.dirname(__file__), "slow_tests.txt")) as table:
        for line in table:
            if line.strip() and not line.startswith("#"):
                listed.setdefault(line.split(maxsplit=1)[1].strip(), len(listed))
    first = sorted((item for item in items if item.nodeid in listed), key=lambda item: listed[item.nodeid])
    return first + [item for item in items if item.nodeid not in listed]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items[:] = slow_first(items)
    # The tiers that the default suite skips (README, "Tests"): `deep` (the full fuzz variants; .ci/run runs
    # it after the default suite, whose cheaper variants prove the same properties) and `slow` (by hand).
    tiers = (("deep", "DIALER_DEEP_TESTS", "deep tier"), ("slow", "DIALER_SLOW_TESTS", "slow test"))
    for marker, variable, what in tiers:
        if os.environ.get(variable) == "1":
            continue
        skip = pytest.mark.skip(reason=f"{what}: set {variable}=1 to run it")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


# DIALER_TEST_CPU=FILE: each test's CPU-seconds (the worker's own and those of the processes it started and reaped)
# are appended to FILE, to find what makes the suite slow on a small machine (wall time hides it under load).
_CPU_REPORT = os.environ.get("DIALER_TEST_CPU")


def _cpu_now() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if not _CPU_REPORT:
        yield
        return
    started = _cpu_now()
    yield
    with open(_CPU_REPORT, "a") as report:
        report.write(f"{_cpu_now() - started:.2f} {item.nodeid}\n")
