"""OpenID Connect relying party for the console: the authorization code flow with PKCE, state and nonce.

The protocol pieces come from well-kept libraries: authlib builds the authorization request (PKCE S256
challenge, random state, nonce and verifier), joserfc (authlib's JOSE successor) checks the ID token's
signature against the provider's JWKS and its claims. HTTP goes through aiohttp.

What is verified before anyone is signed in:
  - the discovery document's `issuer` equals the configured issuer (OpenID Connect Discovery 4.3);
  - the ID token's signature with a key of the provider's JWKS (asymmetric algorithms only: never `none`,
    never HS* since the client secret is shared), its `iss`, `aud` (our client id; `azp` when several),
    `exp` and `iat` (60 s leeway for clocks), `sub`, and `nonce` equal to the one this flow sent;
  - userinfo, when the ID token carries no email, only counts when its `sub` equals the ID token's.
The discovery document is cached for an hour; the JWKS too, refetched (at most once a minute) when a token
names a key id it does not hold, so a provider's key rotation needs no restart.
Failures are exceptions carrying a reason code (gateway/api/oidc.py turns them into answers and audit entries).
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import aiohttp
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from gateway.oidc_config import OidcProvider

METADATA_SECONDS = 3600
JWKS_SECONDS = 3600
JWKS_REFRESH_SECONDS = 60  # an unknown key id refetches the JWKS at most this often
LEEWAY_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 5.0
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class OidcError(Exception):
    """A sign-in that cannot go on. `code` is the reason (gateway/api/oidc.py REFUSALS), `detail` for the log."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Flow:
    """What one sign-in attempt keeps server-side between the redirect out and the callback."""

    provider: str
    state: str
    nonce: str
    verifier: str


def new_flow(provider: OidcProvider) -> Flow:
    return Flow(provider.id, generate_token(43), generate_token(43), generate_token(64))


def authorization_url(provider: OidcProvider, metadata: dict[str, Any], redirect_uri: str, flow: Flow) -> str:
    return prepare_grant_uri(metadata["authorization_endpoint"], provider.client_id, "code",
                             redirect_uri=redirect_uri, scope=provider.scopes, state=flow.state, nonce=flow.nonce,
                             code_challenge=create_s256_code_challenge(flow.verifier),
                             code_challenge_method="S256")


def mfa_proven(provider: OidcProvider, claims: dict[str, Any]) -> str | None:
    """The provider's own second factor, when the operator trusts it: the amr or acr value that counts."""
    amr = claims.get("amr")
    for value in amr if isinstance(amr, list) else []:
        if value in provider.trust_amr:
            return f"amr:{value}"
    acr = claims.get("acr")
    if isinstance(acr, str) and acr in provider.trust_acr:
        return f"acr:{acr}"
    return None


class OidcClient:
    """Per gateway: the providers' discovery documents and keys, cached; one HTTP session."""

    def __init__(self, timeout: float = HTTP_TIMEOUT_SECONDS) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None
        self._metadata: dict[str, tuple[float, dict[str, Any]]] = {}
        self._jwks: dict[str, tuple[float, KeySet]] = {}
        self._lock = asyncio.Lock()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _get_json(self, url: str, what: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            async with self._session().get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise OidcError("provider_unavailable", f"{what}: HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError("provider_unavailable", f"{what}: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise OidcError("provider_unavailable", f"{what}: not a JSON object")
        return data

    async def metadata(self, provider: OidcProvider, now: float) -> dict[str, Any]:
        cached = self._metadata.get(provider.id)
        if cached and now - cached[0] < METADATA_SECONDS:
            return cached[1]
        doc = await self._get_json(f"{provider.issuer}/.well-known/openid-configuration", "discovery")
        if doc.get("issuer") != provider.issuer:
            raise OidcError("provider_unavailable", f"discovery names issuer {doc.get('issuer')!r}, "
                            f"not the configured {provider.issuer!r}")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(key), str):
                raise OidcError("provider_unavailable", f"discovery lacks {key}")
        self._metadata[provider.id] = (now, doc)
        return doc

    async def _keys(self, provider: OidcProvider, metadata: dict[str, Any], now: float, kid: str | None) -> KeySet:
        cached = self._jwks.get(provider.id)
        fresh = cached is not None and now - cached[0] < JWKS_SECONDS
        known = cached is not None and (kid is None or any(k.kid == kid for k in cached[1].keys))
        if cached and fresh and (known or now - cached[0] < JWKS_REFRESH_SECONDS):
            return cached[1]
        async with self._lock:
            doc = await self._get_json(metadata["jwks_uri"], "jwks")
            try:
                keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise OidcError("provider_unavailable", f"jwks: {exc}") from None
            self._jwks[provider.id] = (now, keys)
            return keys

    async def redeem(self, provider: OidcProvider, metadata: dict[str, Any], code: str, redirect_uri: str,
                     verifier: str) -> dict[str, Any]:
        """Trade the code for tokens at the token endpoint (client_secret_basic, or _post when that is all the
        provider takes). A refused code (used, expired, PKCE mismatch) is `code_rejected`."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier}
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        headers = {"Accept": "application/json"}
        if "client_secret_basic" in methods:
            headers["Authorization"] = aiohttp.encode_basic_auth(_form_encode(provider.client_id),
                                                                 _form_encode(provider.client_secret))
        else:
            form.update(client_id=provider.client_id, client_secret=provider.client_secret)
        try:
            async with self._session().post(metadata["token_endpoint"], data=form, headers=headers,
                                            allow_redirects=False) as resp:
                status = resp.status
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError("provider_unavailable", f"token endpoint: {type(exc).__name__}") from None
        if status >= 500:
            raise OidcError("provider_unavailable", f"token endpoint: HTTP {status}")
        if status != 200 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else None
            raise OidcError("code_rejected", f"token endpoint: HTTP {status} {error or ''}".strip())
        if not isinstance(data.get("id_token"), str):
            raise OidcError("id_token_invalid", "the token answer has no id_token (is openid in the scopes?)")
        return data

    async def verify_id_token(self, provider: OidcProvider, metadata: dict[str, Any], id_token: str, nonce: str,
                              now: float) -> dict[str, Any]:
        try:
            header = extract_compact(id_token.encode()).headers()
        except (JoseError, ValueError):
            raise OidcError("id_token_invalid", "not a signed JWT") from None
        keys = await self._keys(provider, metadata, now, header.get("kid"))
        allowed = [a for a in metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
                   if a in SIGNING_ALGORITHMS] or ["RS256"]
        try:
            token = jwt.decode(id_token, keys, algorithms=allowed)
        except (JoseError, ValueError) as exc:
            raise OidcError("id_token_invalid", f"signature: {type(exc).__name__}") from None
        return check_claims(provider, token.claims, nonce, now)

    async def userinfo(self, metadata: dict[str, Any], access_token: str) -> dict[str, Any]:
        endpoint = metadata.get("userinfo_endpoint")
        if not isinstance(endpoint, str) or not access_token:
            return {}
        return await self._get_json(endpoint, "userinfo", {"Authorization": f"Bearer {access_token}"})


def check_claims(provider: OidcProvider, claims: dict[str, Any], nonce: str, now: float) -> dict[str, Any]:
    """The ID token's claims against this flow (pure: `now` passed in). `bad_nonce` is told apart from the rest."""
    registry = jwt.JWTClaimsRegistry(
        now=int(now), leeway=LEEWAY_SECONDS, iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": provider.client_id}, exp={"essential": True},
        iat={"essential": True}, sub={"essential": True})
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise OidcError("id_token_invalid", "expired") from None
    except ClaimError as exc:
        raise OidcError("id_token_invalid", f"claim {exc.claim}") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise OidcError("id_token_invalid", "several audiences and azp is not our client")
    if not isinstance(claims.get("nonce"), str) or not _same(claims["nonce"], nonce):
        raise OidcError("bad_nonce", "the nonce differs from the one this sign-in sent")
    return dict(claims)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _form_encode(value: str) -> str:
    """RFC 6749 2.3.1: client id and secret are form-encoded before Basic authentication."""
    return quote_plus(value)
