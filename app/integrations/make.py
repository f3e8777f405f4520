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

TIMEOUT_MS = 40_000  # Make's own ceiling for one module call
_AUTH = "Bearer {{connection.apiKey}}"
_ERROR = "[{{statusCode}}] {{body.error.message}}{{if(body.error.field; ' (field: ' + body.error.field + ')'; '')}}"


_LISTS = {"listDestinations": DESTINATION_KINDS.split(", "), "listConnections": list(RECORD_KINDS)}
"""The dropdowns of saved destinations: where files go, and the write-back connections."""


def _options(values: list[str], labels: dict[str, str] | None = None) -> list[dict[str, str]]:
    return [{"label": (labels or {}).get(v, v), "value": v} for v in values]


def _parameter(name: str, spec: dict, required: bool = False) -> dict[str, Any]:
    """A JSON Schema property as a Make parameter (mappable input or output interface)."""
    kinds = [t for t in ([spec["type"]] if isinstance(spec.get("type"), str) else spec.get("type", [])) if t != "null"]
    kind = kinds[0] if kinds else "any"
    param: dict[str, Any] = {"name": name, "label": spec.get("title", name.replace("_", " ").capitalize())}
    if spec.get("description"):
        param["help"] = spec["description"]
    if spec.get("enum"):
        param.update(type="select", options=_options([v for v in spec["enum"] if v is not None], LABELS))
    elif kind == "object":
        param.update(type="collection", spec=[_parameter(k, v) for k, v in spec.get("properties", {}).items()])
    elif kind == "array":
        param["type"] = "array"
    elif kind == "string":
        param["type"] = {"uri": "url", "date-time": "date"}.get(spec.get("format", ""), "text")
        if spec.get("maxLength", 0) > 1000:
            param["multiline"] = True
    else:
        param["type"] = {"integer": "integer", "number": "number", "boolean": "boolean"}.get(kind, "any")
    if required:
        param["required"] = True
    return param


def _submit_params(names: tuple[str, ...], required: tuple[str, ...]) -> list[dict[str, Any]]:
    properties = schemas.load("relay/submit-request.json")["properties"]
    params = [_parameter(name, properties[name], name in required) for name in names]
    for param in params:
        if param["name"] == "destinations":
            param.update(spec=[{"name": "id", "label": "Saved destination", "type": "select",
                                "help": f"Where the finished file goes: {DESTINATION_KINDS}.",
                                "options": "rpc://listDestinations", "required": True}])
        if param["name"] == "write_back":
            param.update(type="collection", spec=[{"name": "connection", "label": "Connection (hubspot, airtable or "
                                                   "sheets)", "type": "select", "options": "rpc://listConnections",
                                                   "required": True}])
    return params


def _interface(schema: str) -> list[dict[str, Any]]:
    """A module's output: the relay object's schema, minus the delivery list no scenario maps."""
    properties = schemas.resolved(schema)["properties"]
    return [_parameter(name, spec) for name, spec in properties.items() if name != "deliveries"]


def _module(key: str, label: str, description: str, module_type: str, sections: dict[str, Any],
            **meta: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = f"modules/{key}/{key}"
    files = {f"{folder}.{suffix}.iml.json": body for suffix, body in sections.items()}
    names = {"communication": "communication", "static-params": "staticParams", "mappable-params": "mappableParams",
             "interface": "interface", "samples": "samples"}
    code = {names[suffix]: f"{folder}.{suffix}.iml.json" for suffix in sections}
    metadata = {"label": label, "description": description, "moduleType": module_type, "connection": "relay",
                "codeFiles": code, **meta}
    return metadata, files


def make_app(public_url: str) -> dict[str, Any]:
    """Every file of the project, by path; `makecomapp.json` is the manifest."""
    base = public_url.rstrip("/")
    interface, sample = _interface("relay/task.json"), dict(SAMPLE_TASK)
    files: dict[str, Any] = {
        "general/base.iml.json": {
            "baseUrl": base, "headers": {"Authorization": _AUTH}, "timeout": TIMEOUT_MS,
            "response": {"error": {"message": _ERROR}}, "log": {"sanitize": ["request.headers.authorization"]}},
        "general/groups.json": [{"label": "Documents", "modules": ["generateDocument", "continueDocument", "getTask"]},
                                {"label": "Triggers", "modules": ["documentCompleted"]}],
        "connections/relay/relay.communication.iml.json": {
            "url": f"{base}/v1/me", "method": "GET", "headers": {"Authorization": "Bearer {{parameters.apiKey}}"},
            "response": {"metadata": {"type": "text", "value": "{{body.name}}"},
                         "error": {"message": "[{{statusCode}}] {{body.error.message}}"}},
            "log": {"sanitize": ["request.headers.authorization"]}},
        "connections/relay/relay.params.iml.json": [
            {"name": "apiKey", "label": "Relay API key", "type": "password", "required": True,
             "help": "Create one with `relay tenants create` or `relay tenants keys` on your relay."}],
        "webhooks/documentCompleted/documentCompleted.communication.iml.json": {
            "respond": {"status": 200, "type": "json", "body": {"ok": True}}, "output": "{{body}}"},
        "webhooks/documentCompleted/documentCompleted.attach.iml.json": {
            "url": "/v1/hooks", "method": "POST",
            "body": {"target_url": "{{webhook.url}}", "event": "task.completed"},
            "response": {"data": {"externalHookId": "{{body.id}}"}}},
        "webhooks/documentCompleted/documentCompleted.detach.iml.json": {
            "url": "/v1/hooks/{{webhook.externalHookId}}", "method": "DELETE"},
        **{f"rpcs/{rpc}/{rpc}.communication.iml.json": {
            "url": "/v1/destinations", "method": "GET", "qs": {"kind": ",".join(kinds)},
            "response": {"iterate": "{{body.items}}",
                         "output": {"label": "{{item.name}} ({{item.kind}})", "value": "{{item.id}}"}}}
           for rpc, kinds in _LISTS.items()},
    }
    modules: dict[str, Any] = {}
    definitions = [
        ("generateDocument", "Generate a Document",
         "Starts building an Excel, Word or PowerPoint file and returns the task at once. Use the Document "
         "completed trigger to pick up the finished file.", "action",
         {"communication": {"url": "/v1/documents", "method": "POST", "body": "{{parameters}}",
                            "response": {"output": "{{body}}"}},
          "static-params": [],
          "mappable-params": _submit_params(("format", "prompt", "record_key", "resume", "destinations",
                                             "write_back", "export"), ("format", "prompt")),
          "interface": interface, "samples": sample}, {"actionCrud": "create"}),
        ("continueDocument", "Continue a Document",
         "Changes the document kept for a record (a deal, a ticket) with a new prompt.", "action",
         {"communication": {"url": "/v1/documents", "method": "POST",
                            "body": {"record_key": "{{parameters.record_key}}", "prompt": "{{parameters.prompt}}",
                                     "format": "{{parameters.format}}", "resume": True},
                            "response": {"output": "{{body}}"}},
          "static-params": [],
          "mappable-params": _submit_params(("record_key", "prompt", "format"), ("record_key", "prompt", "format")),
          "interface": interface, "samples": sample}, {"actionCrud": "update"}),
        ("getTask", "Get a Task", "Gets a task: its status, progress and, once finished, the file.", "search",
         {"communication": {"url": "/v1/tasks/{{encodeURL(parameters.task_id)}}", "method": "GET",
                            "response": {"output": "{{body}}"}},
          "static-params": [],
          "mappable-params": [{"name": "task_id", "label": "Task ID", "type": "text", "required": True}],
          "interface": interface, "samples": sample}, {}),
        ("documentCompleted", "Document Completed", "Triggers when a document is finished.", "instant_trigger",
         {"static-params": [], "interface": _interface("relay/event.json"),
          "samples": {"id": "evt_01JD3Y9V5T7X2B4D6F8H0JKLMN", "type": "task.completed",
                      "created_at": sample["updated_at"], "data": sample}}, {"webhook": "documentCompleted"}),
    ]
    for key, label, description, module_type, sections, meta in definitions:
        modules[key], module_files = _module(key, label, description, module_type, sections, **meta)
        files.update(module_files)
    hook = "webhooks/documentCompleted/documentCompleted"
    files["makecomapp.json"] = {
        "fileVersion": 1,
        "generalCodeFiles": {"base": "general/base.iml.json", "common": None, "groups": "general/groups.json",
                             "readme": None},
        "components": {
            "connection": {"relay": {"label": "Overten Relay", "connectionType": "basic", "codeFiles": {
                "communication": "connections/relay/relay.communication.iml.json",
                "params": "connections/relay/relay.params.iml.json"}}},
            "webhook": {"documentCompleted": {
                "label": "Document completed", "webhookType": "web", "connection": "relay",
                "codeFiles": {part: f"{hook}.{part}.iml.json" for part in ("communication", "attach", "detach")}}},
            "module": modules,
            "rpc": {rpc: {"label": label, "connection": "relay", "codeFiles": {
                "communication": f"rpcs/{rpc}/{rpc}.communication.iml.json"}}
                for rpc, label in (("listDestinations", "List saved destinations"),
                                   ("listConnections", "List write-back connections"))},
            "function": {},
            "endpoint": {},
        },
        "origins": [],
    }
    return files


# Which Make schema checks which file (the Apps SDK's jsonValidation table), by the file's suffix.
SECTION_SCHEMAS = {
    "communication.iml.json": "api.json", "attach.iml.json": "api.json", "detach.iml.json": "api.json",
    "static-params.iml.json": "parameters.json", "mappable-params.iml.json": "parameters.json",
    "params.iml.json": "parameters.json", "interface.iml.json": "parameters.json",
    "samples.iml.json": "samples.json", "base.iml.json": "base.json", "groups.json": "groups.json",
    "makecomapp.json": "makecomapp.schema.json",
}


def schema_for(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    for suffix, schema in SECTION_SCHEMAS.items():
        if name == suffix or name.endswith("." + suffix):
            return schema
    raise KeyError(f"no Make schema checks {path}")
