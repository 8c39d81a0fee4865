"""A real `dialer serve` subprocess on a free loopback port, for tests that need the real gateway (its real
Redis pool, access log, settings) rather than the in-process test server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialer.redisproc import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ServedGateway:
    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def serve(redis_url: str, log_path: Path, **env: Any) -> ServedGateway:
    port = free_port()
    full_env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": "test-secret-key-for-the-gateway",
                "PYTHONPATH": str(ROOT), **{k: str(v) for k, v in env.items()}}
    full_env.pop("DIALER_CONFIG", None)
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dialer", "serve", "--port", str(port)], cwd=ROOT,
                                env=full_env, stdout=out, stderr=subprocess.STDOUT)
    gateway = ServedGateway(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dialer serve exited: {gateway.log()}")
        try:
            with urllib.request.urlopen(gateway.base + "/v1/openapi.json", timeout=2):
                return gateway
        except urllib.error.HTTPError:
            return gateway
        except OSError:
            time.sleep(0.1)
    gateway.stop()
    raise RuntimeError("dialer serve did not start in 60 s")
