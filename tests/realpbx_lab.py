"""The real Asterisk 22 lab (../shared/asterisk-lab) for the `realpbx` test tier: find it, build it into a cache
directory (or reuse the build), start and stop instances, read the ground truth from their logs.

Where things are (environment, else defaults):
  DIALER_ASTERISK_LAB     the lab directory (build.sh, start.sh, stop.sh); default: the first `shared/asterisk-lab`
                          above the checkout (../shared/asterisk-lab from /work/main, ../../shared from a worktree)
  DIALER_ASTERISK_PREFIX  the install; default ${XDG_CACHE_HOME:-~/.cache}/asterisk-lab/22.10.1
  DIALER_REALPBX=1        build the lab when it is not built (CI), and fail instead of skipping when it cannot be
Ground truth is the instance's own full.log (every dialplan step, appended across restarts): a call reached Asterisk
when `[<number>@sim-callee:1]` was executed for it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = "22.10.1"


def lab_dir() -> Path | None:
    env = os.environ.get("DIALER_ASTERISK_LAB")
    if env:
        return Path(env)
    for parent in ROOT.parents:
        candidate = parent / "shared" / "asterisk-lab"
        if (candidate / "start.sh").exists():
            return candidate
    return None


def prefix() -> Path:
    env = os.environ.get("DIALER_ASTERISK_PREFIX")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "asterisk-lab" / VERSION


def built(where: Path) -> bool:
    return (where / "sbin" / "asterisk").exists() and (where / ".asterisk-lab-build").exists()


def build(lab: Path, where: Path) -> float:
    """build.sh (does nothing when already built); the seconds it took."""
    started = time.monotonic()
    done = subprocess.run([str(lab / "build.sh"), str(where)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"asterisk-lab build.sh failed ({done.returncode}):\n{done.stdout[-3000:]}"
                           f"\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CALLEE = re.compile(r"Executing \[(\+?\d+)@sim-callee:1\]")


@dataclass
class Instance:
    """One running lab Asterisk: its own CONFDIR (AstDB, logs) and AMI port."""

    lab: Path
    prefix: Path
    conf: Path
    port: int

    @classmethod
    def start(cls, lab: Path, where: Path, project: Path = ROOT) -> Instance:
        # CONFDIR must stay short (control socket path): a short temporary directory
        conf = Path(tempfile.mkdtemp(prefix="ast-", dir="/tmp"))
        for _ in range(3):
            port = free_port()
            done = subprocess.run([str(lab / "start.sh"), str(where), str(conf), str(project)],
                                  env={**os.environ, "AMI_PORT": str(port)}, capture_output=True, text=True,
                                  timeout=180)
            if done.returncode == 0:
                return cls(lab, where, conf, port)
            if "already in use" not in done.stderr:
                raise RuntimeError(f"asterisk-lab start.sh failed: {done.stderr.strip()[-2000:]}")
        raise RuntimeError("asterisk-lab start.sh: no free AMI port")

    def stop(self, keep: bool = False) -> None:
        """Stop it; its CONFDIR (logs, AstDB) is removed unless `keep` (DIALER_REALPBX_KEEP=1: to look into)."""
        subprocess.run([str(self.lab / "stop.sh"), str(self.prefix), str(self.conf)], capture_output=True,
                       timeout=60)
        if not keep:
            shutil.rmtree(self.conf, ignore_errors=True)

    def cli(self, command: str, timeout: float = 30.0) -> str:
        done = subprocess.run([str(self.prefix / "sbin" / "asterisk"), "-C", str(self.conf / "asterisk.conf"),
                               "-rx", command], capture_output=True, text=True, timeout=timeout)
        return done.stdout

    def wait_booted(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "fully booted" in self.cli("core waitfullybooted", timeout=10).lower() or self.up():
                return
            time.sleep(0.5)
        raise TimeoutError("lab Asterisk not booted again")

    def up(self) -> bool:
        return "System uptime" in self.cli("core show uptime", timeout=10)

    @property
    def full_log(self) -> Path:
        return self.conf / "var" / "log" / "full.log"

    def log_text(self) -> str:
        return self.full_log.read_text(errors="replace") if self.full_log.exists() else ""

    def calls_by_number(self) -> Counter[str]:
        """Calls that really reached Asterisk (each runs [sim-callee] once), by number."""
        return Counter(_CALLEE.findall(self.log_text()))

    def callee_times(self) -> list[float]:
        """Wall-clock instants (full.log's, to the second) of every call's first sim-callee step."""
        out = []
        for line in self.log_text().splitlines():
            if _CALLEE.search(line):
                stamp = re.match(r"\[(\w+\s+\d+ \d\d:\d\d:\d\d)", line)
                if stamp:
                    out.append(time.mktime(time.strptime(f"{time.localtime().tm_year} {stamp.group(1)}",
                                                         "%Y %b %d %H:%M:%S")))
        return out

    def astdb(self, family: str) -> dict[str, str]:
        out = {}
        for line in self.cli(f"database show {family}").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().startswith(f"/{family}/"):
                out[key.strip().rsplit("/", 1)[1]] = value.strip()
        return out

    def live_calls(self) -> int:
        """Calls up now: one `Local/<number>@sim-callee-...;1` channel each (`core show channels concise`)."""
        return sum(1 for line in self.cli("core show channels concise", timeout=10).splitlines()
                   if "@sim-callee-" in line and line.split("!", 1)[0].endswith(";1"))


class LiveCalls:
    """Calls up on an instance, counted from its own AMI events (a `monitor` session): a call is up from the
    Newchannel of its `Local/<number>@sim-callee-...;1` channel to that channel's Hangup.

    Why not `core show channels`: it lists Asterisk's cache of channel snapshots, which lets a channel go a moment
    after its Hangup event. A dialer frees the trunk slot on that event and may place the next call at once, so a
    sample on a loaded machine once showed 4 calls on a 3-channel trunk that never had 4. Events come in Asterisk's
    order on one connection: the next call's Newchannel always follows the Hangup that freed its slot."""

    def __init__(self, port: int) -> None:
        from dialer.ami.client import AMIClient

        self.client = AMIClient("127.0.0.1", port, "monitor", "monitor-secret", name="live-calls", events="call")
        self.up: set[str] = set()
        self.peak = 0

    def _seen(self, message) -> None:
        channel = message.get("Channel") or ""
        if "@sim-callee-" not in channel or not channel.endswith(";1"):
            return
        if message.name == "Newchannel":
            self.up.add(channel)
            self.peak = max(self.peak, len(self.up))
        else:
            self.up.discard(channel)

    async def __aenter__(self) -> LiveCalls:
        await self.client.connect()
        self.client.on_event(self._seen, names=["Newchannel", "Hangup"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
