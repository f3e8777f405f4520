"""The Make custom app, as a local-development project of Make's Apps SDK (a `makecomapp.json` and one
IML JSON file per section), generated from `schemas/`.

A Make module has 40 seconds, so "Generate document" returns the task at once and a "Document completed"
instant trigger (a dedicated webhook attached through /v1/hooks) picks the finished document up.
"""

from __future__ import annotations

from typing import Any

import schemas
from app.core.formats import LABELS
from app.integrations.documents import DESTINATION_KINDS, SAMPLE_TASK
from connectors.registry import RECORD_KINDS

BATCH_COMPLETED_SAMPLE = {
    "batch_id": "bat_01JD3Y5R2Q8W6N4M7K9P0ZX1AB",
    "status": "completed",
    "total": 3,
    "counts": {"completed": 3, "failed": 0, "skipped": 0, "cancelled": 0},
    "percent_done": 100.0,
    "seconds_left": None,
    "credits_used": 129,
    "format": "word",
    "on_error": "continue",
    "created_at": 1764590400.0,
    "summary": "Batch bat_01JD3Y5R2Q8W6N4M7K9P0ZX1AB completed: 3 of 3 documents made, 129 credits. The manifest "
    "lists every row; all the files in one ZIP: https://relay.example/files/...",
    "manifest_url": "https://relay.example/files/...",
    "zip_url": "https://relay.example/files/...",
}
BATCH_SAMPLE = {
    **{
        k: v
        for k, v in BATCH_COMPLETED_SAMPLE.items()
        if k not in ("summary", "manifest_url", "zip_url")
    },
    "status": "running",
    "counts": {
        "pending": 3,
        "submitting": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
    },
    "percent_done": 0.0,
    "credits_used": 0,
    "links": {"batch": "https://relay.example/v1/batches/bat_01JD3Y5R2Q8W6N4M7K9P0ZX1AB"},
}
BUDGET_SAMPLE = {
    "scope": "record",
    "record_key": "hubspot:deal:42",
    "monthly_credits": 500,
    "start_day": 1,
    "alert_shares": [0.7, 0.9, 1.0],
    "hard_cap": True,
    "alert_destinations": [],
    "period": {"from": "2026-12-01", "resets_at": "2027-01-01T00:00:00.000Z"},
    "spent": 460,
    "share_spent": 0.92,
    "remaining": 40,
    "exceeded": False,
    "share": 0.9,
    "summary": "Record hubspot:deal:42 has spent 460 of its 500 monthly credits (90% reached) since 2026-12-01; "
    "the budget resets at 2027-01-01T00:00:00.000Z. Past 100% new submits are refused.",
}
_WEBHOOKS = (
    ("documentCompleted", "Document completed"),
    ("batchCompleted", "Batch completed"),
    ("budgetThreshold", "Budget threshold reached"),
)
TIMEOUT_MS = 40_000  # Make's own ceiling for one module call
_AUTH = "Bearer {{connection.apiKey}}"
_FAILING_DESTINATIONS = (
    "A saved destination fails its check: "
    "{{join(map(body.destinations; 'name'; 'verdict'; 'failure'); ', ')}}. "
    "POST /v1/destinations/{id}/check, or the relay's dashboard, says what failed and the fix."
)
_ERROR = "[{{statusCode}}] {{body.error.message}}{{if(body.error.field; ' (field: ' + body.error.field + ')'; '')}}"


_LISTS = {"listDestinations": DESTINATION_KINDS.split(", "), "listConnections": list(RECORD_KINDS)}
"""The dropdowns of saved destinations: where files go, and the write-back connections."""


def _options(values: list[str], labels: dict[str, str] | None = None) -> list[dict[str, str]]:
    return [{"label": (labels or {}).get(v, v), "value": v} for v in values]


def _parameter(name: str, spec: dict, required: bool = False) -> dict[str, Any]:
    """A JSON Schema property as a Make parameter (mappable input or output interface)."""
    kinds = [
        t
        for t in ([spec["type"]] if isinstance(spec.get("type"), str) else spec.get("type", []))
        if t != "null"
    ]
    kind = kinds[0] if kinds else "any"
    param: dict[str, Any] = {
        "name": name,
        "label": spec.get("title", name.replace("_", " ").capitalize()),
    }
    if spec.get("description"):
        param["help"] = spec["description"]
    if spec.get("enum"):
        param.update(
            type="select", options=_options([v for v in spec["enum"] if v is not None], LABELS)
        )
    elif kind == "object":
        param.update(
            type="collection",
            spec=[_parameter(k, v) for k, v in spec.get("properties", {}).items()],
        )
    elif kind == "array":
        param["type"] = "array"
    elif kind == "string":
        param["type"] = {"uri": "url", "date-time": "date"}.get(spec.get("format", ""), "text")
        if spec.get("maxLength", 0) > 1000:
            param["multiline"] = True
    else:
        param["type"] = {"integer": "integer", "number": "number", "boolean": "boolean"}.get(
            kind, "any"
        )
    if required:
        param["required"] = True
    return param


def _submit_params(names: tuple[str, ...], required: tuple[str, ...]) -> list[dict[str, Any]]:
    properties = schemas.load("relay/submit-request.json")["properties"]
    params = [_parameter(name, properties[name], name in required) for name in names]
    for param in params:
        if param["name"] == "destinations":
            param.update(
                spec=[
                    {
                        "name": "id",
                        "label": "Saved destination",
                        "type": "select",
                        "help": f"Where the finished file goes: {DESTINATION_KINDS}.",
                        "options": "rpc://listDestinations",
                        "required": True,
                    }
                ]
            )
        if param["name"] == "write_back":
            param.update(
                type="collection",
                spec=[
                    {
                        "name": "connection",
                        "label": "Connection (hubspot, airtable or sheets)",
                        "type": "select",
                        "options": "rpc://listConnections",
                        "required": True,
                    }
                ],
            )
    return params


def _interface(schema: str, leave: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A module's output: the relay object's schema, minus the delivery list no scenario maps (and ``leave``)."""
    properties = schemas.resolved(schema)["properties"]
    return [
        _parameter(name, spec)
        for name, spec in properties.items()
        if name not in ("deliveries", *leave)
    ]


def _event_interface(data_schema: str) -> list[dict[str, Any]]:
    """An instant trigger's output: the event (relay/event.json), its data as ``data_schema`` says."""
    event = [param for param in _interface("relay/event.json") if param["name"] != "data"]
    return [
        *event,
        {"name": "data", "label": "Data", "type": "collection", "spec": _interface(data_schema)},
    ]


def _webhook_files(name: str, event: str) -> dict[str, Any]:
    """A dedicated webhook attached through /v1/hooks for ``event``, detached when the scenario lets go."""
    folder = f"webhooks/{name}/{name}"
    return {
        f"{folder}.communication.iml.json": {
            "respond": {"status": 200, "type": "json", "body": {"ok": True}},
            "output": "{{body}}",
        },
        f"{folder}.attach.iml.json": {
            "url": "/v1/hooks",
            "method": "POST",
            "body": {"target_url": "{{webhook.url}}", "event": event},
            "response": {"data": {"externalHookId": "{{body.id}}"}},
        },
        f"{folder}.detach.iml.json": {
            "url": "/v1/hooks/{{webhook.externalHookId}}",
            "method": "DELETE",
        },
    }


def _query_params(schema: str, leave: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A search's filters: the query schema's properties, all optional."""
    properties = schemas.resolved(schema)["properties"]
    return [_parameter(name, spec) for name, spec in properties.items() if name not in leave]


def _batch_params() -> list[dict[str, Any]]:
    """A batch's inputs: the rows as an array (each item a record and its own prompt: Make reads ``{{...}}``
    as its own mapping, so there is no template), then the settings."""
    batch = schemas.load("relay/batch-create.json")["properties"]
    rows = {
        "name": "rows",
        "label": "Rows",
        "type": "array",
        "required": True,
        "help": "One document per item, up to 10,000: map an array (an Array aggregator's output), each item "
        "with its record key and its own prompt.",
        "spec": [
            {"name": "record_key", "label": "Record key", "type": "text", "required": True},
            {
                "name": "prompt",
                "label": "Prompt",
                "type": "text",
                "multiline": True,
                "required": True,
            },
        ],
    }
    [fmt] = _submit_params(("format",), ("format",))
    return [
        fmt,
        rows,
        *_submit_params(("destinations", "write_back"), ()),
        _parameter("on_error", batch["on_error"]),
        _parameter("skip_done", batch["skip_done"]),
    ]


def _module(
    key: str, label: str, description: str, module_type: str, sections: dict[str, Any], **meta: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = f"modules/{key}/{key}"
    files = {f"{folder}.{suffix}.iml.json": body for suffix, body in sections.items()}
    names = {
        "communication": "communication",
        "static-params": "staticParams",
        "mappable-params": "mappableParams",
        "interface": "interface",
        "samples": "samples",
    }
    code = {names[suffix]: f"{folder}.{suffix}.iml.json" for suffix in sections}
    metadata = {
        "label": label,
        "description": description,
        "moduleType": module_type,
        "connection": "relay",
        "codeFiles": code,
        **meta,
    }
    return metadata, files


def make_app(public_url: str) -> dict[str, Any]:
    """Every file of the project, by path; `makecomapp.json` is the manifest."""
    base = public_url.rstrip("/")
    interface, sample = _interface("relay/task.json"), dict(SAMPLE_TASK)
    task_filters = _query_params("relay/tasks-query.json", leave=("cursor",))
    files: dict[str, Any] = {
        "general/base.iml.json": {
            "baseUrl": base,
            "headers": {"Authorization": _AUTH},
            "timeout": TIMEOUT_MS,
            "response": {"error": {"message": _ERROR}},
            "log": {"sanitize": ["request.headers.authorization"]},
        },
        "general/groups.json": [
            {
                "label": "Documents",
                "modules": [
                    "generateDocument",
                    "continueDocument",
                    "getTask",
                    "searchTasks",
                    "cancelTask",
                    "generateDocumentsForRows",
                ],
            },
            {
                "label": "Triggers",
                "modules": ["documentCompleted", "batchCompleted", "budgetThreshold"],
            },
        ],
        # the connection test: the key works, and every saved destination passes its check
        "connections/relay/relay.communication.iml.json": {
            "url": f"{base}/v1/destinations/checks",
            "method": "POST",
            "body": {},
            "headers": {"Authorization": "Bearer {{parameters.apiKey}}"},
            "response": {
                "valid": {
                    "condition": "{{body.verdict != 'failure'}}",
                    "message": _FAILING_DESTINATIONS,
                },
                "metadata": {"type": "text", "value": "{{body.tenant}}"},
                "error": {"message": "[{{statusCode}}] {{body.error.message}}"},
            },
            "log": {"sanitize": ["request.headers.authorization"]},
        },
        "connections/relay/relay.params.iml.json": [
            {
                "name": "apiKey",
                "label": "Relay API key",
                "type": "password",
                "required": True,
                "help": "Create one with `relay tenants create` or `relay tenants keys` on your relay.",
            }
        ],
        **_webhook_files("documentCompleted", "task.completed"),
        **_webhook_files("batchCompleted", "batch.completed"),
        **_webhook_files("budgetThreshold", "budget.threshold"),
        **{
            f"rpcs/{rpc}/{rpc}.communication.iml.json": {
                "url": "/v1/destinations",
                "method": "GET",
                "qs": {"kind": ",".join(kinds)},
                "response": {
                    "iterate": "{{body.items}}",
                    "output": {"label": "{{item.name}} ({{item.kind}})", "value": "{{item.id}}"},
                },
            }
            for rpc, kinds in _LISTS.items()
        },
    }
    modules: dict[str, Any] = {}
    definitions = [
        (
            "generateDocument",
            "Generate a Document",
            "Starts building an Excel, Word or PowerPoint file and returns the task at once. Use the Document "
            "completed trigger to pick up the finished file.",
            "action",
            {
                "communication": {
                    "url": "/v1/documents",
                    "method": "POST",
                    "body": "{{parameters}}",
                    "response": {"output": "{{body}}"},
                },
                "static-params": [],
                "mappable-params": _submit_params(
                    (
                        "format",
                        "prompt",
                        "record_key",
                        "resume",
                        "destinations",
                        "write_back",
                        "export",
                    ),
                    ("format", "prompt"),
                ),
                "interface": interface,
                "samples": sample,
            },
            {"actionCrud": "create"},
        ),
        (
            "continueDocument",
            "Continue a Document",
            "Changes the document kept for a record (a deal, a ticket) with a new prompt.",
            "action",
            {
                "communication": {
                    "url": "/v1/documents",
                    "method": "POST",
                    "body": {
                        "record_key": "{{parameters.record_key}}",
                        "prompt": "{{parameters.prompt}}",
                        "format": "{{parameters.format}}",
                        "resume": True,
                    },
                    "response": {"output": "{{body}}"},
                },
                "static-params": [],
                "mappable-params": _submit_params(
                    ("record_key", "prompt", "format"), ("record_key", "prompt", "format")
                ),
                "interface": interface,
                "samples": sample,
            },
            {"actionCrud": "update"},
        ),
        (
            "getTask",
            "Get a Task",
            "Gets a task: its status, progress and, once finished, the file.",
            "search",
            {
                "communication": {
                    "url": "/v1/tasks/{{encodeURL(parameters.task_id)}}",
                    "method": "GET",
                    "response": {"output": "{{body}}"},
                },
                "static-params": [],
                "mappable-params": [
                    {"name": "task_id", "label": "Task ID", "type": "text", "required": True}
                ],
                "interface": interface,
                "samples": sample,
            },
            {},
        ),
        (
            "generateDocumentsForRows",
            "Generate Documents for Rows",
            "Starts one document per row (up to 10,000) at the API's pace and returns the batch at once. Use the "
            "Batch completed trigger to pick up the counts, the manifest and a ZIP of every file.",
            "action",
            {
                "communication": {
                    "url": "/v1/batches",
                    "method": "POST",
                    "body": "{{parameters}}",
                    "response": {"output": "{{body}}"},
                },
                "static-params": [],
                "mappable-params": _batch_params(),
                "interface": _interface("relay/batch.json", leave=("retried", "cancelled")),
                "samples": BATCH_SAMPLE,
            },
            {"actionCrud": "create"},
        ),
        (
            "searchTasks",
            "Search Tasks",
            "Finds tasks, newest first: by status, record, format and when they were made.",
            "search",
            {
                "communication": {
                    "url": "/v1/tasks",
                    "method": "GET",
                    "qs": {p["name"]: f"{{{{parameters.{p['name']}}}}}" for p in task_filters},
                    "response": {"iterate": "{{body.items}}", "output": "{{item}}"},
                },
                "static-params": [],
                "mappable-params": task_filters,
                "interface": interface,
                "samples": sample,
            },
            {},
        ),
        (
            "cancelTask",
            "Cancel a Task",
            "Stops a document that is still being made. An ended task answers with an "
            "error saying so.",
            "action",
            {
                "communication": {
                    "url": "/v1/tasks/{{encodeURL(parameters.task_id)}}/cancel",
                    "method": "POST",
                    "body": {},
                    "response": {"output": "{{body}}"},
                },
                "static-params": [],
                "mappable-params": [
                    {"name": "task_id", "label": "Task ID", "type": "text", "required": True}
                ],
                "interface": interface,
                "samples": sample,
            },
            {"actionCrud": "update"},
        ),
        (
            "budgetThreshold",
            "Budget Threshold Reached",
            "Triggers once a month for each share of a credit budget "
            "reached (70%, 90%, 100% by default).",
            "instant_trigger",
            {
                "static-params": [],
                "interface": _event_interface("relay/budget.json"),
                "samples": {
                    "id": "evt_01JD3Y9V5T7X2B4D6F8H0JKLMQ",
                    "type": "budget.threshold",
                    "created_at": sample["updated_at"],
                    "data": BUDGET_SAMPLE,
                },
            },
            {"webhook": "budgetThreshold"},
        ),
        (
            "documentCompleted",
            "Document Completed",
            "Triggers when a document is finished.",
            "instant_trigger",
            {
                "static-params": [],
                "interface": _event_interface("relay/task.json"),
                "samples": {
                    "id": "evt_01JD3Y9V5T7X2B4D6F8H0JKLMN",
                    "type": "task.completed",
                    "created_at": sample["updated_at"],
                    "data": sample,
                },
            },
            {"webhook": "documentCompleted"},
        ),
        (
            "batchCompleted",
            "Batch Completed",
            "Triggers when every row of a batch has ended.",
            "instant_trigger",
            {
                "static-params": [],
                "interface": _event_interface("relay/batch-completed.json"),
                "samples": {
                    "id": "evt_01JD3Y9V5T7X2B4D6F8H0JKLMP",
                    "type": "batch.completed",
                    "created_at": sample["updated_at"],
                    "data": BATCH_COMPLETED_SAMPLE,
                },
            },
            {"webhook": "batchCompleted"},
        ),
    ]
    for key, label, description, module_type, sections, meta in definitions:
        modules[key], module_files = _module(key, label, description, module_type, sections, **meta)
        files.update(module_files)
    files["makecomapp.json"] = {
        "fileVersion": 1,
        "generalCodeFiles": {
            "base": "general/base.iml.json",
            "common": None,
            "groups": "general/groups.json",
            "readme": None,
        },
        "components": {
            "connection": {
                "relay": {
                    "label": "Overten Relay",
                    "connectionType": "basic",
                    "codeFiles": {
                        "communication": "connections/relay/relay.communication.iml.json",
                        "params": "connections/relay/relay.params.iml.json",
                    },
                }
            },
            "webhook": {
                name: {
                    "label": label,
                    "webhookType": "web",
                    "connection": "relay",
                    "codeFiles": {
                        part: f"webhooks/{name}/{name}.{part}.iml.json"
                        for part in ("communication", "attach", "detach")
                    },
                }
                for name, label in _WEBHOOKS
            },
            "module": modules,
            "rpc": {
                rpc: {
                    "label": label,
                    "connection": "relay",
                    "codeFiles": {"communication": f"rpcs/{rpc}/{rpc}.communication.iml.json"},
                }
                for rpc, label in (
                    ("listDestinations", "List saved destinations"),
                    ("listConnections", "List write-back connections"),
                )
            },
            "function": {},
            "endpoint": {},
        },
        "origins": [],
    }
    return files


# Which Make schema checks which file (the Apps SDK's jsonValidation table), by the file's suffix.
SECTION_SCHEMAS = {
    "communication.iml.json": "api.json",
    "attach.iml.json": "api.json",
    "detach.iml.json": "api.json",
    "static-params.iml.json": "parameters.json",
    "mappable-params.iml.json": "parameters.json",
    "params.iml.json": "parameters.json",
    "interface.iml.json": "parameters.json",
    "samples.iml.json": "samples.json",
    "base.iml.json": "base.json",
    "groups.json": "groups.json",
    "makecomapp.json": "makecomapp.schema.json",
}


def schema_for(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    for suffix, schema in SECTION_SCHEMAS.items():
        if name == suffix or name.endswith("." + suffix):
            return schema
    raise KeyError(f"no Make schema checks {path}")
