"""A small validator for request bodies, over the subset of JSON Schema that OpenAPI 3.0 shares.

The same schema dicts are published in /v1/openapi.json, so the document and the checks cannot
drift apart. Supported keywords: type (object, array, string, integer, number, boolean), properties,
required, additionalProperties (false or a schema), enum, minLength, maxLength, pattern, minimum,
maximum, items, minItems, maxItems, nullable, format (date-time is checked), default (documentation
only). The first problem found is raised as a 422 ApiError naming the field by its dotted path
(`retry_rules.busy`, `schedule_windows[0].start`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from gateway.errors import invalid

Schema = dict[str, Any]

# Instants a dialer can meaningfully be asked about: far outside them is a typo or a probe, and the extremes
# (year 1 or 9999 with an offset) overflow Python's datetime arithmetic.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100
MAX_DEPTH = 32  # nesting of a JSON body: our schemas need 4


def check_text(value: Any, path: str = "") -> None:
    """Refuse NUL characters and lone surrogates in every string and key of a JSON body (422 naming the field),
    and bodies nested deeper than MAX_DEPTH. Iterative: a deep body cannot exhaust the stack here."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise invalid(where or "body", f"nested deeper than {MAX_DEPTH} levels", code="too_deep")
        if isinstance(item, str):
            _check_string(item, where or "body")
        elif isinstance(item, dict):
            for key, sub in item.items():
                _check_string(key, _name(where, "(key)"))
                stack.append((sub, _name(where, key), depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, _name(where, i), depth + 1) for i, sub in enumerate(item))


def _check_string(text: str, where: str) -> None:
    if "\x00" in text:
        raise invalid(where, "contains a NUL character", code="bad_text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800" without its pair)
        raise invalid(where, "contains an unpaired surrogate (not valid Unicode text)", code="bad_text") from None

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _name(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_ok(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False  # JSON true is not the integer 1
    return isinstance(value, _PY_TYPES[kind])


# What a pattern asks for, in words: people read these in the console and API answers, not regular expressions.
# Each row: pattern -> (name, words). The name is stable: errors carry it as params.form, and the console has its
# text in each language (error.form.NAME in gateway/static/i18n/*.json). A pattern missing here still gets a
# sentence (and the pattern, for developers): add a row when adding one.
PATTERNS: dict[str, tuple[str, str]] = {
    r"^[A-Za-z0-9_-]{1,64}$": ("id64", "1 to 64 letters (a-z, A-Z), digits, '_' or '-', with no spaces or accents"),
    r"^[A-Za-z0-9_.-]{1,64}$": ("id64_dot", "1 to 64 letters (a-z, A-Z), digits, '.', '_' or '-', with no spaces or "
                                            "accents"),
    r"^[A-Za-z0-9_-]{1,80}$": ("id80", "1 to 80 letters (a-z, A-Z), digits, '_' or '-', with no spaces or accents"),
    r"^[A-Za-z0-9_/-]{1,100}$": ("sound", "1 to 100 letters (a-z, A-Z), digits, '_', '/' or '-' (a sound file name, "
                                          "no extension)"),
    r"^[A-Za-z0-9_.:@-]{1,128}$": ("id128", "1 to 128 letters, digits, '.', '_', ':', '@' or '-', with no spaces"),
    r"^[A-Za-z0-9_.@-]{1,64}$": ("login", "1 to 64 letters, digits, '.', '_', '@' or '-', with no spaces"),
    r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$": ("login_start", "1 to 64 letters, digits, '.', '_', '@' or '-', starting "
                                                           "with a letter or digit"),
    r"^\+[1-9][0-9]{6,14}$": ("e164", "a phone number in international form: '+', the country code and the number, 7 "
                                      "to 15 digits with no spaces (e.g. +33162000000)"),
    r"^([01][0-9]|2[0-3]):[0-5][0-9]$": ("hhmm", "a time of day as HH:MM on 24 hours (e.g. 09:30)"),
    "^[A-Za-z]{2}$": ("country", "a two-letter country code (e.g. FR)"),
    r"^\d{4}-\d{2}-\d{2}$": ("date", "a date as YYYY-MM-DD (e.g. 2026-01-31)"),
    r"^\d{4}-\d{2}$": ("month", "a month as YYYY-MM (e.g. 2026-12)"),
}
PATTERN_WORDS: dict[str, str] = {pattern: words for pattern, (_, words) in PATTERNS.items()}


def pattern_words(pattern: str) -> str:
    words = PATTERN_WORDS.get(pattern)
    return f"must be {words}" if words else f"has characters or a form not allowed here (pattern {pattern})"


def validate(value: Any, schema: Schema, path: str = "") -> None:
    """Raise ApiError(422) at the first place `value` does not match `schema`."""
    if value is None:
        if schema.get("nullable"):
            return
        raise invalid(path or "body", "must not be null", rule="not_null")
    kind = schema.get("type")
    if kind and not _type_ok(value, kind):
        article = "an" if kind[0] in "aeiou" else "a"
        raise invalid(path or "body", f"expected {article} {kind}", code="wrong_type", rule="type",
                      params={"type": kind})
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(map(str, schema["enum"]))
        raise invalid(path or "body", f"expected one of {choices}", rule="enum", params={"choices": choices})
    if kind == "string":
        if len(value) < schema.get("minLength", 0):
            if not value:
                raise invalid(path, "is empty", rule="empty")
            raise invalid(path, f"shorter than {schema['minLength']} characters", rule="min_length",
                          params={"limit": schema["minLength"]})
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise invalid(path, f"longer than {schema['maxLength']} characters", rule="max_length",
                          params={"limit": schema["maxLength"]})
        if "pattern" in schema and not re.search(schema["pattern"], value):
            form = PATTERNS.get(schema["pattern"], ("", ""))[0]
            raise invalid(path, pattern_words(schema["pattern"]), rule="pattern" if form else "form",
                          params={"form": form} if form else None)
        if schema.get("format") == "date-time":
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise invalid(path, "expected an ISO 8601 date-time such as 2026-01-31T09:00:00Z",
                              rule="date_time") from None
            if parsed.tzinfo is None:
                raise invalid(path, "needs a time zone (Z or +hh:mm)", rule="offset")
            try:
                year = parsed.astimezone(UTC).year
            except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first representable instant
                year = parsed.year
            if not EARLIEST_YEAR <= year <= LATEST_YEAR:
                raise invalid(path, f"must be between {EARLIEST_YEAR}-01-01 and {LATEST_YEAR}-12-31 (UTC)",
                              code="out_of_range", rule="years", params={"min": EARLIEST_YEAR, "max": LATEST_YEAR})
    elif kind in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise invalid(path, f"must be at least {schema['minimum']}", rule="minimum",
                          params={"limit": schema["minimum"]})
        if "maximum" in schema and value > schema["maximum"]:
            raise invalid(path, f"must be at most {schema['maximum']}", rule="maximum",
                          params={"limit": schema["maximum"]})
    elif kind == "array":
        if len(value) < schema.get("minItems", 0):
            raise invalid(path, f"needs at least {schema['minItems']} item(s)", rule="min_items",
                          params={"limit": schema["minItems"]})
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise invalid(path, f"has more than {schema['maxItems']} items", rule="max_items",
                          params={"limit": schema["maxItems"]})
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), _name(path, i))
    elif kind == "object":
        props: dict[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key in schema.get("required", ()):
            if key not in value:
                raise invalid(_name(path, key), "is required", code="missing_field")
        for key, item in value.items():
            if key in props:
                validate(item, props[key], _name(path, key))
            elif extra is False:
                raise invalid(_name(path, key), "unknown field", code="unknown_field")
            elif isinstance(extra, dict):
                validate(item, extra, _name(path, key))


def partial(schema: Schema) -> Schema:
    """The same object schema with nothing required: for PATCH bodies."""
    return {k: v for k, v in schema.items() if k != "required"}
