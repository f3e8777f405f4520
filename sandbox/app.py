"""The sandbox application factory."""

from __future__ import annotations

import logging

from flask import Flask

from schemas.http import register_error_handlers

from . import api, controls, public
from .config import SandboxConfig
from .runtime import Sandbox

MAX_BODY_BYTES = 1024 * 1024


def create_app(config: SandboxConfig | None = None, start: bool = True) -> Flask:
    """Build the sandbox API. ``start`` launches its agent, webhook and sweeper threads."""
    config = config or SandboxConfig.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    box = Sandbox(config)
    app.extensions["sandbox"] = box
    register_error_handlers(app)
    app.register_blueprint(public.bp)
    app.register_blueprint(controls.bp)
    app.register_blueprint(api.bp)
    if start:
        box.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return app
