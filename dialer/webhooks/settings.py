"""The webhook pieces built from the operator's settings."""

from __future__ import annotations

from dialer.config import Config
from dialer.webhooks.addresses import AddressPolicy
from dialer.webhooks.backoff import RetryPolicy
from dialer.webhooks.sealing import SecretBox


def address_policy(config: Config) -> AddressPolicy:
    return AddressPolicy(allow_http=config["webhooks.allow_http"],
                         allow_private=config["webhooks.allow_private_addresses"])


def retry_policy(config: Config) -> RetryPolicy:
    return RetryPolicy(retry_for=config["webhooks.retry_hours"] * 3600, timeout=config["webhooks.timeout_seconds"])


def secret_box(config: Config) -> SecretBox:
    return SecretBox(config["security.secret_key"])
