"""Logging setup that keeps personal data and secrets out of log files.

Every record passes through MaskingFilter: phone numbers keep only their last two digits
(+3314567890 -> +33********90) and known secret fields are replaced. Masking happens on the
formatted message, so a number passed as a %-argument is masked too.
"""

from __future__ import annotations

import logging
import re

# A run of 7+ digits, optionally led by + and broken by spaces, dots or dashes: phone-like.
_PHONE = re.compile(r"(?<![\w.])\+?\d(?:[ .\-]?\d){6,}(?![\w]|\.\d)")
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_SECRET = re.compile(r"(?i)\b(secret|password|token|authorization|key)(\s*[:=]\s*)(\S+)")
# "Authorization: Bearer <token>": the field rule above hides only the word Bearer.
_BEARER = re.compile(r"(?i)\b(bearer\s+)(\S+)")
# Our API tokens (gateway/auth.py: dlr_<10 hex id>_<secret>) wherever they appear: the id stays for tracing.
_API_TOKEN = re.compile(r"\b(dlr_[0-9a-f]{10}_)[A-Za-z0-9_-]{8,}")
# A number in a URL query string: "%2B33145678901" (the + percent-encoded, so the digits follow a letter).
_URL_PHONE = re.compile(r"(?i)(%2B)(\d{6,})")


def mask_phone(text: str) -> str:
    """Mask phone-like digit runs, keeping a leading + and the last two digits."""

    def repl(match: re.Match[str]) -> str:
        raw = match.group(0)
        if _IPV4.match(raw) or len({c for c in raw if not c.isdigit() and c != "+"}) > 1:
            return raw  # an address, or figures with mixed separators ("200 1041.1"): not a phone number
        digits = [c for c in raw if c.isdigit()]
        plus = "+" if raw.startswith("+") else ""
        return plus + "*" * (len(digits) - 2) + "".join(digits[-2:])

    return _PHONE.sub(repl, text)


def mask(text: str) -> str:
    text = _BEARER.sub(lambda m: m.group(1) + "***", text)
    text = _SECRET.sub(lambda m: m.group(1) + m.group(2) + "***", text)
    text = _API_TOKEN.sub(lambda m: m.group(1) + "***", text)
    text = _URL_PHONE.sub(lambda m: m.group(1) + "*" * (len(m.group(2)) - 2) + m.group(2)[-2:], text)
    return mask_phone(text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True


def setup_logging(level: str = "INFO", stream: object | None = None) -> None:
    handler = logging.StreamHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
