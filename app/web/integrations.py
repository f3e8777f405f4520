"""The no-code app definitions, generated for this relay's public URL: Zapier, Make and Slack."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.core.errors import NotFound
from app.integrations.make import make_app
from app.integrations.slack_manifest import manifest_yaml
from app.integrations.zapier import zapier_app
from app.web.base import ctx
from app.web.openapi import ERROR, JSON, NOCODE
from app.web.routing import Routes

bp = Blueprint("integrations", __name__, url_prefix="/connectors")
route = Routes(bp, NOCODE, auth=False)


def _public_url() -> str:
    return ctx().config.public_url


@route(
    "GET",
    "/zapier/app.json",
    "The Zapier app definition",
    {200: None},
    response_type={200: JSON},
)
def zapier_definition():
    return jsonify(zapier_app(_public_url()))


@route(
    "GET",
    "/make/",
    "The Make app: every file of the project",
    {200: None},
    response_type={200: JSON},
)
def make_project():
    """The whole Make project: every file by path, `makecomapp.json` being the manifest."""
    return jsonify({"files": make_app(_public_url())})


@route(
    "GET",
    "/make/<path:name>",
    "One file of the Make app",
    {200: None, 404: ERROR},
    response_type={200: JSON},
)
def make_file(name: str):
    files = make_app(_public_url())
    if name not in files:
        raise NotFound(
            "not_found",
            f"The Make project has no file {name!r}; GET /connectors/make/ lists them.",
        )
    return jsonify(files[name])


@route(
    "GET",
    "/slack/manifest.yml",
    "The Slack app manifest",
    {200: None},
    response_type={200: "application/yaml"},
)
def slack_manifest():
    return Response(manifest_yaml(_public_url()), mimetype="application/yaml")
