"""Start and stop a real PostgreSQL (Debian's package) in a temporary directory, on a free loopback port.

For the tests and the benchmarks only: `initdb` into a fresh directory, `postgres` listening on 127.0.0.1 and a
unix socket inside that directory; never the system cluster on 5432. PostgreSQL refuses to run as root, so when
started by root the server runs as the `postgres` system user (the Debian package creates it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from dialer.redisproc import free_port


def find_pg_bin() -> str | None:
    """The directory of initdb and postgres: $DIALER_PG_BIN, else the newest /usr/lib/postgresql/*/bin."""
    forced = os.environ.get("DIALER_PG_BIN")
    if forced:
        return forced
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return str(Path(found[-1]).parent) if found else None


class PostgresProcess:
    def __init__(self, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        self.bin = find_pg_bin()
        # the tests' small server by default; a benchmark may size it as a production server would be
        self.settings = {"fsync": "on", "max_connections": "100", "shared_buffers": "64MB", **(settings or {})}
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package `postgresql`)")
        self.port = port or free_port()
        self._tmp = tempfile.mkdtemp(prefix="dialer-pg-")
        self.data = os.path.join(self._tmp, "data")
        self.socket_dir = self._tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self._user = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
            os.chown(self._tmp, self._user.pw_uid, self._user.pw_gid)
        self.role = self._user.pw_name if self._user else pwd.getpwuid(os.geteuid()).pw_name

    def _demote(self) -> None:
        if self._user is not None:
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.role}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> PostgresProcess:
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            subprocess.run([f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", self.role, "-E", "UTF8",
                            "--no-sync", "--locale=C"], check=True, capture_output=True, preexec_fn=self._demote,
                           cwd=self._tmp)
        self.proc = subprocess.Popen(
            [f"{self.bin}/postgres", "-D", self.data, "-p", str(self.port), "-h", "127.0.0.1",
             "-k", self.socket_dir, *(arg for k, v in self.settings.items() for arg in ("-c", f"{k}={v}"))],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self._tmp, "postgres.log"), "ab"),  # noqa: SIM115
            preexec_fn=self._demote, cwd=self._tmp)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run([f"{self.bin}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                                   check=False)
            if ready.returncode == 0:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("postgres did not start in time")

    def log(self) -> str:
        try:
            return Path(self._tmp, "postgres.log").read_text(errors="replace")
        except OSError:
            return ""

    def create_database(self, name: str) -> str:
        subprocess.run([f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.role, name],
                       check=True, capture_output=True)
        return self.url(name)

    def stop(self, mode: str = "fast") -> None:
        """mode: fast (SIGINT: clean shutdown), immediate (SIGQUIT), or kill (SIGKILL: as a crash)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        sig = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "kill": signal.SIGKILL}[mode]
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if mode == "kill":  # the children (backends) of a SIGKILLed postmaster linger until they notice
            time.sleep(0.5)
            pid_file = Path(self.data, "postmaster.pid")
            pid_file.unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> PostgresProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
