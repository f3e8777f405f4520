"""The HTTP status of each kind of RelayError, and the one Flask handler that answers them in the JSON
error format of schemas.http (the webhook intake, outside Flask, answers through ``wire`` too)."""

from __future__ import annotations

from flask import Flask
from redis.exceptions import RedisError

from app.core.errors import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    OverBudget,
    RelayError,
    TooLarge,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UpstreamFailed,
)
from app.web.base import storage_error
from schemas.http import ApiError, internal_error, respond

STATUS: dict[type[RelayError], int] = {
    Invalid: 400,
    Unauthorized: 401,
    OverBudget: 402,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    TooLarge: 413,
    Unprocessable: 422,
    UpstreamFailed: 502,
    Unavailable: 503,
}


def status_of(error: RelayError) -> int:
    """The status of the error's kind: the nearest class in its ancestry that the table names."""
    return next(STATUS[kind] for kind in type(error).__mro__ if kind in STATUS)


def wire(error: RelayError) -> ApiError:
    """The error in the JSON error format: ``{"error": {"code", "message", ...details, "field"?}}``."""
    return ApiError(
        status_of(error),
        error.code,
        error.message,
        field=error.field,
        headers=error.headers,
        **error.details,
    )


def install_error_handlers(app: Flask) -> None:
    """Next to schemas.http's handlers (werkzeug's errors, schema violations, bugs as 500)."""
    app.register_error_handler(RelayError, _relay_error)
    # Redis trouble is no RelayError (redis raises it), but a full or read-only Redis is answered as one
    app.register_error_handler(RedisError, _storage_unavailable)


def _relay_error(exc: RelayError):
    return respond(wire(exc))


def _storage_unavailable(exc: RedisError):
    error = storage_error(exc)
    return internal_error() if error is None else respond(wire(error))
