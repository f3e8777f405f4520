"""Request helpers shared by the sandbox's blueprints."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

import schemas

from .errors import ApiError
from .runtime import Sandbox


def sandbox() -> Sandbox:
    return current_app.extensions["sandbox"]


def base_url() -> str:
    return sandbox().config.public_url.rstrip("/") or request.host_url.rstrip("/")


def json_body(schema: str) -> dict[str, Any]:
    """The request body parsed as a JSON object and checked against ``schema``."""
    raw = request.get_data()
    if not raw.strip():
        raise ApiError(400, "invalid_json", "The request body is empty; send a JSON object.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    schemas.validate(schema, body)
    return body
