"""The relay's web service: the application factory."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import schemas
from app.core import logs
from app.core.config import RelayConfig
from app.core.errors import TooLarge
from app.core.secret_strength import refuse_weak_secrets
from app.stores.context import Context, build_context
from app.web import (
    api,
    audit,
    batches,
    dashboard,
    dashboard_audit,
    fanout,
    files,
    health,
    intake,
    integrations,
    limits,
    listing,
    slack,
    spend,
)
from app.web.errors import install_error_handlers
from schemas.http import register_error_handlers

MAX_BODY_BYTES = 1024 * 1024
BATCH_BODY_BYTES = 16 * 1024 * 1024
"""POST /v1/batches: up to 10,000 rows."""


def create_app(config: RelayConfig | None = None, context: Context | None = None) -> Flask:
    config = context.config if context else config or RelayConfig.from_env()
    refuse_weak_secrets(config)  # before anything is served or signed with them
    ctx = context or build_context(config)
    schemas.warm()
    app = Flask(__name__)
    # one byte past the limit: werkzeug stops reading a chunked body at MAX_CONTENT_LENGTH without a word, so a
    # body cut there could not be told from one that fits
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["relay"] = ctx
    register_error_handlers(app)
    install_error_handlers(app)
    # gunicorn threads serve many requests: start each with no log fields
    app.before_request(logs.reset)
    app.before_request(_refuse_large_bodies)

    app.register_blueprint(health.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(batches.bp)
    app.register_blueprint(listing.bp)
    app.register_blueprint(spend.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(fanout.bp)
    app.register_blueprint(integrations.bp)
    app.register_blueprint(slack.bp)
    dashboard.install_dashboard(app)
    app.register_blueprint(dashboard_audit.bp)
    limits.install_limits(
        app, config, [api.bp, batches.bp, listing.bp, spend.bp, fanout.bp, audit.bp]
    )
    # the API's webhooks skip Flask's request machinery: the relay's hottest path (app/web/intake.py)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {intake.PREFIX: intake.UpstreamIntake(ctx)})  # type: ignore[method-assign]
    return app


def _refuse_large_bodies() -> None:
    """Every endpoint, also those that never read a body: over 1 MiB (a batch's 16 MiB) is 413 before any work
    is done. A chunked body has no length to look at first: it is read here (up to one byte past the limit)
    and kept."""
    limit = BATCH_BODY_BYTES if request.path == "/v1/batches" else MAX_BODY_BYTES
    request.max_content_length = limit + 1
    length = request.content_length
    if length is None and request.environ.get("wsgi.input_terminated"):
        length = len(request.get_data(cache=True))
    if (length or 0) > limit:
        raise TooLarge("payload_too_large", f"The request body is larger than {limit // 1024} KiB.")
