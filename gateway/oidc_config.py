"""Single sign-on providers (OpenID Connect) of the console, read from the settings file's [[oidc]] tables.

One table per provider; each signs people in to one tenant (its users are that tenant's console users):

    [[oidc]]
    id = "acme-sso"                      # in URLs: 1-40 letters, digits, '-' or '_'
    name = "Acme Okta"                   # the sign-in button reads "Sign in with Acme Okta"
    issuer = "https://acme.okta.com"     # https (http only for a provider on this machine: tests)
    client_id = "0oa1..."
    client_secret_env = "ACME_OIDC_SECRET"   # or client_secret_sealed = "gAAAA..." (below)
    tenant = "acme"
    match = "email"                      # or "sub": the console user named exactly the provider's subject
    require_verified_email = true        # match by email only when the provider says email_verified
    create_role = ""                     # "" refuses people with no console account; a role creates them
    trust_amr = []                       # e.g. ["mfa", "otp", "hwk"]: the provider's second factor counts
    trust_acr = []                       # e.g. ["urn:acme:loa:2"]
    scopes = "openid email"

The client secret never sits in the file in clear: either an environment variable names it, or the file holds
it sealed (Fernet under a key derived from security.secret_key, as webhook secrets are stored), made with
`python3 -m gateway.oidc_config seal < secret.txt`. A wrong table raises ConfigError naming the setting.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from dialer.config import ConfigError
from dialer.webhooks.sealing import SecretBox, SecretBoxError

PURPOSE = b"dialer oidc client secrets v1"
PROVIDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
KEYS = {"id", "name", "issuer", "client_id", "client_secret_env", "client_secret_sealed", "tenant", "match",
        "require_verified_email", "create_role", "trust_amr", "trust_acr", "scopes"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CREATABLE_ROLES = ("supervisor", "uploader", "auditor")  # never admin: an admin is made by an admin


@dataclass(frozen=True)
class OidcProvider:
    id: str
    name: str
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)  # never printed
    tenant: str = ""
    match: str = "email"
    require_verified_email: bool = True
    create_role: str = ""
    trust_amr: tuple[str, ...] = ()
    trust_acr: tuple[str, ...] = ()
    scopes: str = "openid email"


def secret_box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key, purpose=PURPOSE, what="OIDC client")


def _text(entry: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise ConfigError(f"setting {where}.{key}: required text")
    return value


def _words(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"setting {where}.{key}: expected a list of strings")
    return tuple(value)


def parse_provider(entry: Any, where: str, env: dict[str, str], secret_key: str) -> OidcProvider:
    if not isinstance(entry, dict):
        raise ConfigError(f"setting {where}: expected a table")
    unknown = set(entry) - KEYS
    if unknown:
        raise ConfigError(f"setting {where}.{sorted(unknown)[0]}: unknown setting")
    ident = _text(entry, "id", where)
    if not PROVIDER_ID.match(ident):
        raise ConfigError(f"setting {where}.id: 1-40 letters, digits, '-' or '_'")
    issuer = _text(entry, "issuer", where).rstrip("/")
    url = urlparse(issuer)
    if url.scheme != "https" and not (url.scheme == "http" and url.hostname in LOOPBACK):
        raise ConfigError(f"setting {where}.issuer: expected an https:// address (http:// only on this machine)")
    if "client_secret_env" in entry:
        name = _text(entry, "client_secret_env", where)
        secret = env.get(name)
        if not secret:
            raise ConfigError(f"setting {where}.client_secret_env: environment variable {name} is unset or empty")
    elif "client_secret_sealed" in entry:
        try:
            secret = secret_box(secret_key).open(_text(entry, "client_secret_sealed", where))
        except SecretBoxError as exc:
            raise ConfigError(f"setting {where}.client_secret_sealed: {exc}") from None
    else:
        raise ConfigError(f"setting {where}.client_secret_env (or client_secret_sealed): required")
    match = _text(entry, "match", where, "email")
    if match not in ("email", "sub"):
        raise ConfigError(f"setting {where}.match: expected email or sub")
    create_role = _text(entry, "create_role", where, "")
    if create_role and create_role not in CREATABLE_ROLES:
        raise ConfigError(f"setting {where}.create_role: expected one of {', '.join(CREATABLE_ROLES)} (or empty: "
                          "refuse people without an account)")
    verified = entry.get("require_verified_email", True)
    if not isinstance(verified, bool):
        raise ConfigError(f"setting {where}.require_verified_email: expected true or false")
    scopes = _text(entry, "scopes", where, "openid email")
    if "openid" not in scopes.split():
        raise ConfigError(f"setting {where}.scopes: must include openid")
    return OidcProvider(id=ident, name=_text(entry, "name", where, ident) or ident, issuer=issuer,
                        client_id=_text(entry, "client_id", where), client_secret=secret,
                        tenant=_text(entry, "tenant", where), match=match, require_verified_email=verified,
                        create_role=create_role, trust_amr=_words(entry, "trust_amr", where),
                        trust_acr=_words(entry, "trust_acr", where), scopes=scopes)


def parse_providers(entries: Any, source: str, env: dict[str, str], secret_key: str) -> tuple[OidcProvider, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"setting oidc in {source}: expected [[oidc]] tables")
    providers: list[OidcProvider] = []
    for i, entry in enumerate(entries):
        provider = parse_provider(entry, f"oidc[{i}]", env, secret_key)
        if provider.id in {p.id for p in providers}:
            raise ConfigError(f"setting oidc[{i}].id: {provider.id!r} names two providers")
        providers.append(provider)
    return tuple(providers)


def main(argv: list[str]) -> int:
    """`python3 -m gateway.oidc_config seal`: read a client secret on stdin, print it sealed for the file."""
    from dialer.config import load_config

    if argv != ["seal"]:
        print("usage: python3 -m gateway.oidc_config seal < secret.txt", file=sys.stderr)
        return 2
    secret = sys.stdin.read().strip()
    if not secret:
        print("no secret on standard input", file=sys.stderr)
        return 2
    try:
        print(secret_box(load_config()["security.secret_key"]).seal(secret))
    except (ConfigError, SecretBoxError) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
