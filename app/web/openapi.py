"""The OpenAPI 3.1 document of the relay's HTTP API, generated from `schemas/` and the routes as declared.

OpenAPI 3.1 speaks JSON Schema 2020-12, so request and response bodies are our schema files as they are
(references between them inlined)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import schemas
from app.core import ids

JSON, FORM, HTML, CSV = (
    "application/json",
    "application/x-www-form-urlencoded",
    "text/html",
    "text/csv",
)
ERROR = "relay/error.json"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    tag: str
    responses: dict[int, str | None]
    """status -> response schema (None: no JSON body); every error status uses the error schema."""
    body: str | None = None
    body_type: str = JSON
    query: str | None = None
    auth: bool = True
    description: str = ""
    response_type: dict[int, str] = field(default_factory=dict)


def _items(schema: str) -> dict:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": ref(schema)}},
    }


def ref(schema: str) -> dict:
    return {"$ref": f"#/components/schemas/{_component(schema)}"}


def _component(schema: str) -> str:
    return schema.removesuffix(".json").replace("/", "_").replace("-", "_")


V1, HOOKS, SLACK, NOCODE, ADMIN = TAGS = (
    "API",
    "Webhooks from the API",
    "Slack",
    "No-code apps",
    "Operations",
)
"""In the document's order: its paths come tag by tag, each tag's in the order declared."""

ROUTES: list[Route] = []
"""Every documented route, declared at its handler (app.web.routing; the webhook intake in app.web.intake).
A test checks that every route the app serves is here."""


def _response(route: Route, status: int, schema: str | None) -> dict:
    description = {
        200: "OK",
        201: "Created",
        202: "Accepted",
        204: "No content",
        302: "Redirect",
    }.get(status, "Error" if schema == ERROR else "See the body")
    answer: dict[str, Any] = {"description": description}
    if status == 302:
        answer["headers"] = {"Location": {"schema": {"type": "string"}}}
    if schema and schema.startswith("items:"):
        answer["content"] = {JSON: {"schema": _items(schema.removeprefix("items:"))}}
    elif schema:
        answer["content"] = {JSON: {"schema": ref(schema)}}
    elif status in route.response_type:
        answer["content"] = {route.response_type[status]: {"schema": {}}}
    return answer


def _path_schema(name: str) -> dict:
    if name in ids.PATTERNS:
        return {"type": "string", "pattern": f"^{ids.PATTERNS[name]}$"}
    return {"type": "string", "minLength": 1}


def _parameters(route: Route) -> list[dict]:
    record_key = schemas.resolved("relay/record-key.json")["properties"]["record_key"]
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": record_key if name == "record_key" else _path_schema(name),
        }
        for name in (part[1:-1] for part in route.path.split("/") if part.startswith("{"))
    ]
    if route.query:
        query = schemas.resolved(route.query)
        params += [
            {
                "name": name,
                "in": "query",
                "required": name in query.get("required", []),
                "schema": spec,
            }
            for name, spec in query["properties"].items()
        ]
    if route.path == "/v1/documents":
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 255},
            }
        )
    return params


def _operation(route: Route) -> dict:
    words = re.findall(r"[a-z0-9]+", f"{route.method.lower()} {route.path}")
    statuses = dict(route.responses)
    if route.auth:
        statuses.setdefault(429, ERROR)  # the per-key rate limit
    if route.method == "POST":
        statuses.setdefault(413, ERROR)  # bodies over 1 MiB, everywhere
    if route.path not in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ) and not route.path.startswith("/connectors/"):
        # storage_unavailable: Redis full, read-only or gone (Retry-After)
        statuses.setdefault(503, ERROR)
    responses = {
        str(status): _response(route, status, schema) for status, schema in statuses.items()
    }
    operation: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": "_".join(words),
        "responses": responses,
    }
    if route.description:
        operation["description"] = route.description
    if params := _parameters(route):
        operation["parameters"] = params
    if route.body:
        operation["requestBody"] = {
            "required": True,
            "content": {route.body_type: {"schema": ref(route.body)}},
        }
    if not route.auth:
        operation["security"] = []
    return operation


def document(public_url: str) -> dict:
    paths: dict[str, dict] = {}
    used: set[str] = set()
    for route in sorted(ROUTES, key=lambda route: TAGS.index(route.tag)):
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
        used |= {s.removeprefix("items:") for s in route.responses.values() if s}
        used |= {s for s in (route.body,) if s}
    components = {_component(name): _schema(name) for name in sorted(used)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Overten Relay",
            "version": "1.0.0",
            "description": "Submit document generations, follow tasks and records, and fan finished files "
            'out. Every error is JSON: {"error": {"code", "message", "field"}}.',
        },
        "servers": [{"url": public_url.rstrip("/")}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A relay API key (relay tenants create).",
                }
            },
        },
    }


def _schema(name: str) -> dict:
    return {k: v for k, v in schemas.resolved(name).items() if k not in ("$id", "$schema")}
