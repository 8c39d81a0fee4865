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
    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise SecretBoxError("setting security.secret_key is empty: webhook secrets cannot be stored")
        derived = hashlib.sha256(b"dialer webhook secrets v1\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretBoxError("a webhook secret cannot be decrypted (security.secret_key changed?)") from None
