import io
import logging

from dialer.logs import mask, setup_logging


def test_phone_numbers_are_masked():
    assert mask("calling +33145678901 now") == "calling +*********01 now"
    assert "0145678901" not in mask("tel 01 45 67 89 01")


def test_secrets_are_masked():
    assert "hunter2" not in mask("login secret=hunter2")
    assert "abc.def" not in mask("Authorization: abc.def")


def test_logging_masks_arguments():
    stream = io.StringIO()
    setup_logging("INFO", stream)
    logging.getLogger("t").info("dial %s for %s", "+14155550123", "c1")
    out = stream.getvalue()
    assert "+14155550123" not in out
    assert "23 for c1" in out


def test_addresses_and_figures_are_not_taken_for_numbers():
    assert mask("listening on 127.0.0.1:5038") == "listening on 127.0.0.1:5038"
    assert mask("GET /v1/me 200 1041.1ms") == "GET /v1/me 200 1041.1ms"
    assert "45 67 89" not in mask("tel 01 45 67 89 01")
    assert "67-89" not in mask("tel 0145-67-89-01")
