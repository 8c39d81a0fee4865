"""Streamed list upload through the gateway: throughput and the gateway's memory.

Starts its own redis-server and a real `dialer serve` subprocess on loopback, generates a contact list of
--mb megabytes, uploads it with `POST /v1/imports` (multipart, sent in 1 MiB chunks without a Content-Length),
and reports the upload's wall time, MB/s, and the gateway process's peak RSS (VmHWM) before and after.
The import job itself is not run (no worker): this measures the HTTP path only (docs/contacts.md has the import).

    python bench/upload_bench.py --mb 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialer.redisproc import RedisProcess, free_port  # noqa: E402
from gateway.auth import AuthStore  # noqa: E402


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def seed(url: str) -> str:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = AuthStore(client)
    await store.create_tenant("bench")
    await store.create_user("bench", "up", "uploader")
    token, _ = await store.create_token("bench", "up")
    await client.aclose()
    return token


async def upload(base: str, token: str, path: Path) -> tuple[int, float]:
    boundary = "benchboundary"

    async def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"list\"\r\n\r\nbench\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
               "Content-Type: text/csv\r\n\r\n").encode()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    start = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{base}/v1/imports", data=body(), headers={
            "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
        await resp.read()
    return resp.status, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    with RedisProcess() as server, tempfile.TemporaryDirectory() as tmp:
        token = asyncio.run(seed(server.url))
        path = Path(tmp) / "big.csv"
        row = b"+33145678901;Jean;Dupont;jean.dupont@example.com;75011\n"
        with open(path, "wb") as fh:
            fh.write(b"phone;first_name;last_name;email;postal_code\n")
            fh.write(row * (args.mb * 1024 * 1024 // len(row)))
        size = path.stat().st_size
        port = free_port()
        env = {**os.environ, "DIALER_REDIS_URL": server.url, "DIALER_LOG_LEVEL": "WARNING",
               "DIALER_GATEWAY_UPLOAD_DIR": str(Path(tmp) / "uploads"), "DIALER_GATEWAY_MAX_UPLOAD_MB": "4096"}
        proc = subprocess.Popen([sys.executable, "-m", "dialer", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            before = vm_hwm_kb(proc.pid)
            status, seconds = asyncio.run(upload(f"http://127.0.0.1:{port}", token, path))
            after = vm_hwm_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
        print(f"upload of {size / 1e6:.0f} MB: HTTP {status} in {seconds:.2f} s = {size / 1e6 / seconds:.0f} MB/s; "
              f"gateway peak RSS {before / 1024:.0f} MB before, {after / 1024:.0f} MB after")


if __name__ == "__main__":
    main()
