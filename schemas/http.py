"""The JSON error format and request-body parsing that the relay and the sandbox both speak.

Every failure is ``{"error": {"code", "message", "field"?, ...}}`` with a 4xx/5xx status: never HTML.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from . import SchemaViolation, load, validate

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers, self.extra = headers or {}, extra

    def body(self) -> dict:
        error: dict[str, Any] = {"code": self.code, "message": self.message, **self.extra}
        if self.field:
            error["field"] = self.field
        return {"error": error}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return respond(exc)

    @app.errorhandler(SchemaViolation)
    def invalid(exc: SchemaViolation):
        first = exc.errors[0]
        body = {
            "error": {
                "code": "invalid_request",
                "message": f"{first.field} {first.message}",
                "field": first.field,
                "errors": [e.as_dict() for e in exc.errors],
            }
        }
        return jsonify(body), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return respond(from_http_exception(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        return internal_error()


def from_http_exception(exc: HTTPException) -> ApiError:
    """werkzeug's 404, 405, 413 and the like in the JSON error format (with their headers, such as Allow)."""
    code = (exc.name or "error").lower().replace(" ", "_")
    headers = dict(exc.get_headers()[1:])  # the first is its HTML content type
    return ApiError(exc.code or 500, code, exc.description or code, headers=headers)


def bug() -> ApiError:
    """The answer to a bug: logged with its traceback, told to the caller without one."""
    log.exception("unhandled error")
    return ApiError(500, "internal_error", "Something went wrong on our side.")


def respond(error: ApiError):
    """An ApiError as Flask's answer: its JSON body, status and headers."""
    return jsonify(error.body()), error.status, error.headers


def internal_error():
    return respond(bug())


MAX_DEPTH = 32
"""Levels of arrays and objects a request body may have: no schema needs a tenth of it, and a deeper one
would take the parser or a validator past Python's recursion limit (a 500, not a 400)."""


def parse_json(raw: bytes) -> Any:
    """Parse a request body, raising ApiError(400, invalid_json) with the reason."""
    if not raw.strip():
        raise ApiError(400, "invalid_json", "The request body is empty; send a JSON object.")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"The request body is not valid JSON: {exc}") from None
    if _depth_over(body, MAX_DEPTH):
        raise _too_deep()
    return body


def _too_deep() -> ApiError:
    return ApiError(
        400, "invalid_json", f"The request body is nested more than {MAX_DEPTH} levels deep."
    )


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` deep (a loop, not a recursion)."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return bool(level)


def json_body(schema: str) -> dict[str, Any]:
    """The current request's body as a JSON object, checked against ``schema``."""
    body = parse_json(request.get_data())
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    validate(schema, body)
    return body


def query_params(schema: str) -> dict[str, Any]:
    """The current request's query string, with integer parameters converted, checked against ``schema``."""
    properties = load(schema).get("properties", {})
    query: dict[str, Any] = dict(request.args)
    for name, value in query.items():
        if properties.get(name, {}).get("type") == "integer":
            try:
                query[name] = int(value)
            except ValueError:
                raise ApiError(
                    400, "invalid_request", f"{name} must be an integer", field=name
                ) from None
    validate(schema, query)
    return query
