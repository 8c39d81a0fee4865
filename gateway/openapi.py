"""The OpenAPI 3 document, generated from the route table so it always matches the implementation."""

from __future__ import annotations

import re
from typing import Any

from gateway.api.schemas import ERROR
from gateway.routing import PATH_VALUE, Route

_PARAM = re.compile(r"\{(\w+)\}")

# Error answers every authenticated route can give, besides its own success answer.
_COMMON_ERRORS = {
    "401": "missing or invalid token",
    "403": "the caller's role may not do this",
    "429": "too many failed authentications from this address or for this token id (too_many_failures); "
           "see Retry-After",
    "500": "internal error (never a traceback)",
}
# Every route that reads Redis: saturated pool (busy) or Redis down (redis_unavailable), with Retry-After.
_UNAVAILABLE = "the gateway is saturated (busy) or Redis is unavailable (redis_unavailable); see Retry-After"
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
_BODY_ERRORS = {
    "400": "the body is not JSON",
    "413": "the body is too large",
    "422": "a field is wrong, unknown or missing",
}


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "tags": [route.tag],
    }
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "pattern": PATH_VALUE.pattern}}
              for n in _PARAM.findall(route.path)]
    params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in route.query.items()]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": bool(route.body.get("required")),
                             "content": {"application/json": {"schema": route.body}}}
    elif route.raw_body is not None:
        op["requestBody"] = {"required": True, "content": route.raw_body}
    success: dict[str, Any] = {"description": "success"}
    if route.response is not None:
        success["content"] = {route.content_type: {"schema": route.response}}
    elif route.content_type != "application/json":
        success["content"] = {route.content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(route.status): success}
    if route.permission is not None:
        responses.update({code: _error(text) for code, text in _COMMON_ERRORS.items()})
        op["security"] = [{"bearer": []}]
    else:
        op["security"] = []
        responses["500"] = _error(_COMMON_ERRORS["500"])
    if route.permission is not None or route.path == "/metrics":
        responses["503"] = {**_error(_UNAVAILABLE), "headers": _RETRY_AFTER}
        if "429" in responses:
            responses["429"] = {**responses["429"], "headers": _RETRY_AFTER}
    if route.body is not None or route.raw_body is not None or route.query:
        responses.update({code: _error(text) for code, text in _BODY_ERRORS.items()})
    if params and any(p["in"] == "path" for p in params):
        responses["404"] = _error("not found (or another tenant's)")
    for code, text in route.errors.items():
        responses[code] = {**_error(text), "headers": _RETRY_AFTER} if code == "503" else _error(text)
    if route.method in ("POST", "PATCH", "PUT", "DELETE"):
        responses["409"] = _error("the resource's state does not allow this")
    op["responses"] = responses
    return op


def document(routes: list[Route], version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Compliance dialer gateway",
            "version": version,
            "description": "Tenants, campaigns, opt-outs and consents. Errors are JSON: "
                           '{"error": {"code", "message", "field"?}}.',
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "dlr_... API token"}},
        },
    }
