"""Is a campaign's caller ID lawful for a call to this place? The `caller_id` rule kind.

The caller ID (the number presented to the called person) is part of a call's lawfulness: most regimes forbid
masking it and want a number the person can call back; France also confines canvassing to ARCEP's dedicated
ranges. What a jurisdiction demands is pack data (rules/packs/*.toml, kind `caller_id`): allowed prefixes,
forbidden prefixes and forbidden number types, each rule dated. This module is the pure judge.

A campaign's caller ID: None means "not stated" (a what-if that did not say): the gate cannot check it and
denies with MISSING_DATA (fail closed); "" means no number is presented (a masked call): CALLER_ID_NOT_ALLOWED;
NOT_JUDGED ("*") is for questions about a list, not a campaign (a scrub without a campaign).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberType

from rules.model import Reason

CODE = "CALLER_ID_NOT_ALLOWED"
# Campaign.caller_id of a question about a list rather than a campaign (a list scrub without a campaign): the
# caller ID is not judged. Never the value of a real campaign (dialer/campaigns.py validates E.164).
NOT_JUDGED = "*"

# the pack vocabulary of number types -> phonenumbers' types
NUMBER_TYPES: dict[str, int] = {
    "fixed_line": PhoneNumberType.FIXED_LINE,
    "mobile": PhoneNumberType.MOBILE,
    "toll_free": PhoneNumberType.TOLL_FREE,
    "premium_rate": PhoneNumberType.PREMIUM_RATE,
    "shared_cost": PhoneNumberType.SHARED_COST,
    "voip": PhoneNumberType.VOIP,
    "personal_number": PhoneNumberType.PERSONAL_NUMBER,
    "pager": PhoneNumberType.PAGER,
    "uan": PhoneNumberType.UAN,
    "voicemail": PhoneNumberType.VOICEMAIL,
}
_TYPE_NAMES = {v: k.replace("_", " ") for k, v in NUMBER_TYPES.items()}
_TYPE_NAMES[PhoneNumberType.FIXED_LINE_OR_MOBILE] = "fixed line or mobile"


def _parsed(caller_id: str) -> tuple[str | None, int | None, bool]:
    """(region, number type, internationally diallable) of a valid number; (None, None, False) otherwise."""
    try:
        number = phonenumbers.parse(caller_id, None)
    except phonenumbers.NumberParseException:
        return None, None, False
    if not phonenumbers.is_valid_number(number):
        return None, None, False
    return (phonenumbers.region_code_for_number(number), phonenumbers.number_type(number),
            phonenumbers.can_be_internationally_dialled(number))


def valid_number(caller_id: str) -> bool:
    """An E.164 caller ID phonenumbers knows as assigned-range (campaign configuration checks it)."""
    return _parsed(caller_id.strip())[0] is not None


# (caller ID, country of the called number, id of the rule) -> (rule, problem): a campaign presents one caller ID
# to many contacts, so each (caller ID, place, rule) is judged once. The rule is kept to detect a reused id().
_JUDGED: dict[tuple[str | None, str, int], tuple[Any, tuple[str, str] | None]] = {}
_JUDGED_MAX = 65_536


def problem(caller_id: str | None, called_country: str, params: dict[str, Any]) -> tuple[str, str] | None:
    """(reason code, text) when `caller_id` breaks a caller_id rule with these params, else None. Pure."""
    if caller_id == NOT_JUDGED:
        return None
    if caller_id is None:
        return "MISSING_DATA", "the campaign's caller ID is not known: the caller-ID rules cannot be checked"
    shown = caller_id.strip()
    if not shown:
        return CODE, "no caller ID presented (a masked number is not allowed)"
    region, kind, international = _parsed(shown)
    if region is None:
        return CODE, f"caller ID {shown} is not a valid, diallable phone number"
    if region != called_country and not international:
        return CODE, f"caller ID {shown} cannot be dialled from {called_country} (no international access)"
    if kind in params["_forbidden_types"]:
        return CODE, f"caller ID {shown} is a {_TYPE_NAMES.get(kind, 'forbidden')} number"
    digits = "+" + shown.lstrip("+")
    for prefix in params["forbidden_prefixes"]:
        if digits.startswith(prefix):
            return CODE, f"caller ID {shown} is in the forbidden range {prefix}"
    allowed = params["allowed_prefixes"]
    if allowed and not digits.startswith(tuple(allowed)):
        label = params["allowed_label"] or ", ".join(allowed)
        return CODE, f"caller ID {shown} is not in the ranges allowed for these calls ({label})"
    return None


def check_caller_id(ctx: Any, pack: Any, rule: Any, t: datetime, out: list) -> None:
    """The engine's check for kind `caller_id` (rules.engine.CHECKS): a permanent reason (a new caller ID on the
    campaign clears it, not time)."""
    caller_id = ctx.campaign.caller_id
    country = ctx.situation.places[0][0]
    key = (caller_id, country, id(rule))
    found = _JUDGED.get(key)
    if found is None or found[0] is not rule:
        if len(_JUDGED) >= _JUDGED_MAX:
            _JUDGED.clear()
        found = _JUDGED[key] = (rule, problem(caller_id, country, rule.params))
    if found[1] is not None:
        code, text = found[1]
        # a masked, unknown or invalid caller ID breaks every caller_id rule alike: say it once
        if not any(r.text == text and r.code == code for r, _ in out):
            out.append((Reason(code=code, text=text, rule=rule.id, source=rule.source), ()))
