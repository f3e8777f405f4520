"""Slack: the /overten slash command (signed requests, answered within 3 seconds) and the install flow."""

from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Blueprint, jsonify, redirect, request
from markupsafe import escape
from slack_sdk.signature import SignatureVerifier

import schemas
from app.core import metrics
from app.core.errors import NotFound, RelayError, Unauthorized
from app.domain.slack import install
from app.domain.slack.commands import VERBS, SlashCommand, acknowledge
from app.web import auditing
from app.web.base import authenticate, ctx
from app.web.errors import status_of
from app.web.openapi import ERROR, FORM, HTML, JSON, SLACK
from app.web.routing import Routes, body_schema, query_params

bp = Blueprint("slack", __name__, url_prefix="/slack")
route = Routes(bp, SLACK, auth=False)


@route(
    "POST",
    "/commands",
    "The /overten slash command (signed by Slack)",
    {200: None, 400: ERROR, 401: ERROR, 404: ERROR},
    body="slack/command.json",
    body_type=FORM,
    response_type={200: JSON},
)
def command():
    secret = ctx().config.slack_signing_secret
    if not secret:
        raise NotFound(
            "slack_not_configured",
            "Slack commands are not set up on this relay: set RELAY_SLACK_SIGNING_SECRET.",
        )
    body = request.get_data()  # the raw bytes: the signature covers them exactly
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not (timestamp.isdigit() and SignatureVerifier(secret).is_valid(body, timestamp, signature)):
        raise Unauthorized(
            "invalid_signature",
            "The request is not signed by Slack, or its timestamp is more than 5 minutes off.",
            field="X-Slack-Signature",
        )
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    schemas.validate(body_schema(), form)
    command = SlashCommand(
        team_id=form["team_id"],
        channel_id=form["channel_id"],
        user_id=form["user_id"],
        text=form.get("text", ""),
        response_url=form["response_url"],
        trigger_id=form.get("trigger_id", ""),
    )
    metrics.SLACK_COMMANDS.labels(command.verb if command.verb in VERBS else "other").inc()
    return jsonify(acknowledge(ctx(), command))


@route(
    "POST",
    "/install-links",
    "A link that installs the Slack app for this tenant",
    {201: None, 401: ERROR},
    auth=True,
    response_type={201: JSON},
)
def new_install_link():
    """For a tenant (bearer key): a link that installs the Slack app into a workspace for this tenant."""
    tenant = authenticate()
    return jsonify(
        {
            "url": install.install_link(ctx(), tenant.tenant_id),
            "expires_in_seconds": install.LINK_LIFE,
        }
    ), 201


@route(
    "GET",
    "/install",
    "Start installing the Slack app (redirects to Slack)",
    {302: None, 400: ERROR, 403: None, 404: None},
    query="slack/install-link.json",
    response_type={403: HTML, 404: HTML},
)
def start_install():
    query = query_params()
    try:
        return redirect(install.authorize_url(ctx(), query["link"]), code=302)
    except RelayError as exc:  # for a person in a browser: a page, not JSON
        return _page("Could not start the installation", exc.message), status_of(exc)


@route(
    "GET",
    "/oauth/callback",
    "Slack's OAuth redirect",
    {200: None, 400: None, 403: None, 404: None, 409: None},
    query="slack/oauth-callback.json",
    response_type={200: HTML, 400: HTML, 403: HTML, 404: HTML, 409: HTML},
)
def finish_install():
    query = query_params()
    if query.get("error") or not query.get("code"):
        return _page(
            "Installation cancelled", "Slack did not install the app. You can start again any time."
        )
    try:
        done = install.complete(ctx(), query["code"], query["state"])
    except RelayError as exc:
        return _page("Installation failed", exc.message), status_of(exc)
    auditing.installed(done.team_id, done.team_name, done.tenant_id)
    return _page(
        "Overten Relay is installed",
        f"It now answers /overten in {done.team_name or done.team_id}. "
        "Try /overten help in a channel.",
    )


def _page(title: str, message: str) -> str:
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>{escape(title)}</title><body style='font-family:system-ui;max-width:36rem;margin:3rem auto'>"
        f"<h1>{escape(title)}</h1><p>{escape(message)}</p></body></html>"
    )
