"""Phone numbers as integers: the registry stores E.164 numbers as the integer of their digits.

"+33145678901" <-> 33145678901. E.164 numbers have at most 15 digits, so every number fits a
64-bit roaring bitmap, and the country code is kept (it is the leading digits of the integer).
"""

from __future__ import annotations

MAX_E164_DIGITS = 15


def e164_to_int(e164: str) -> int:
    """The integer of an E.164 string; ValueError when it is not "+" and 2..15 digits."""
    if not isinstance(e164, str) or len(e164) < 3 or e164[0] != "+":
        raise ValueError("not an E.164 number (expected + and digits)")
    digits = e164[1:]
    if not (digits.isascii() and digits.isdigit()) or len(digits) > MAX_E164_DIGITS or digits[0] == "0":
        raise ValueError("not an E.164 number (expected + and 2 to 15 digits, no leading 0)")
    return int(digits)


def int_to_e164(number: int) -> str:
    return f"+{number}"
