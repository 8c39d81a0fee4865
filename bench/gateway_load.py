"""The gateway under many concurrent clients, with a real HTTP load client (wrk), against a real `dialer serve`
and a real redis-server.

  python bench/gateway_load.py [--connections 200] [--seconds 60] [--threads 2] [--pool 0]

Starts its own redis-server and `dialer serve` on free loopback ports, creates a tenant, a user, a token and a
campaign, then runs `wrk` (Debian package `wrk`) with `--connections` open keep-alive connections for
`--seconds`, each request taking the next route of a mix: GET /v1/me (token lookup), GET
/v1/campaigns/{id}/stats (a pipeline of 27 reads) and GET /v1/campaigns (the campaign store, in a thread).
Prints wrk's latency distribution, requests/s, the count of non-2xx answers and socket errors, and the
status codes seen (wrk's Lua `response` hook). `--pool N` sets gateway.redis_max_connections (0: default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

from dialer.redisproc import RedisProcess, free_port  # noqa: E402
from gateway.auth import AuthStore  # noqa: E402

# wrk script: round-robin over the paths, count statuses per thread, print them at the end.
WRK_LUA = """
local paths = {%(paths)s}
local counter = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1], {["Authorization"] = "Bearer %(token)s"})
end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, n in pairs(s) do total[code] = (total[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(total) do table.insert(parts, '"' .. code .. '": ' .. n) end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\\n")
  io.write(string.format("P99_US %%d\\n", latency:percentile(99)))
  io.write(string.format("P999_US %%d\\n", latency:percentile(99.9)))
  io.write(string.format("MAX_US %%d\\n", latency.max))
end
"""


def wait_ready(url: str, token: str) -> None:
    for _ in range(200):
        try:
            req = urllib.request.Request(url + "/v1/me", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the gateway did not start")


async def prepare(url: str) -> tuple[str, str]:
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    store = AuthStore(redis)
    await store.create_tenant("bench")
    await store.create_user("bench", "boss", "admin")
    token, _ = await store.create_token("bench", "boss")
    await redis.aclose()
    return token, "bench"


def main(args: argparse.Namespace) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    with RedisProcess() as server:
        token, _ = asyncio.run(prepare(server.url))
        port = free_port()
        env = {**os.environ, "DIALER_REDIS_URL": server.url, "DIALER_LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT)}
        if args.pool:
            env["DIALER_GATEWAY_REDIS_MAX_CONNECTIONS"] = str(args.pool)
        log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "dialer", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, token)
            req = urllib.request.Request(base + "/v1/campaigns", data=json.dumps({"name": "bench"}).encode(),
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
            with urllib.request.urlopen(req) as resp:
                cid = json.loads(resp.read())["id"]
            paths = ["/v1/me", f"/v1/campaigns/{cid}/stats", "/v1/campaigns"]
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
                script.write(WRK_LUA % {"paths": ", ".join(f'"{p}"' for p in paths), "token": token})
            cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.seconds}s",
                   "--timeout", "30s", "--latency", "-s", script.name, base]
            began = datetime.now(UTC)
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        finally:
            proc.terminate()
            proc.wait(15)
    log.seek(0)
    tracebacks = log.read().count("Traceback")
    statuses = json.loads(re.search(r"STATUSES (\{.*\})", out).group(1))
    p99 = int(re.search(r"P99_US (\d+)", out).group(1)) / 1000
    p999 = int(re.search(r"P999_US (\d+)", out).group(1)) / 1000
    socket_errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
    total = re.search(r"(\d+) requests in", out).group(1)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpu (shared with other sessions: figures vary), "
          f"Python {platform.python_version()}, {began:%Y-%m-%d %H:%M} UTC")
    print(" ".join(cmd[:-3]), "... (mix:", ", ".join(paths), ")")
    print(out.split("STATUSES")[0].rstrip())
    print(f"statuses: {statuses}; requests: {total}; req/s: {rps}; non-2xx: {non2xx.group(1) if non2xx else 0}; "
          f"socket errors: {socket_errors.group(1) if socket_errors else 'none'}")
    print(f"p99 {p99:.1f} ms, p99.9 {p999:.1f} ms; tracebacks in the gateway log: {tracebacks}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pool", type=int, default=0)
    main(parser.parse_args())
