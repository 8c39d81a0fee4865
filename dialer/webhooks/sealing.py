"""Endpoint secrets at rest: encrypted (Fernet: AES-128-CBC + HMAC-SHA256) under a key derived from the
operator's security.secret_key, because a secret must be readable to sign with (a hash would not do).
A copy of Redis alone (a backup, a replica) therefore does not reveal them."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SecretBoxError(ValueError):
    pass


class SecretBox:
    def __init__(self, secret_key: str, purpose: bytes = b"dialer webhook secrets v1", what: str = "webhook") -> None:
        """`purpose` keeps the keys of different uses apart (an OIDC client secret sealed for the console cannot
        be opened as a webhook secret); `what` names the secrets in error messages."""
        self.what = what
        if not secret_key:
            raise SecretBoxError(f"setting security.secret_key is empty: {what} secrets cannot be stored")
        derived = hashlib.sha256(purpose + b"\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretBoxError(f"a {self.what} secret cannot be decrypted (security.secret_key changed?)") from None
