"""Every error the API answers: a JSON body {"error": {"code", "message"[, "field"]}} and the right status.

Handlers raise ApiError (or one of the helpers below); the middleware turns it, aiohttp's own
HTTP errors (unknown route, wrong method, body too large) and any unexpected exception into that
shape. Redis unreachable or the connection pool saturated is a 503 with Retry-After (gateway/pool.py).
An unexpected exception is logged (the log filter masks numbers and secrets) and answered as a bare
500: the client never sees a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from dialer.record.store import RecordUnavailable
from gateway import pool

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than success. `field` names the offending request field when there is one.

    `code` is stable (every code has a text in the console's catalogues, tests/test_console_errors.py); `rule`
    says which check a field failed ("maximum", "pattern"...) and `params` its figures ({"limit": 20}), so a
    client can say it in its user's language instead of showing `message`, which is in English."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, rule: str | None = None,
                 params: Mapping[str, str | int | float] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.rule = rule
        self.params = params

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.rule is not None:
            error["rule"] = self.rule
        if self.params:
            error["params"] = dict(self.params)
        return {"error": error}


def bad_json(message: str = "the request body is not valid JSON") -> ApiError:
    return ApiError(400, "bad_json", message)


def invalid(field: str, message: str, code: str = "invalid_field", rule: str | None = None,
            params: Mapping[str, str | int | float] | None = None) -> ApiError:
    return ApiError(422, code, f"{field}: {message}" if field else message, field=field or None, rule=rule,
                    params=params)


def unauthorized(message: str = "missing or invalid API token") -> ApiError:
    return ApiError(401, "unauthorized", message)


def forbidden(permission: str) -> ApiError:
    return ApiError(403, "forbidden", f"your role may not do this (needs permission {permission})")


def not_found(what: str = "resource") -> ApiError:
    # The same answer whether the thing is absent or belongs to another tenant.
    return ApiError(404, "not_found", f"{what} not found")


def conflict(code: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(409, code, message, field=field)


def too_large(limit_bytes: int) -> ApiError:
    return ApiError(413, "too_large", f"the request body is larger than the limit of {limit_bytes} bytes")


def json_error(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=headers)


# aiohttp's own exceptions mapped to our codes.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return json_error(exc, {**headers, **exc.headers} or None)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            return json_error(ApiError(413, "too_large", "the request body is larger than the upload limit"))
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else "no such route"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_error(ApiError(exc.status, code, message), headers)
    except pool.UNAVAILABLE as exc:
        # A dependency, not a bug: 503 and a line in the log, without a traceback (gateway/pool.py).
        if pool.is_saturation(exc):
            pool.unavailable_log.warning("busy", "gateway saturated: no free Redis connection in time on %s %s",
                                         request.method, request.path)
            return json_error(ApiError(503, "busy", "the gateway is busy; retry in a moment"),
                              {"Retry-After": str(pool.RETRY_AFTER_BUSY)})
        pool.unavailable_log.warning("down", "Redis unavailable (%s: %s) on %s %s", type(exc).__name__,
                                     str(exc)[:200], request.method, request.path)
        return json_error(ApiError(503, "redis_unavailable", "the dialer's database (Redis) is unavailable; "
                                   "retry later"), {"Retry-After": str(pool.RETRY_AFTER_DOWN)})
    except RecordUnavailable as exc:
        # the record (contacts, reports: docs/record.md) is a dependency too: 503, one line, no traceback
        log.warning("record unavailable on %s %s: %s", request.method, request.path, str(exc)[:200])
        return json_error(ApiError(503, "record_unavailable", f"the record cannot be read now: {exc}"),
                          {"Retry-After": "5"})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(ApiError(500, "internal", "internal error; the operator has the details in the log"))
