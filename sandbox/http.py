"""Request helpers shared by the sandbox's blueprints."""

from __future__ import annotations

from flask import current_app, request

from schemas.http import json_body

from .runtime import Sandbox

__all__ = ["base_url", "json_body", "sandbox"]


def sandbox() -> Sandbox:
    return current_app.extensions["sandbox"]


def base_url() -> str:
    return sandbox().config.public_url.rstrip("/") or request.host_url.rstrip("/")
