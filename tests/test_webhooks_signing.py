"""Pure parts of webhooks: Standard Webhooks signatures, the address policy, the backoff schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from dialer.webhooks.addresses import AddressPolicy, address_problem, url_problem
from dialer.webhooks.backoff import RetryPolicy
from dialer.webhooks.signing import VerificationError, headers, new_secret, sign, verify

BODY = b'{"type":"optout.recorded"}'


def test_signature_is_hmac_sha256_over_id_timestamp_body():
    secret = new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, b"evt_1.1700000000." + BODY, hashlib.sha256).digest()).decode()
    assert sign(secret, "evt_1", 1700000000, BODY) == "v1," + expected


def test_standard_webhooks_reference_vector():
    # From the Standard Webhooks specification's test vectors (svix libraries use the same).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_accepts_good_and_refuses_tampered_old_or_future():
    secret = new_secret()
    sent = headers([secret], "evt_1", 1000, BODY)
    assert verify([secret], sent, BODY, now=1000) == "evt_1"
    with pytest.raises(VerificationError, match="no matching"):
        verify([secret], sent, BODY + b" ", now=1000)
    with pytest.raises(VerificationError, match="no matching"):
        verify([new_secret()], sent, BODY, now=1000)
    with pytest.raises(VerificationError, match="too old"):
        verify([secret], sent, BODY, now=1000 + 301)
    with pytest.raises(VerificationError, match="future"):
        verify([secret], sent, BODY, now=1000 - 301)
    with pytest.raises(VerificationError, match="missing"):
        verify([secret], {"webhook-id": "evt_1"}, BODY, now=1000)
    forged = {**sent, "webhook-id": "evt_2"}  # the id is signed: replaying under another id fails
    with pytest.raises(VerificationError):
        verify([secret], forged, BODY, now=1000)


def test_two_secrets_during_rotation_each_verify():
    old, new = new_secret(), new_secret()
    sent = headers([new, old], "evt_1", 1000, BODY)
    assert len(sent["webhook-signature"].split()) == 2
    assert verify([old], sent, BODY, now=1000) == "evt_1"
    assert verify([new], sent, BODY, now=1000) == "evt_1"


OPEN = AddressPolicy(allow_http=True, allow_private=True)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1",
                                     "224.0.0.1", "198.18.0.1", "240.0.0.1"])
def test_non_public_addresses_are_refused(address):
    assert address_problem(address, AddressPolicy()) is not None
    assert address_problem(address, OPEN) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"])
def test_public_addresses_pass(address):
    assert address_problem(address, AddressPolicy()) is None


@pytest.mark.parametrize("url, why", [
    ("http://example.com/hook", "https"),
    ("ftp://example.com/hook", "https"),
    ("https://127.0.0.1/hook", "loopback"),
    ("https://[::1]/hook", "loopback"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://10.0.0.5/hook", "private"),
    ("https://user:pw@example.com/hook", "user name"),
    ("https:///hook", "no host"),
])
def test_urls_refused_by_default(url, why):
    problem = url_problem(url, AddressPolicy())
    assert problem is not None and why in problem


def test_https_name_passes_the_url_check_and_operator_can_open_loopback_http():
    assert url_problem("https://hooks.example.com/x", AddressPolicy()) is None
    assert url_problem("http://127.0.0.1:8080/x", OPEN) is None
    assert url_problem("http://127.0.0.1:8080/x", AddressPolicy(allow_http=True)) is not None


def test_backoff_grows_is_jittered_capped_and_retries_past_a_day():
    policy = RetryPolicy()
    assert policy.delay(1, 0.0) == 2.5 and policy.delay(1, 0.999) < 5
    assert policy.delay(2, 0.0) == 5.0
    assert policy.delay(30, 0.999) <= 3600
    assert policy.retry_for >= 24 * 3600
    # Over a full retry period the schedule makes many attempts and never stops before 24 h.
    t, attempts = 0.0, 0
    while not policy.gives_up(0.0, t):
        attempts += 1
        t += policy.delay(attempts, 0.5)
    assert t >= 24 * 3600 and attempts > 20
