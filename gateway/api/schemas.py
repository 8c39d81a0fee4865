"""Schemas shared by several route modules (OpenAPI 3.0 subset, see gateway/validation.py)."""

from __future__ import annotations

from gateway.validation import Schema

ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
                "rule": {"type": "string", "description": "the check the field failed (maximum, pattern...), for "
                                                          "clients that word errors in their user's language"},
                "params": {"type": "object", "additionalProperties": {},
                           "description": "the rule's figures, e.g. {\"limit\": 20}"},
            },
        }
    },
}

STAMP: Schema = {"type": "string", "description": "UTC instant, ISO 8601"}


def listing(item: Schema) -> Schema:
    return {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": item}}}
