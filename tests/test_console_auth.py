"""Console sign-in and sessions against the real gateway on a real redis-server: password + TOTP, lockout,
expiry and revocation, CSRF, security headers, tenant isolation, admin resets and `dialer user create`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pyotp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dialer.config import load_config
from gateway.accounts import AccountStore
from gateway.app import make_app
from gateway.auth import AuthStore
from gateway.sessions import COOKIE, SessionPolicy, SessionStore, sessions_key
from tests.gateway_support import SECRET_KEY, audit_events, start_gateway, stop_gateway

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


async def person(gw, email: str, role: str, tenant: str = "acme") -> str:
    await AuthStore(gw.redis).create_user(tenant, email, role)
    await AccountStore(gw.redis).set_password(tenant, email, PASSWORD)
    return email


class Browser:
    """One browser's cookie jar against the test server, sending the CSRF header as the page does."""

    def __init__(self, gw) -> None:
        self.gw = gw
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    def url(self, path: str) -> str:
        return str(self.gw.client.make_url(path))

    async def sign_in(self, email: str, password: str = PASSWORD, code: str | None = None):
        body = {"email": email, "password": password, **({"code": code} if code else {})}
        resp = await self.http.post(self.url("/v1/session"), json=body)
        data = await resp.json()
        if resp.status == 200:
            self.csrf = data["csrf_token"]
        return resp, data

    async def call(self, method: str, path: str, csrf: bool = True, **kwargs):
        headers = kwargs.pop("headers", {})
        if csrf and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        return await self.http.request(method, self.url(path), headers=headers, **kwargs)

    def cookie(self) -> str:
        return next(c.value for c in self.http.cookie_jar if c.key == COOKIE)

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def browsers(gw):
    made: list[Browser] = []

    def make() -> Browser:
        made.append(Browser(gw))
        return made[-1]

    yield make
    for b in made:
        await b.close()


async def enrol(browser: Browser) -> tuple[str, list[str]]:
    setup = await (await browser.call("POST", "/v1/session/mfa/setup")).json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/") and setup["qr"].startswith("data:image/svg+xml;base64,")
    resp = await browser.call("POST", "/v1/session/mfa/confirm", json={"code": pyotp.TOTP(setup["secret"]).now()})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    browser.csrf = body["csrf_token"]
    return setup["secret"], body["recovery_codes"]


async def test_admin_enrols_then_signs_in_with_password_and_totp(gw, browsers):
    email = await person(gw, "ada@acme.example", "admin")
    first = browsers()
    resp, body = await first.sign_in(email)
    assert resp.status == 200 and body["stage"] == "enrol"  # admins must have a second factor
    refused = await first.call("GET", "/v1/campaigns")
    assert refused.status == 401 and (await refused.json())["error"]["code"] == "mfa_enrolment_required"
    enrol_cookie = first.cookie()
    wrong = await first.call("POST", "/v1/session/mfa/confirm", json={"code": "000000"})
    assert wrong.status == 422
    secret, recovery = await enrol(first)
    assert len(recovery) == 10 and len(set(recovery)) == 10
    assert first.cookie() != enrol_cookie  # a new session id once the factor is proven
    assert (await first.call("GET", "/v1/campaigns")).status == 200
    me = await (await first.call("GET", "/v1/session")).json()
    assert me["mfa"] is True and me["stage"] == "full" and me["recovery_codes_left"] == 10

    second = browsers()
    resp, body = await second.sign_in(email)
    assert resp.status == 401 and body["error"]["code"] == "mfa_required"
    resp, body = await second.sign_in(email, code="123456" if pyotp.TOTP(secret).now() != "123456" else "654321")
    assert resp.status == 401 and body["error"]["code"] == "bad_code"
    resp, body = await second.sign_in(email, password="wrong password!!", code=pyotp.TOTP(secret).now())
    assert resp.status == 401 and body["error"]["code"] == "bad_credentials"
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the enrolment used this step's code: the next one
    resp, body = await second.sign_in(email, code=code)
    assert resp.status == 200 and body["stage"] == "full", body
    assert (await second.call("GET", "/v1/me")).status == 200
    replay = browsers()
    resp, body = await replay.sign_in(email, code=code)
    assert resp.status == 401 and body["error"]["code"] == "bad_code"  # one code, one sign-in
    resp, _ = await replay.sign_in(email, code=recovery[0].upper())
    assert resp.status == 200
    resp, body = await browsers().sign_in(email, code=recovery[0])
    assert resp.status == 401 and body["error"]["code"] == "bad_code"  # a recovery code is used up

    actions = [(e["action"], e.get("method"), e.get("reason")) for e in await audit_events(gw, "acme")
               if e["action"].startswith(("login.", "mfa."))]
    assert ("mfa.enrol", None, None) in actions
    assert ("login.success", "password+totp", None) in actions
    assert ("login.success", "password+recovery", None) in actions
    assert actions.count(("login.failure", None, "code")) == 3
    assert ("login.failure", None, "password") in actions
    events = await audit_events(gw, "acme")
    assert all(PASSWORD not in str(e) and secret not in str(e) for e in events)


async def test_lockout_after_failures_is_429_and_audited_then_reset_by_admin(gw, browsers):
    email = await person(gw, "sam@acme.example", "supervisor")
    b = browsers()
    statuses = [(await b.sign_in(email, password=f"wrong password {i}"))[0].status for i in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    [lock] = [k async for k in gw.redis.scan_iter(match="login:lock:*")]
    await gw.redis.expire(lock, 900)  # exactly the 15 minutes (gateway.login_lockout_minutes): said as 15, not 16
    resp, body = await b.sign_in(email)  # even the right password while locked
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 800 and "locked" in body["error"]["message"]
    assert "locked for 15 min" in body["error"]["message"]
    unknown = [(await b.sign_in("nobody@acme.example", password="x"))[0].status for _ in range(5)]
    assert unknown == [401, 401, 401, 401, 429]  # the same answers for an email that has no account
    events = [e for e in await audit_events(gw, "acme") if e["action"].startswith("login.")]
    assert [e["action"] for e in events] == ["login.failure"] * 5 + ["login.lockout", "login.refused"]
    assert events[0]["actor"] == email and events[0]["kind"] == "token_use" and events[0]["address"]

    reset = await gw.client.put(f"/v1/users/{email}/password", json={"password": "a brand new passphrase"},
                                headers=gw.auth("acme", "admin"))
    assert reset.status == 200
    resp, _ = await b.sign_in(email, password="a brand new passphrase")
    assert resp.status == 200
    assert "password.reset" in [e["action"] for e in await audit_events(gw, "acme")]


async def test_too_many_attempts_from_one_address(redis_url):
    gw = await start_gateway(redis_url)
    try:
        http = aiohttp.ClientSession()
        statuses = []
        for i in range(32):
            resp = await http.post(str(gw.client.make_url("/v1/session")),
                                   json={"email": f"x{i}@example.com", "password": "wrong"})
            statuses.append(resp.status)
        await http.close()
        assert statuses[:30] == [401] * 30 and statuses[30:] == [429, 429]
    finally:
        await stop_gateway(gw)


async def test_session_expiry_and_revocation(gw, browsers):
    email = await person(gw, "sue@acme.example", "supervisor")
    b = browsers()
    assert (await b.sign_in(email))[0].status == 200
    key = next(k for k in await gw.redis.keys("session:*"))
    await gw.redis.hset(key, "last_seen", f"{time.time() - 31 * 60:.3f}")  # idle past 30 min
    resp = await b.call("GET", "/v1/me")
    assert resp.status == 401 and not await gw.redis.exists(key)

    assert (await b.sign_in(email))[0].status == 200
    key = next(k for k in await gw.redis.keys("session:*"))
    await gw.redis.hset(key, "expires_at", f"{time.time() - 1:.3f}")  # past its absolute lifetime
    assert (await b.call("GET", "/v1/me")).status == 401

    assert (await b.sign_in(email))[0].status == 200
    other = browsers()
    assert (await other.sign_in(email))[0].status == 200
    listed = await (await gw.client.get(f"/v1/users/{email}/sessions", headers=gw.auth("acme", "admin"))).json()
    assert len(listed["items"]) == 2
    revoke = await gw.client.delete(f"/v1/users/{email}/sessions", headers=gw.auth("acme", "admin"))
    assert (await revoke.json())["revoked_sessions"] == 2
    assert (await b.call("GET", "/v1/me")).status == 401 and (await other.call("GET", "/v1/me")).status == 401

    assert (await b.sign_in(email))[0].status == 200
    stolen = b.cookie()
    out = await b.call("DELETE", "/v1/session")
    assert out.status == 200 and COOKIE in out.cookies and out.cookies[COOKIE].value == ""
    replayed = await b.http.get(b.url("/v1/me"), headers={"Cookie": f"{COOKIE}={stolen}"})
    assert replayed.status == 401  # signed out server-side, not only in the browser

    assert (await b.sign_in(email))[0].status == 200
    promoted = await gw.client.patch(f"/v1/users/{email}", json={"role": "admin"}, headers=gw.auth("acme", "admin"))
    assert promoted.status == 200 and (await b.call("GET", "/v1/me")).status == 401  # admins need MFA: sign in again
    resp, body = await b.sign_in(email)
    assert body["stage"] == "enrol"
    await gw.client.patch(f"/v1/users/{email}", json={"disabled": True}, headers=gw.auth("acme", "admin"))
    assert (await b.call("GET", "/v1/me")).status == 401
    actions = [e["action"] for e in await audit_events(gw, "acme")]
    assert "session.revoke" in actions and "session.end" in actions


async def test_session_store_expiry_with_an_injected_clock(gw):
    store = SessionStore(gw.redis, SessionPolicy(idle_seconds=60, max_seconds=300))
    cookie, _ = await store.create("acme", "someone@acme.example", "full", now=1000.0)
    assert await store.get(cookie, now=1059.0) is not None  # used: idle clock restarts
    assert await store.get(cookie, now=1118.0) is not None
    assert await store.get(cookie, now=1178.5) is None  # 60 s idle
    cookie, _ = await store.create("acme", "someone@acme.example", "full", now=2000.0)
    for t in range(2050, 2300, 50):
        assert await store.get(cookie, now=float(t)) is not None
    assert await store.get(cookie, now=2300.0) is None  # 5 min after sign-in, however active
    assert await gw.redis.hlen(sessions_key("acme", "someone@acme.example")) == 0
    assert await store.get(cookie + "x", now=2000.0) is None and await store.get("garbage", now=0) is None


async def test_a_person_changes_their_own_password(gw, browsers):
    email = await person(gw, "pat@acme.example", "auditor")
    here, elsewhere = browsers(), browsers()
    assert (await here.sign_in(email))[0].status == 200 and (await elsewhere.sign_in(email))[0].status == 200
    wrong = await here.call("PUT", "/v1/session/password",
                            json={"current_password": "not it", "new_password": "another fine passphrase"})
    assert wrong.status == 422 and (await wrong.json())["error"]["field"] == "current_password"
    weak = await here.call("PUT", "/v1/session/password", json={"current_password": PASSWORD, "new_password": "short"})
    assert weak.status == 422
    changed = await here.call("PUT", "/v1/session/password",
                              json={"current_password": PASSWORD, "new_password": "another fine passphrase"})
    assert changed.status == 200 and (await changed.json())["revoked_sessions"] == 1
    assert (await here.call("GET", "/v1/me")).status == 200  # this session goes on
    assert (await elsewhere.call("GET", "/v1/me")).status == 401  # the others end
    assert (await browsers().sign_in(email))[0].status == 401
    assert (await browsers().sign_in(email, password="another fine passphrase"))[0].status == 200
    token = await gw.client.put("/v1/session/password", headers=gw.auth("acme", "auditor"),
                                json={"current_password": "x", "new_password": "another fine passphrase"})
    assert token.status == 400  # an API token has no password to change
    actions = [e["action"] for e in await audit_events(gw, "acme")]
    assert "password.change" in actions and "password.change_refused" in actions


async def test_csrf_refused_for_sessions_not_for_tokens(gw, browsers):
    email = await person(gw, "sid@acme.example", "supervisor")
    b = browsers()
    assert (await b.sign_in(email))[0].status == 200
    campaign = {"name": "Autumn"}
    missing = await b.call("POST", "/v1/campaigns", csrf=False, json=campaign)
    assert missing.status == 403 and (await missing.json())["error"]["code"] == "csrf"
    wrong = await b.call("POST", "/v1/campaigns", csrf=False, json=campaign, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status == 403
    assert (await b.call("DELETE", "/v1/session", csrf=False)).status == 403
    assert len(await gw.redis.keys("t:{acme}:campaign:*")) == 0  # nothing written by the refused requests
    made = await b.call("POST", "/v1/campaigns", json=campaign)
    assert made.status == 201
    assert (await b.call("GET", "/v1/campaigns", csrf=False)).status == 200  # reads need no token
    # Machines with a bearer token are unchanged (and a stray cookie does not matter to them).
    tok = await gw.client.post("/v1/campaigns", json=campaign, headers=gw.auth("acme", "supervisor"))
    assert tok.status == 201
    # A sign-in posted from another site's page.
    evil = await b.http.post(b.url("/v1/session"), json={"email": email, "password": PASSWORD},
                             headers={"Origin": "https://evil.example"})
    assert evil.status == 403


async def test_security_headers_and_cookie_attributes(gw, browsers, redis_url):
    page = await gw.client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    email = await person(gw, "hal@acme.example", "auditor")
    resp, _ = await browsers().sign_in(email)
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    for name in ("Content-Security-Policy", "Referrer-Policy"):
        assert name in resp.headers

    config = load_config(env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY,
                              "DIALER_GATEWAY_PUBLIC_ORIGIN": "https://dialer.example.com"})
    behind_tls = TestClient(TestServer(make_app(config, gw.redis)))
    await behind_tls.start_server()
    try:
        resp = await behind_tls.post("/v1/session", json={"email": email, "password": PASSWORD})
        assert resp.status == 200 and "Secure" in resp.headers["Set-Cookie"]
        assert "Strict-Transport-Security" in resp.headers
    finally:
        await behind_tls.close()


async def test_tenant_isolation_of_sessions(gw, browsers):
    ann = await person(gw, "ann@acme.example", "supervisor")
    gus = await person(gw, "gus@globex.example", "supervisor", tenant="globex")
    theirs = (await gw.ready_campaign("globex"))["id"]
    mine = (await gw.ready_campaign("acme"))["id"]
    a = browsers()
    assert (await a.sign_in(ann))[0].status == 200
    assert (await a.call("GET", f"/v1/campaigns/{theirs}")).status == 404
    assert (await a.call("POST", f"/v1/campaigns/{theirs}/start")).status == 404
    assert (await a.call("GET", f"/v1/campaigns/{mine}")).status == 200
    listed = await (await a.call("GET", "/v1/campaigns")).json()
    assert [c["id"] for c in listed["items"]] == [mine]
    g = browsers()
    assert (await g.sign_in(gus))[0].status == 200
    # globex's admin can neither see nor end acme's sessions, nor reset acme's users.
    admin = gw.auth("globex", "admin")
    assert (await gw.client.get(f"/v1/users/{ann}/sessions", headers=admin)).status == 404
    assert (await gw.client.delete(f"/v1/users/{ann}/sessions", headers=admin)).status == 404
    assert (await gw.client.delete(f"/v1/users/{ann}/mfa", headers=admin)).status == 404
    assert (await gw.client.put(f"/v1/users/{ann}/password", json={"password": "x" * 20},
                                headers=admin)).status == 404
    assert (await a.call("GET", "/v1/me")).status == 200
    # One email signs in to one tenant: globex cannot give acme's user a password of its own.
    await AuthStore(gw.redis).create_user("globex", ann, "admin")
    taken = await gw.client.put(f"/v1/users/{ann}/password", json={"password": "y" * 20}, headers=admin)
    assert taken.status == 409
    me = await (await a.call("GET", "/v1/session")).json()
    assert me["tenant"] == "acme"


async def test_tenant_policy_requires_mfa_for_everyone_and_admin_reset(gw, browsers):
    email = await person(gw, "una@acme.example", "uploader")
    assert (await browsers().sign_in(email))[1]["stage"] == "full"
    admin = gw.auth("acme", "admin")
    assert (await gw.client.put("/v1/auth/policy", json={"mfa_required": True}, headers=admin)).status == 200
    b = browsers()
    resp, body = await b.sign_in(email)
    assert body["stage"] == "enrol"
    await enrol(b)
    resp, body = await browsers().sign_in(email)
    assert body["error"]["code"] == "mfa_required"
    assert (await gw.client.delete(f"/v1/users/{email}/mfa", headers=admin)).status == 200
    assert (await b.call("GET", "/v1/me")).status == 401  # the reset ended the session
    resp, body = await browsers().sign_in(email)
    assert resp.status == 200 and body["stage"] == "enrol"  # enrols afresh
    assert "mfa.reset" in [e["action"] for e in await audit_events(gw, "acme")]


def test_cli_creates_the_first_admin_who_can_sign_in(redis_url):
    import asyncio

    import redis.asyncio as aioredis

    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": "k", "PYTHONPATH": str(ROOT)}

    def dialer(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dialer", *args], input=stdin, env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    assert dialer("tenant", "create", "initech").returncode == 0
    short = dialer("user", "create", "--tenant", "initech", "--email", "boss@initech.example", "--role", "admin",
                   "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 12" in short.stderr and "Traceback" not in short.stderr
    made = dialer("user", "create", "--tenant", "initech", "--email", "boss@initech.example", "--role", "admin",
                  "--password-stdin", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    again = dialer("user", "create", "--tenant", "initech", "--email", "BOSS@initech.example", "--role", "admin",
                   "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "already has an account" in again.stderr

    async def check() -> None:
        gw = await start_gateway(redis_url)
        try:
            http = aiohttp.ClientSession()
            resp = await http.post(str(gw.client.make_url("/v1/session")),
                                   json={"email": "Boss@Initech.example", "password": PASSWORD})
            assert resp.status == 200 and (await resp.json())["stage"] == "enrol"
            await http.close()
            client = aioredis.Redis.from_url(redis_url, decode_responses=True)
            stored = await client.hget("t:{initech}:user:boss@initech.example", "password")
            # the CLI hashed with the product's profile (tests/conftest.py hashes cheaply only in-process)
            assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and PASSWORD not in stored
            await client.aclose()
        finally:
            await stop_gateway(gw)

    asyncio.run(check())


def test_the_product_hashes_passwords_with_the_rfc9106_low_memory_profile():
    # In a process of its own: this one hashes cheaply (tests/conftest.py, cheap_password_hashing).
    code = ("from argon2 import profiles; from gateway import credentials as c; "
            "assert c._hasher._parameters == profiles.RFC_9106_LOW_MEMORY; print(c.hash_password('x' * 12))")
    made = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
