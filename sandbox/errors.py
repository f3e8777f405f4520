"""JSON errors for every failure: ``{"error": {"code", "message", "field"?, ...}}``. Never an HTML page."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from schemas import SchemaViolation

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers, self.extra = headers or {}, extra

    def body(self) -> dict:
        error: dict[str, Any] = {"code": self.code, "message": self.message, **self.extra}
        if self.field:
            error["field"] = self.field
        return {"error": error}


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(exc.body()), exc.status, exc.headers

    @app.errorhandler(SchemaViolation)
    def invalid(exc: SchemaViolation):
        first = exc.errors[0]
        body = {"error": {"code": "invalid_request", "message": f"{first.field} {first.message}",
                          "field": first.field, "errors": [e.as_dict() for e in exc.errors]}}
        return jsonify(body), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify({"error": {"code": code, "message": exc.description}}), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify({"error": {"code": "internal_error", "message": "Something went wrong on our side."}}), 500
