"""The OpenAPI 3.1 document of the relay's HTTP API, generated from `schemas/` and one table of routes.

OpenAPI 3.1 speaks JSON Schema 2020-12, so request and response bodies are our schema files as they are
(references between them inlined). A test checks that every route the app serves is in the table."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import schemas

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


V1, HOOKS, ADMIN, NOCODE, SLACK = (
    "API",
    "Webhooks from the API",
    "Operations",
    "No-code apps",
    "Slack",
)
ROUTES = [
    Route(
        "GET",
        "/v1/me",
        "The tenant behind the API key, and its usage",
        V1,
        {200: "relay/me.json", 401: ERROR},
    ),
    Route(
        "POST",
        "/v1/documents",
        "Generate or change a document",
        V1,
        {
            200: "relay/task.json",
            202: "relay/submit-accepted.json",
            400: ERROR,
            401: ERROR,
            402: ERROR,
            404: ERROR,
            409: ERROR,
            422: ERROR,
        },
        body="relay/submit-request.json",
        description="Answers 202 at once (or 200 with the finished task when `wait` sufficed). "
        "Send an Idempotency-Key header to make retries safe.",
    ),
    Route(
        "GET",
        "/v1/tasks/{task_id}",
        "A task: status, progress, result, deliveries",
        V1,
        {200: "relay/task.json", 401: ERROR, 404: ERROR},
    ),
    Route(
        "GET",
        "/v1/records/{record_key}",
        "A record's documents and tasks",
        V1,
        {200: "relay/record.json", 400: ERROR, 401: ERROR, 404: ERROR},
    ),
    Route(
        "DELETE",
        "/v1/records/{record_key}",
        "Forget a record: its next prompt starts new documents",
        V1,
        {204: None, 400: ERROR, 401: ERROR, 404: ERROR},
    ),
    Route(
        "GET",
        "/v1/events",
        "Task events, newest first (polling triggers)",
        V1,
        {200: "items:relay/event.json", 400: ERROR, 401: ERROR},
        query="relay/events-query.json",
    ),
    Route(
        "GET",
        "/v1/tasks",
        "The tenant's tasks, newest first, filtered, a page at a time",
        V1,
        {200: "relay/tasks-page.json", 400: ERROR, 401: ERROR},
        query="relay/tasks-query.json",
    ),
    Route(
        "POST",
        "/v1/tasks/{task_id}/cancel",
        "Cancel a task at the API",
        V1,
        {202: "relay/task.json", 401: ERROR, 404: ERROR, 409: ERROR, 502: ERROR},
        description="409 `task_ended` once the task has ended. A task the API has not taken yet is cancelled "
        "here.",
    ),
    Route(
        "GET",
        "/v1/records",
        "The tenant's records, the most recently used first",
        V1,
        {200: "relay/records-page.json", 400: ERROR, 401: ERROR},
        query="relay/records-query.json",
    ),
    Route(
        "GET",
        "/v1/usage",
        "Usage by day, record or format: credits, tasks and agent time",
        V1,
        {200: "relay/usage-report.json", 400: ERROR, 401: ERROR},
        query="relay/usage-query.json",
        description="Daily rows outlive the tasks they count (kept 13 months by default), so reports add up "
        "after the tasks are gone. `Accept: text/csv` answers the items as CSV.",
    ),
    Route(
        "GET",
        "/v1/budgets",
        "Credit budgets, with where each stands this month",
        V1,
        {200: "items:relay/budget.json", 401: ERROR},
    ),
    *(
        route
        for path, who in (
            ("/v1/budgets/tenant", "the tenant's"),
            ("/v1/budgets/records/{record_key}", "a record's"),
        )
        for route in (
            Route(
                "PUT",
                path,
                f"Set {who} monthly credit budget",
                V1,
                {200: "relay/budget.json", 400: ERROR, 401: ERROR, 404: ERROR},
                body="relay/budget-put.json",
                description="Alerts at each share once a month (budget.threshold); with hard_cap, submits past the "
                "budget answer 402 budget_exceeded until the month resets.",
            ),
            Route(
                "GET",
                path,
                f"{who.capitalize()} budget and this month's spend",
                V1,
                {200: "relay/budget.json", 401: ERROR, 404: ERROR},
            ),
            Route("DELETE", path, f"Remove {who} budget", V1, {204: None, 401: ERROR, 404: ERROR}),
        )
    ),
    Route(
        "GET",
        "/v1/formats",
        "The document formats, labelled",
        V1,
        {200: None, 401: ERROR},
        response_type={200: JSON},
    ),
    Route(
        "POST",
        "/v1/exports",
        "A link to a finished document in another format",
        V1,
        {201: None, 400: ERROR, 401: ERROR, 404: ERROR, 409: ERROR, 502: ERROR},
        body="relay/export-create.json",
        response_type={201: JSON},
    ),
    Route(
        "POST",
        "/v1/batches",
        "One document per row of JSON or CSV (text/csv, multipart), at the API's pace",
        V1,
        {
            202: "relay/batch.json",
            400: ERROR,
            401: ERROR,
            402: ERROR,
            404: ERROR,
            409: ERROR,
            413: ERROR,
            422: ERROR,
        },
        body="relay/batch-create.json",
    ),
    Route(
        "GET",
        "/v1/batches/{batch_id}",
        "A batch's progress",
        V1,
        {200: "relay/batch.json", 401: ERROR, 404: ERROR},
    ),
    Route(
        "GET",
        "/v1/batches/{batch_id}/rows",
        "A batch's rows, by state, a page at a time",
        V1,
        {200: "items:relay/batch-row.json", 400: ERROR, 401: ERROR, 404: ERROR},
        query="relay/batch-rows-query.json",
    ),
    Route(
        "POST",
        "/v1/batches/{batch_id}/retry",
        "Run the failed rows again",
        V1,
        {202: "relay/batch.json", 401: ERROR, 404: ERROR},
    ),
    Route(
        "POST",
        "/v1/batches/{batch_id}/cancel",
        "Cancel the rows that have not ended",
        V1,
        {202: "relay/batch.json", 401: ERROR, 404: ERROR, 409: ERROR},
    ),
    Route(
        "GET",
        "/v1/batches/{batch_id}/files.zip",
        "Every finished file and the manifest, streamed",
        V1,
        {200: None, 401: ERROR, 404: ERROR},
        response_type={200: "application/zip"},
    ),
    Route(
        "GET",
        "/v1/batches/{batch_id}/manifest.csv",
        "Row, record, status, file link, credits and error",
        V1,
        {200: None, 401: ERROR, 404: ERROR},
        response_type={200: CSV},
    ),
    Route(
        "POST",
        "/v1/destinations",
        "Save a destination",
        V1,
        {201: "relay/destination.json", 400: ERROR, 401: ERROR},
        body="relay/destination-create.json",
    ),
    Route(
        "GET",
        "/v1/destinations",
        "Saved destinations, of some kinds or all",
        V1,
        {200: "items:relay/destination.json", 400: ERROR, 401: ERROR},
        query="relay/destinations-query.json",
    ),
    Route(
        "GET",
        "/v1/destinations/{destination_id}",
        "A saved destination",
        V1,
        {200: "relay/destination.json", 401: ERROR, 404: ERROR},
    ),
    Route(
        "PATCH",
        "/v1/destinations/{destination_id}",
        "Change a saved destination (name, config, export)",
        V1,
        {200: "relay/destination.json", 400: ERROR, 401: ERROR, 404: ERROR},
        body="relay/destination-update.json",
    ),
    Route(
        "DELETE",
        "/v1/destinations/{destination_id}",
        "Delete a saved destination",
        V1,
        {204: None, 401: ERROR, 404: ERROR},
    ),
    Route(
        "POST",
        "/v1/hooks",
        "Subscribe a URL to task events (REST hooks)",
        V1,
        {201: "relay/hook.json", 400: ERROR, 401: ERROR},
        body="relay/hook-create.json",
    ),
    Route("GET", "/v1/hooks", "Hook subscriptions", V1, {200: "items:relay/hook.json", 401: ERROR}),
    Route("DELETE", "/v1/hooks/{hook_id}", "Unsubscribe", V1, {204: None, 401: ERROR, 404: ERROR}),
    Route(
        "GET",
        "/v1/deliveries",
        "The dead-letter list",
        V1,
        {200: "items:relay/delivery.json", 401: ERROR},
    ),
    Route(
        "GET",
        "/v1/deliveries/{delivery_id}",
        "A delivery",
        V1,
        {200: "relay/delivery.json", 401: ERROR, 404: ERROR},
    ),
    Route(
        "POST",
        "/v1/deliveries/{delivery_id}/replay",
        "Run a failed delivery again",
        V1,
        {202: "relay/delivery.json", 401: ERROR, 404: ERROR, 409: ERROR},
    ),
    Route(
        "GET",
        "/files/{token}",
        "A signed link: redirects to a fresh download",
        V1,
        {302: None, 404: ERROR, 410: ERROR, 502: ERROR},
        auth=False,
    ),
    Route(
        "POST",
        "/webhooks/upstream/{token}",
        "The API's signed task events (Standard Webhooks)",
        HOOKS,
        {200: None, 400: ERROR, 401: ERROR, 413: ERROR},
        body="upstream/task-event-received.json",
        auth=False,
        response_type={200: JSON},
    ),
    Route(
        "POST",
        "/slack/commands",
        "The /overten slash command (signed by Slack)",
        SLACK,
        {200: None, 400: ERROR, 401: ERROR, 404: ERROR},
        body="slack/command.json",
        body_type=FORM,
        auth=False,
        response_type={200: JSON},
    ),
    Route(
        "POST",
        "/slack/install-links",
        "A link that installs the Slack app for this tenant",
        SLACK,
        {201: None, 401: ERROR},
        response_type={201: JSON},
    ),
    Route(
        "GET",
        "/slack/install",
        "Start installing the Slack app (redirects to Slack)",
        SLACK,
        {302: None, 400: ERROR, 403: None, 404: None},
        query="slack/install-link.json",
        auth=False,
        response_type={403: HTML, 404: HTML},
    ),
    Route(
        "GET",
        "/slack/oauth/callback",
        "Slack's OAuth redirect",
        SLACK,
        {200: None, 400: None, 403: None, 404: None, 409: None},
        query="slack/oauth-callback.json",
        auth=False,
        response_type={200: HTML, 400: HTML, 403: HTML, 404: HTML, 409: HTML},
    ),
    Route(
        "GET",
        "/connectors/zapier/app.json",
        "The Zapier app definition",
        NOCODE,
        {200: None},
        auth=False,
        response_type={200: JSON},
    ),
    Route(
        "GET",
        "/connectors/make/",
        "The Make app: every file of the project",
        NOCODE,
        {200: None},
        auth=False,
        response_type={200: JSON},
    ),
    Route(
        "GET",
        "/connectors/make/{name}",
        "One file of the Make app",
        NOCODE,
        {200: None, 404: ERROR},
        auth=False,
        response_type={200: JSON},
    ),
    Route(
        "GET",
        "/connectors/slack/manifest.yml",
        "The Slack app manifest",
        NOCODE,
        {200: None},
        auth=False,
        response_type={200: "application/yaml"},
    ),
    Route(
        "GET",
        "/healthz",
        "The process is up",
        ADMIN,
        {200: None},
        auth=False,
        response_type={200: JSON},
    ),
    Route(
        "GET",
        "/readyz",
        "Redis answers and a worker is alive",
        ADMIN,
        {200: None, 503: None},
        auth=False,
        response_type={200: JSON, 503: JSON},
    ),
    Route(
        "GET",
        "/metrics",
        "Prometheus metrics",
        ADMIN,
        {200: None},
        auth=False,
        response_type={200: "text/plain"},
    ),
    Route(
        "GET",
        "/openapi.json",
        "This document",
        ADMIN,
        {200: None},
        auth=False,
        response_type={200: JSON},
    ),
]


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


def _parameters(route: Route) -> list[dict]:
    record_key = schemas.resolved("relay/record-key.json")["properties"]["record_key"]
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": record_key if name == "record_key" else {"type": "string", "minLength": 1},
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
    for route in ROUTES:
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
