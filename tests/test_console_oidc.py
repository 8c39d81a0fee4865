"""Console single sign-on (OpenID Connect) against a real OpenID provider started by the test (panva's
oidc-provider on Node.js, tests/oidc_support.py) and the real gateway on a real redis-server: the happy path,
then every refusal the issue names (wrong state, replayed code, bad nonce, unknown user, disabled user,
provider down) and the second-factor rules; each refusal audited."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import aiohttp
import pyotp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from dialer.config import ConfigError, load_config
from gateway.accounts import AccountStore
from gateway.api.oidc import flow_key
from gateway.app import make_app
from gateway.auth import AuthStore
from gateway.oidc import OidcClient, OidcError, check_claims, mfa_proven
from gateway.oidc_config import OidcProvider, secret_box
from gateway.sessions import COOKIE
from tests.gateway_support import SECRET_KEY, audit_events
from tests.oidc_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    SECRET_ENV,
    free_port,
    running_provider,
    settings_file,
    sign_in_at_provider,
)

GATEWAY_PORT = free_port()
CALLBACK = "http://127.0.0.1:{port}/v1/session/oidc/{id}/callback"


@pytest.fixture(scope="module")
def provider():
    uris = [CALLBACK.format(port=GATEWAY_PORT, id=i) for i in ("local", "open", "subs")]
    with running_provider(uris) as running:
        yield running


def provider_tables(issuer: str) -> list[dict[str, object]]:
    common = {"issuer": issuer, "client_id": CLIENT_ID, "client_secret_env": SECRET_ENV, "tenant": "acme"}
    return [{"id": "local", "name": "Local provider", **common},
            {"id": "open", "name": "Open provider", "create_role": "uploader", **common},
            {"id": "subs", "name": "Subject provider", "match": "sub", **common},
            {"id": "down", "name": "Down provider", **{**common, "issuer": f"http://127.0.0.1:{free_port()}"}}]


class Gateway:
    def __init__(self, client: TestClient, redis) -> None:
        self.client, self.redis, self.redis_url = client, redis, ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{GATEWAY_PORT}{path}"


@pytest.fixture
async def gw(redis_url, provider, tmp_path):
    path = settings_file(tmp_path / "dialer.toml", provider_tables(provider.issuer))
    config = load_config(path, env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY,
                                    SECRET_ENV: CLIENT_SECRET})
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = AuthStore(redis)
    await store.create_tenant("acme", "Acme")
    await store.create_tenant("globex", "Globex")
    client = TestClient(TestServer(make_app(config, redis), host="127.0.0.1", port=GATEWAY_PORT))
    await client.start_server()
    gateway = Gateway(client, redis)
    gateway.redis_url = redis_url
    yield gateway
    await client.close()
    await redis.aclose()


@pytest.fixture
async def http():
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    yield session
    await session.close()


async def callback_json(http, url: str) -> tuple[int, dict]:
    async with http.get(url, allow_redirects=False) as resp:
        return resp.status, await resp.json()


async def refusals(gw) -> list[tuple[str, str]]:
    return [(e.get("reason", ""), e["actor"]) for e in await audit_events(gw, "acme")
            if e["action"] == "login.refused"]


async def test_sign_in_lands_in_a_session_like_a_password_sign_in(gw, http):
    await AuthStore(gw.redis).create_user("acme", "sam@acme.example", "supervisor")
    listed = await (await http.get(gw.url("/v1/session/oidc"))).json()
    assert [p["name"] for p in listed["items"]] == ["Local provider", "Open provider", "Subject provider",
                                                         "Down provider"]
    assert "unknown_user" in listed["refusals"]

    async with http.get(gw.url("/v1/session/oidc/local/start"), allow_redirects=False) as resp:
        assert resp.status == 303
        query = parse_qs(urlparse(resp.headers["Location"]).query)
        assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
        assert query["state"][0] and query["nonce"][0] and len(query["code_challenge"][0]) == 43
        flow_cookie = resp.cookies["dialer_oidc_flow"]
        assert flow_cookie["httponly"] and flow_cookie["samesite"] == "Lax"
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "sam@acme.example")
    async with http.get(back, allow_redirects=False) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        cookie = resp.cookies[COOKIE]
    assert body["user"] == "sam@acme.example" and body["role"] == "supervisor" and body["stage"] == "full"
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    # The same server-side session as a password sign-in: reads work, a change needs the CSRF header.
    assert (await http.get(gw.url("/v1/campaigns"))).status == 200
    assert (await http.delete(gw.url("/v1/session"))).status == 403
    assert (await http.delete(gw.url("/v1/session"), headers={"X-CSRF-Token": body["csrf_token"]})).status == 200
    assert (await http.get(gw.url("/v1/campaigns"))).status == 401

    success = [e for e in await audit_events(gw, "acme") if e["action"] == "login.success"]
    assert success[0]["actor"] == "sam@acme.example" and success[0]["method"] == "oidc"
    assert success[0]["provider"] == "local" and success[0]["subject"] == "sam@acme.example"


async def test_browser_return_redirects_to_the_console(gw, http):
    await AuthStore(gw.redis).create_user("acme", "sam@acme.example", "supervisor")
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "sam@acme.example")
    async with http.get(back, allow_redirects=False, headers={"Accept": "text/html"}) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/"
    async with http.get(back, allow_redirects=False, headers={"Accept": "text/html"}) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/?signin_error=bad_state"


async def test_wrong_state_is_refused(gw, http):
    await AuthStore(gw.redis).create_user("acme", "sam@acme.example", "supervisor")
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "sam@acme.example")
    parts = urlparse(back)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    forged = urlunparse(parts._replace(query=urlencode({**query, "state": "forged-state"})))
    status, body = await callback_json(http, forged)
    assert status == 400 and body["error"]["code"] == "bad_state" and "start again" in body["error"]["message"]
    # Without the browser's flow cookie (a link sent to someone else): refused, and the flow is spent.
    bare = aiohttp.ClientSession()
    try:
        async with bare.get(back, allow_redirects=False) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "flow_mismatch"
    finally:
        await bare.close()
    assert ("bad_state", "unknown") in await refusals(gw) and ("flow_mismatch", "unknown") in await refusals(gw)
    assert await gw.redis.hlen("t:acme:user:sam@acme.example:sessions") == 0


async def test_replayed_code_is_refused(gw, http):
    await AuthStore(gw.redis).create_user("acme", "sam@acme.example", "supervisor")
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "sam@acme.example")
    assert (await callback_json(http, back))[0] == 200
    status, body = await callback_json(http, back)  # the same answer again: its flow is spent
    assert status == 400 and body["error"]["code"] == "bad_state"
    # The old code with a fresh flow of this browser: the provider itself refuses it (used, and PKCE differs).
    async with http.get(gw.url("/v1/session/oidc/local/start"), allow_redirects=False) as resp:
        state = parse_qs(urlparse(resp.headers["Location"]).query)["state"][0]
    code = parse_qs(urlparse(back).query)["code"][0]
    status, body = await callback_json(http, gw.url(f"/v1/session/oidc/local/callback?code={code}&state={state}"))
    assert status == 401 and body["error"]["code"] == "code_rejected"
    assert [r for r, _ in await refusals(gw)] == ["bad_state", "code_rejected"]
    assert await gw.redis.hlen("t:acme:user:sam@acme.example:sessions") == 1  # only the first sign-in


async def test_bad_nonce_is_refused(gw, http):
    await AuthStore(gw.redis).create_user("acme", "sam@acme.example", "supervisor")
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "sam@acme.example")
    key = flow_key(parse_qs(urlparse(back).query)["state"][0])
    record = json.loads(await gw.redis.get(key))
    await gw.redis.set(key, json.dumps({**record, "nonce": "not-the-nonce-sent"}), ex=60)
    status, body = await callback_json(http, back)
    assert status == 401 and body["error"]["code"] == "bad_nonce"
    assert ("bad_nonce", "unknown") in await refusals(gw)
    assert await gw.redis.hlen("t:acme:user:sam@acme.example:sessions") == 0


async def test_unknown_user_is_refused_unless_the_operator_creates_accounts(gw, http):
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "stranger@acme.example")
    status, body = await callback_json(http, back)
    assert status == 403 and body["error"]["code"] == "unknown_user"
    assert "no console account for stranger@acme.example" in body["error"]["message"]
    assert not await AuthStore(gw.redis).user("acme", "stranger@acme.example")  # nobody created silently
    # An account of another tenant does not count: the provider signs people in to acme only.
    await AuthStore(gw.redis).create_user("globex", "gus@globex.example", "admin")
    http.cookie_jar.clear()  # sign out at the provider too: another person
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "gus@globex.example")
    assert (await callback_json(http, back))[1]["error"]["code"] == "unknown_user"
    assert await refusals(gw) == [("unknown_user", "stranger@acme.example"), ("unknown_user", "gus@globex.example")]

    http.cookie_jar.clear()
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/open/start"), "newcomer@acme.example")
    status, body = await callback_json(http, back)
    assert status == 200 and body["user"] == "newcomer@acme.example" and body["role"] == "uploader"
    assert "login.account_created" in [e["action"] for e in await audit_events(gw, "acme")]


async def test_disabled_user_is_refused(gw, http):
    store = AuthStore(gw.redis)
    await store.create_user("acme", "dora@acme.example", "supervisor")
    await store.update_user("acme", "dora@acme.example", disabled=True)
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "dora@acme.example")
    status, body = await callback_json(http, back)
    assert status == 403 and body["error"]["code"] == "disabled"
    assert await refusals(gw) == [("disabled", "dora@acme.example")]
    assert await gw.redis.hlen("t:acme:user:dora@acme.example:sessions") == 0


async def test_provider_down_is_503_with_words_never_500(gw, http):
    async with http.get(gw.url("/v1/session/oidc/down/start"), allow_redirects=False) as resp:
        assert resp.status == 503
        error = (await resp.json())["error"]
        assert error["code"] == "provider_unavailable" and "cannot be reached" in error["message"]
    async with http.get(gw.url("/v1/session/oidc/down/start"), allow_redirects=False,
                        headers={"Accept": "text/html"}) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/?signin_error=provider_unavailable"
    async with http.get(gw.url("/v1/session/oidc/nowhere/start"), allow_redirects=False) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_provider"
    assert await refusals(gw) == [("provider_unavailable", "unknown")] * 2


async def test_match_by_subject(gw, http):
    """match = "sub": the console user named as the provider's subject; a provider matching by email needs one."""
    await AuthStore(gw.redis).create_user("acme", "agent-7731", "supervisor")
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/subs/start"), "agent-7731")
    status, body = await callback_json(http, back)
    assert status == 200 and body["user"] == "agent-7731"
    http.cookie_jar.clear()
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "agent-7731")
    status, body = await callback_json(http, back)
    assert status == 403 and body["error"]["code"] == "no_identity"


async def test_provider_gone_between_start_and_return_is_503(redis_url, tmp_path, http):
    """The provider stops after sending the person back: redeeming the code cannot reach it."""
    port = free_port()
    with running_provider([CALLBACK.format(port=port, id="local")]) as short_lived:
        path = settings_file(tmp_path / "dialer.toml", provider_tables(short_lived.issuer)[:1])
        config = load_config(path, env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY,
                                        SECRET_ENV: CLIENT_SECRET})
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        await AuthStore(redis).create_tenant("acme")
        await AuthStore(redis).create_user("acme", "sam@acme.example", "supervisor")
        client = TestClient(TestServer(make_app(config, redis), host="127.0.0.1", port=port))
        await client.start_server()
        try:
            back = await sign_in_at_provider(http, f"http://127.0.0.1:{port}/v1/session/oidc/local/start",
                                             "sam@acme.example")
            short_lived.process.terminate()
            short_lived.process.wait(timeout=10)
            status, body = await callback_json(http, back)
            assert status == 503 and body["error"]["code"] == "provider_unavailable"
        finally:
            await client.close()
            await redis.aclose()


async def test_second_factor_after_single_sign_on(gw, http):
    store, accounts = AuthStore(gw.redis), AccountStore(gw.redis)
    # An admin without a second factor: enrolment stage, as after a password.
    await store.create_user("acme", "ada@acme.example", "admin")
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "ada@acme.example")
    status, body = await callback_json(http, back)
    assert status == 200 and body["stage"] == "enrol"
    assert (await http.get(gw.url("/v1/campaigns"))).status == 401

    # An admin with TOTP: the provider's sign-in (no trusted amr) still needs the console's code.
    secret = await accounts.start_enrolment("acme", "ada@acme.example")
    await accounts.confirm_enrolment("acme", "ada@acme.example", pyotp.TOTP(secret).now(), time.time())
    http.cookie_jar.clear()
    back = await sign_in_at_provider(http, gw.url("/v1/session/oidc/local/start"), "ada@acme.example")
    status, body = await callback_json(http, back)
    assert status == 200 and body["stage"] == "code"
    refused = await http.get(gw.url("/v1/campaigns"))
    assert refused.status == 401 and (await refused.json())["error"]["code"] == "mfa_code_required"
    csrf = {"X-CSRF-Token": body["csrf_token"]}
    wrong = await http.post(gw.url("/v1/session/mfa/verify"), json={"code": "000000"}, headers=csrf)
    assert wrong.status == 422
    good = await http.post(gw.url("/v1/session/mfa/verify"), json={"code": pyotp.TOTP(secret).at(time.time() + 30)},
                           headers=csrf)
    assert good.status == 200, await good.text()
    assert (await good.json())["stage"] == "full"
    assert (await http.get(gw.url("/v1/campaigns"))).status == 200
    methods = [e.get("method") for e in await audit_events(gw, "acme") if e["action"] == "login.success"]
    assert methods == ["oidc", "oidc", "oidc+totp"]


# --- pure checks: the ID token's claims, trusted second factors, settings ---------------------------------

PROVIDER = OidcProvider(id="p", name="P", issuer="https://idp.example", client_id="console", client_secret="s",
                        tenant="acme", trust_amr=("mfa",), trust_acr=("loa2",))
NOW = 1_800_000_000


def claims(**changes: object) -> dict:
    return {"iss": "https://idp.example", "aud": "console", "sub": "u1", "exp": NOW + 300, "iat": NOW,
            "nonce": "n1", **changes}


@pytest.mark.parametrize(("changes", "code"), [
    ({}, None), ({"aud": ["console", "other"], "azp": "console"}, None),
    ({"iss": "https://evil.example"}, "id_token_invalid"), ({"aud": "someone-else"}, "id_token_invalid"),
    ({"exp": NOW - 120}, "id_token_invalid"), ({"iat": NOW + 3600}, "id_token_invalid"),
    ({"aud": ["console", "other"]}, "id_token_invalid"), ({"nonce": "n2"}, "bad_nonce"), ({"nonce": None}, "bad_nonce"),
])
def test_id_token_claims(changes, code):
    token = {k: v for k, v in claims(**changes).items() if v is not None}
    if code is None:
        assert check_claims(PROVIDER, token, "n1", NOW)["sub"] == "u1"
    else:
        with pytest.raises(OidcError) as refused:
            check_claims(PROVIDER, token, "n1", NOW)
        assert refused.value.code == code


def test_only_configured_amr_or_acr_counts_as_a_second_factor():
    assert mfa_proven(PROVIDER, {"amr": ["pwd", "mfa"]}) == "amr:mfa"
    assert mfa_proven(PROVIDER, {"acr": "loa2"}) == "acr:loa2"
    assert mfa_proven(PROVIDER, {"amr": ["pwd", "otp"], "acr": "loa1"}) is None
    assert mfa_proven(OidcProvider("q", "Q", "https://i", "c", "s"), {"amr": ["mfa"]}) is None


async def test_a_token_signed_with_another_key_is_refused(provider):
    """The provider's real discovery and JWKS; a token with its key id and issuer, signed by a stranger."""
    real = OidcProvider(id="local", name="L", issuer=provider.issuer, client_id=CLIENT_ID, client_secret="x",
                        tenant="acme")
    client = OidcClient()
    try:
        metadata = await client.metadata(real, time.time())
        keys = await client._keys(real, metadata, time.time(), None)
        kid = keys.keys[0].kid
        stranger = RSAKey.generate_key(2048, parameters={"kid": kid})
        forged = jwt.encode({"alg": "RS256", "kid": kid}, claims(iss=provider.issuer, aud=CLIENT_ID,
                                                                  exp=int(time.time()) + 300, iat=int(time.time())),
                            stranger)
        with pytest.raises(OidcError) as refused:
            await client.verify_id_token(real, metadata, forged, "n1", time.time())
        assert refused.value.code == "id_token_invalid"
        unsigned = jwt.encode({"alg": "HS256"}, claims(iss=provider.issuer, aud=CLIENT_ID), OctKey.import_key("x" * 32),
                              algorithms=["HS256"])
        with pytest.raises(OidcError):
            await client.verify_id_token(real, metadata, unsigned, "n1", time.time())
    finally:
        await client.close()


def test_settings_keep_the_client_secret_out_of_the_file(tmp_path):
    base = {"id": "acme-sso", "issuer": "https://idp.example", "client_id": "c", "tenant": "acme"}
    env = {"DIALER_SECRET_KEY": SECRET_KEY}
    sealed = secret_box(SECRET_KEY).seal("the client secret")
    config = load_config(settings_file(tmp_path / "a.toml", [{**base, "client_secret_sealed": sealed}]), env=env)
    assert config.oidc[0].client_secret == "the client secret" and "the client secret" not in repr(config.oidc)
    for entry, message in [
        ({**base, "client_secret": "plain"}, "oidc[0].client_secret: unknown setting"),
        (base, "client_secret_env (or client_secret_sealed): required"),
        ({**base, "client_secret_env": "NOPE"}, "environment variable NOPE is unset"),
        ({**base, "client_secret_sealed": secret_box("another key").seal("x")}, "cannot be decrypted"),
        ({**base, "client_secret_env": "S", "issuer": "http://idp.example"}, "expected an https:// address"),
        ({**base, "client_secret_env": "S", "create_role": "admin"}, "create_role"),
        ({**base, "client_secret_env": "S", "match": "name"}, "match: expected email or sub"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                           .replace("]", r"\]")):
            load_config(settings_file(tmp_path / "b.toml", [entry]), env={**env, "S": "secret"})


async def test_discovery_and_keys_are_cached(provider):
    """Fetched once, then served from memory for an hour (even with the provider gone); an unknown key id
    refetches the JWKS, at most once a minute."""
    real = OidcProvider(id="local", name="L", issuer=provider.issuer, client_id=CLIENT_ID, client_secret="x",
                        tenant="acme")
    client = OidcClient()
    fetched: list[str] = []
    fetch = client._get_json

    async def counted(url, what, headers=None):
        fetched.append(what)
        return await fetch(url, what, headers)

    client._get_json = counted  # type: ignore[method-assign]
    try:
        t = time.time()
        metadata = await client.metadata(real, t)
        assert await client.metadata(real, t + 3500) is metadata
        kid = (await client._keys(real, metadata, t, None)).keys[0].kid
        await client._keys(real, metadata, t + 10, kid)
        await client._keys(real, metadata, t + 30, "a-key-id-it-does-not-have")  # too soon to refetch
        assert fetched == ["discovery", "jwks"]
        await client._keys(real, metadata, t + 61, "a-key-id-it-does-not-have")  # rotation: fetch again
        assert fetched == ["discovery", "jwks", "jwks"]
        await client.metadata(real, t + 3601)  # an hour later: fetched again
        assert fetched == ["discovery", "jwks", "jwks", "discovery"]
    finally:
        await client.close()


def test_the_seal_command_makes_a_secret_the_settings_open(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "gateway.oidc_config", "seal"], input="the client secret\n",
                          capture_output=True, text=True, cwd=root, timeout=60,
                          env={**os.environ, "DIALER_SECRET_KEY": SECRET_KEY, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    sealed = done.stdout.strip()
    assert "the client secret" not in sealed
    entry = {"id": "x", "issuer": "https://idp.example", "client_id": "c", "tenant": "acme",
             "client_secret_sealed": sealed}
    config = load_config(settings_file(tmp_path / "s.toml", [entry]), env={"DIALER_SECRET_KEY": SECRET_KEY})
    assert config.oidc[0].client_secret == "the client secret"
