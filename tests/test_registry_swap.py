"""Atomic swaps seen from another process, and imports killed midway (SIGKILL), on a real redis-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis

from dialer.registry.loader import load_registry
from dialer.registry.store import RegistryStore, key_current, key_lock
from tests.registry_files import e164_nanp, nanp_numbers, write_lines

ROOT = Path(__file__).resolve().parent.parent


def _env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ, DIALER_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    env.pop("DIALER_CONFIG", None)
    return env


def _snapshot(client: redis.Redis, name: str) -> dict[bytes, object]:
    out: dict[bytes, object] = {}
    for key in sorted(client.scan_iter(match=f"reg:{name}:*")):
        if key in (f"reg:{name}:seq".encode(), f"reg:{name}:lock".encode()):
            continue
        out[key] = client.hgetall(key) if client.type(key) == b"hash" else client.get(key)
    return out


def test_swaps_are_atomic_for_a_reader_in_another_process(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    pool = nanp_numbers(40_000, seed=11)
    set_a, set_b = pool[:30_000], pool[10_000:]  # overlapping, each with numbers the other lacks
    probes = pool[::97]
    expect_a = "".join("1" if n in set(set_a) else "0" for n in probes)
    expect_b = "".join("1" if n in set(set_b) else "0" for n in probes)
    assert expect_a != expect_b
    file_a = write_lines(tmp_path / "a.txt", set_a)
    file_b = write_lines(tmp_path / "b.txt", set_b)
    # A change file that turns version A into exactly version B.
    change = write_lines(tmp_path / "a_to_b.txt", [f"D,{n}" for n in pool[:10_000]] + [f"A,{n}" for n in pool[30_000:]])
    (tmp_path / "probes.txt").write_text("\n".join(e164_nanp(n) for n in probes))
    stop = tmp_path / "stop"

    # Small chunks: every version is many keys, so a reader often fetches while a swap deletes the old one.
    load_registry(client, "us_dnc", file_a, chunk_bytes=2048)
    reader = subprocess.Popen(
        [sys.executable, "-m", "tests.registry_reader_proc", redis_url, "us_dnc", str(tmp_path / "probes.txt"),
         expect_a, expect_b, str(stop)],
        cwd=ROOT, env=_env(redis_url), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
        for round_ in range(6):
            load_registry(client, "us_dnc", file_b if round_ % 2 == 0 else file_a, chunk_bytes=2048, force=True)
            time.sleep(0.05)
        load_registry(client, "us_dnc", change, delta=True, chunk_bytes=2048)  # A -> B by a change file
        time.sleep(0.1)
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["counts"]["MIXED"] == 0, result
    assert result["counts"]["not_loaded"] == 0, result
    assert result["counts"]["A"] > 0 and result["counts"]["B"] > 0
    assert len(result["sequence"]) >= 3, result  # the reader saw several swaps happen
    assert result["final"] == "B"  # a lookup after the last swap answers from the last version


def test_a_reader_sees_a_new_version_after_its_refresh_interval(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    load_registry(client, "bloctel", write_lines(tmp_path / "a.txt", ["0145678901"]))
    store = RegistryStore(client, refresh_interval=0.5)
    store.forget()
    assert store.contains("bloctel", "+33145678901")
    lazy = RegistryStore(client, refresh_interval=3600)  # shares the process cache, checks hourly
    load_registry(client, "bloctel", write_lines(tmp_path / "b.txt", ["0145678902"]), force=True)
    time.sleep(0.6)
    assert store.contains_many("bloctel", ["+33145678901", "+33145678902"]) == [False, True]
    # The cache is per process and per Redis: the store that just refreshed updated it for the other one.
    assert lazy.contains_many("bloctel", ["+33145678901", "+33145678902"]) == [False, True]
    load_registry(client, "bloctel", write_lines(tmp_path / "c.txt", ["0145678903"]), force=True)
    assert lazy.contains("bloctel", "+33145678902")  # still the version it checked: staleness is bounded
    lazy.forget("bloctel")  # by refresh_interval, or ended by forget()
    assert lazy.contains_many("bloctel", ["+33145678902", "+33145678903"]) == [False, True]


def test_import_killed_while_reading_leaves_previous_version_live(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    old = nanp_numbers(2000, seed=1)
    load_registry(client, "us_dnc", write_lines(tmp_path / "old.txt", old))
    before = _snapshot(client, "us_dnc")
    status_before = RegistryStore(client).status("us_dnc")
    big = write_lines(tmp_path / "big.txt", nanp_numbers(1_500_000, seed=2))

    proc = subprocess.Popen(
        [sys.executable, "-m", "dialer", "registry", "import", "--registry", "us_dnc", "--file", str(big),
         "--lock-ttl", "1", "--quiet"],
        cwd=ROOT, env=_env(redis_url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while client.get(key_lock("us_dnc")) is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)
    assert proc.poll() is None, "the import finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL

    assert _snapshot(client, "us_dnc") == before
    fresh = RegistryStore(client, refresh_interval=0.0)
    fresh.forget()
    assert fresh.status("us_dnc") == status_before
    assert all(fresh.contains_many("us_dnc", [e164_nanp(n) for n in old]))


KILL_AFTER_STAGING = textwrap.dedent("""
    import os, signal, sys
    import redis
    from dialer.registry.loader import load_registry

    def progress(stage, done, total):
        if stage == "commit":  # every chunk and the metadata are written; the pointer is not moved yet
            os.kill(os.getpid(), signal.SIGKILL)

    load_registry(redis.Redis.from_url(sys.argv[1]), "us_dnc", sys.argv[2], progress=progress, lock_ttl=4,
                  chunk_bytes=4096, force=True)
""")


def test_import_killed_after_staging_leaves_orphans_that_never_go_live(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    old = nanp_numbers(2000, seed=1)
    load_registry(client, "us_dnc", write_lines(tmp_path / "old.txt", old))
    before = _snapshot(client, "us_dnc")
    pointer = client.get(key_current("us_dnc"))
    new = write_lines(tmp_path / "new.txt", nanp_numbers(50_000, seed=3))

    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_STAGING, redis_url, str(new)], cwd=ROOT,
                          env=_env(redis_url), timeout=60)
    assert proc.returncode == -signal.SIGKILL

    staged = [k for k in client.scan_iter(match=b"reg:us_dnc:v2:*")]
    assert len(staged) > 2  # the killed import wrote its chunks and metadata...
    assert all(client.ttl(k) > 0 for k in staged)  # ...as staging keys that expire by themselves
    assert client.get(key_current("us_dnc")) == pointer  # ...and never went live
    assert {k: v for k, v in _snapshot(client, "us_dnc").items() if k not in staged} == before
    fresh = RegistryStore(client, refresh_interval=0.0)
    fresh.forget()
    assert all(fresh.contains_many("us_dnc", [e164_nanp(n) for n in old]))

    # Once the dead importer's lock expires (4 s: long enough that a loaded machine keeps it while alive), the
    # next load goes live and removes the orphans.
    deadline = time.monotonic() + 20
    while client.get(key_lock("us_dnc")) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    report = load_registry(client, "us_dnc", new, force=True)
    assert report.version is not None and report.version.version == 3 and report.version.rows == 50_000
    assert not [k for k in client.scan_iter(match=b"reg:us_dnc:v2:*")]
    assert not [k for k in client.scan_iter(match=b"reg:us_dnc:v1:*")]
