"""A real OpenID provider for the single sign-on tests: panva's oidc-provider (tests/oidc/package.json pins it,
package-lock.json pins its dependencies), installed with `npm ci` into a cache directory and run with Node.js on
a free loopback port; plus a gateway configured to use it, and a client that signs in at the provider's
development form like a person would (GET the form, POST it, follow the redirects) for the API-level tests.

No node/npm, or the install fails: the tests FAIL with the reason (CI must run them; .ci/run installs Debian's
nodejs and npm). DIALER_SKIP_OIDC=1 skips them instead, with that reason.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest

HERE = Path(__file__).resolve().parent / "oidc"
CACHE = Path(os.environ.get("DIALER_OIDC_CACHE") or Path.home() / ".cache" / "dialer-oidc")
CLIENT_ID = "dialer-console"
CLIENT_SECRET = "a-client-secret-for-the-tests-0123456789"
SECRET_ENV = "DIALER_TEST_OIDC_SECRET"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def installed() -> Path:
    """The cache directory with oidc-provider installed at the pinned version (installed on first use)."""
    if os.environ.get("DIALER_SKIP_OIDC") == "1":
        pytest.skip("DIALER_SKIP_OIDC=1: the single sign-on tests against a real OpenID provider are skipped")
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("the single sign-on tests need Node.js and npm to run a real OpenID provider (oidc-provider); "
                    "install Debian's nodejs and npm (.ci/run does), or set DIALER_SKIP_OIDC=1 to skip them")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if not re.match(r"^v(2\d|[3-9]\d)\.", version):
        pytest.fail(f"the single sign-on tests need Node.js 20 or later to run oidc-provider; {node} is {version}")
    CACHE.mkdir(parents=True, exist_ok=True)
    lock = (HERE / "package-lock.json").read_bytes()
    with open(CACHE / ".install.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # several test sessions may install at once
        cached_lock = CACHE / "package-lock.json"
        ready = (CACHE / "node_modules" / "oidc-provider" / "package.json").exists()
        if not ready or not cached_lock.exists() or cached_lock.read_bytes() != lock:
            shutil.copy(HERE / "package.json", CACHE / "package.json")
            shutil.copy(HERE / "package-lock.json", cached_lock)
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CACHE,
                                  capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                cached_lock.unlink(missing_ok=True)
                pytest.fail(f"could not install oidc-provider with npm into {CACHE} (is the npm registry "
                            f"reachable?):\n{done.stderr[-2000:]}")
        shutil.copy(HERE / "provider.mjs", CACHE / "provider.mjs")
    return CACHE


@dataclass
class Provider:
    issuer: str
    process: subprocess.Popen


@contextmanager
def running_provider(redirect_uris: list[str]) -> Iterator[Provider]:
    cache = installed()
    port = free_port()
    env = {**os.environ, "OIDC_PORT": str(port), "OIDC_CLIENT_ID": CLIENT_ID, "OIDC_CLIENT_SECRET": CLIENT_SECRET,
           "OIDC_REDIRECT_URIS": ",".join(redirect_uris)}
    log = open(cache / f"provider-{port}.log", "w+")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen([shutil.which("node") or "node", str(cache / "provider.mjs")], cwd=cache, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"oidc-provider did not start:\n{log.read()[-2000:]}")
                time.sleep(0.1)
        yield Provider(issuer, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        (cache / f"provider-{port}.log").unlink(missing_ok=True)


def settings_file(path: Path, providers: list[dict[str, object]]) -> Path:
    """A settings file with [[oidc]] tables (values: strings, booleans or lists of strings)."""
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(f'"{x}"' for x in v) + "]"
        return f'"{v}"'

    lines = []
    for entry in providers:
        lines.append("[[oidc]]")
        lines += [f"{key} = {value(v)}" for key, v in entry.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


_FORM = re.compile(r'<form[^>]*action="([^"]+)"', re.I)


async def sign_in_at_provider(http: aiohttp.ClientSession, start_url: str, login: str) -> str:
    """Start at the gateway, sign in at the provider's form, return the callback address the provider sends the
    browser to (not followed, so a test can replay or alter it)."""
    url, gateway = start_url, start_url.split("/v1/", 1)[0]
    for _ in range(12):
        async with http.get(url, allow_redirects=False) as resp:
            if resp.status in (302, 303):
                url = urljoin(url, resp.headers["Location"])
                if url.startswith(gateway):
                    return url
                continue
            page = await resp.text()
            assert resp.status == 200, f"{url}: HTTP {resp.status}: {page[:500]}"
        action = _FORM.search(page)
        assert action and 'name="login"' in page, f"no sign-in form at {url}: {page[:500]}"
        async with http.post(urljoin(url, action.group(1)), data={"prompt": "login", "login": login,
                                                                   "password": "any password"},
                             allow_redirects=False) as resp:
            assert resp.status in (302, 303), f"sign-in form: HTTP {resp.status}: {(await resp.text())[:500]}"
            url = urljoin(url, resp.headers["Location"])
            if url.startswith(gateway):
                return url
    raise AssertionError("the provider never sent the browser back to the gateway")
