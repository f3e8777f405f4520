"""The Zapier Platform app, as plain JSON (functions as `{source}` bodies), generated from `schemas/`.

A Zap step has 30 seconds and a document takes minutes, so "Generate document" hands the relay
`z.generateCallbackUrl()`: the Zap waits, and the relay's callback delivery resumes it with the finished task.
Triggers are REST hooks on /v1/hooks with a polling twin on /v1/events.
"""

from __future__ import annotations

import json
from typing import Any

import schemas
from app.core.formats import export_formats
from app.integrations.documents import (
    DESTINATION_KINDS,
    DOCUMENT_FIELDS,
    SAMPLE_TASK,
    document_from,
)
from connectors.registry import RECORD_KINDS

PLATFORM_VERSION = "19.1.0"
APP_VERSION = "1.0.0"

# One JS function that flattens a relay task (and the event around it) the same way document_from does.
_TO_DOCUMENT = (
    "const toDocument = (task, event) => ({"
    + ", ".join(f"{field.key}: {field.js}" for field in DOCUMENT_FIELDS)
    + "});\n"
    + """
const pick = (value, path) => path.split('.').reduce((at, key) => (at == null ? null : at[key]), value) ?? null;
"""
)

_AUTH_HEADER = """request.headers = request.headers || {};
if (bundle.authData && bundle.authData.api_key) {
  request.headers.Authorization = 'Bearer ' + bundle.authData.api_key;
}
return request;"""

# The connection test: the key works (a 401 otherwise), and every saved destination passes its check
# (POST /v1/destinations/checks); a failing one is named with what failed and its fix.
_CONNECTION_TEST = """return z.request({url: BASE + '/v1/destinations/checks', method: 'POST'}).then((response) => {
  const found = response.data;
  const failing = found.destinations.filter((d) => d.verdict === 'failure').map((d) =>
    d.name + ' (' + d.kind + '): ' + d.checks.filter((c) => c.verdict === 'failure')
      .map((c) => c.message + (c.fix ? '. ' + c.fix : '')).join('; '));
  if (failing.length) {
    throw new z.errors.Error('A saved destination fails its check: ' + failing.join(' | '),
                             'destination_check_failed', 400);
  }
  return {name: found.tenant, destinations: found.destinations.length, verdict: found.verdict};
});"""

# Relay errors are {"error": {code, message, field}}: show the user the message and the field.
_ERRORS = """if (response.status < 400 || response.skipThrowForStatus) { return response; }
let error = {};
try { error = (response.data || JSON.parse(response.content)).error || {}; } catch (e) { error = {}; }
const message = (error.message || ('The relay answered HTTP ' + response.status))
  + (error.field ? ' (field: ' + error.field + ')' : '');
if (response.status === 401) { throw new z.errors.ExpiredAuthError(message); }
if (response.status === 402) { throw new z.errors.Error(message, 'budget_exceeded', 402); }  // say it, no retry
if (response.status === 429) {
  throw new z.errors.ThrottledError(message, parseInt(response.getHeader('retry-after') || '60', 10));
}
throw new z.errors.Error(message, error.code || 'relay_error', response.status);"""


def _source(
    body: str, *, base: str, documents: bool = False, args: list[str] | None = None
) -> dict[str, Any]:
    prelude = f"const BASE = {json.dumps(base)};\n" + (_TO_DOCUMENT if documents else "")
    function: dict[str, Any] = {"source": prelude + body}
    if args:
        function["args"] = args
    return function


def _field_from_schema(name: str, spec: dict, required: bool = False) -> dict[str, Any]:
    field: dict[str, Any] = {"key": name, "label": spec.get("title", name), "required": required}
    if spec.get("description"):
        field["helpText"] = spec["description"]
    if spec.get("enum"):
        field["choices"] = list(spec["enum"])
    if spec.get("type") == "boolean":
        field["type"] = "boolean"
        if "default" in spec:
            field["default"] = "true" if spec["default"] else "false"
    elif spec.get("maxLength", 0) > 1000:
        field["type"] = "text"
    else:
        field["type"] = "string"
    return field


def _submit_fields(*names: str, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    properties = schemas.load("relay/submit-request.json")["properties"]
    fields = []
    for name in names:
        field = _field_from_schema(name, properties[name], name in required)
        if name == "format":
            field.pop("choices")
            field["dynamic"] = "list_formats.id.label"
            field["altersDynamicFields"] = False
        if name == "destinations":
            field.update(
                dynamic="list_destinations.id.name",
                list=True,
                type="string",
                helpText="Saved destinations to deliver the finished file to: "
                + DESTINATION_KINDS
                + ".",
            )
        if name == "write_back":
            field = {
                "key": "write_back",
                "label": "Write Back To The Record",
                "type": "string",
                "required": False,
                "dynamic": "list_connections.id.name",
                "helpText": "A saved HubSpot, Airtable or Google Sheets connection: the record the Record Key "
                "names shows Generating, then Ready with the file, or Failed with the reason. "
                "Empty: the tenant's default connection for that platform, if any.",
            }
        fields.append(field)
    return fields


def _fields(rows: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    return [{"key": key, "label": label, "type": kind} for key, label, kind in rows]


def _output_fields() -> list[dict[str, Any]]:
    return [{"key": f.key, "label": f.label, "type": f.zapier_type} for f in DOCUMENT_FIELDS]


# the resume rule: "Continue Document" always resumes; "Generate Document" resumes when its field says so
_RESUME_ALWAYS = "body.resume = true;"
_RESUME_FROM_INPUT = """if (input.resume !== undefined && input.resume !== null && input.resume !== '') {
  body.resume = ![false, 'false', 'no', '0'].includes(input.resume);
}"""

_SUBMIT = """if (bundle.meta && bundle.meta.isLoadingSample) { return @SAMPLE@; }
const input = bundle.inputData;
const body = {format: input.format || 'excel', prompt: input.prompt, callback_url: z.generateCallbackUrl()};
if (input.record_key) { body.record_key = input.record_key; }
@RESUME@
if (input.destinations && [].concat(input.destinations).length) {
  body.destinations = [].concat(input.destinations).map((id) => ({id}));
}
if (input.export) { body.export = input.export; }
if (input.write_back) { body.write_back = {connection: input.write_back}; }
return z.request({url: BASE + '/v1/documents', method: 'POST', body}).then((response) => response.data);"""

_RESUME = "return toDocument(Object.assign({}, bundle.outputData, bundle.cleanedRequest), null);"


def _create(
    key: str,
    noun: str,
    label: str,
    description: str,
    fields: list[dict],
    always_resume: bool,
    base: str,
) -> dict[str, Any]:
    sample = document_from(SAMPLE_TASK)
    resume = _RESUME_ALWAYS if always_resume else _RESUME_FROM_INPUT
    perform = _SUBMIT.replace("@SAMPLE@", json.dumps(sample)).replace("@RESUME@", resume)
    return {
        "key": key,
        "noun": noun,
        "display": {"label": label, "description": description},
        "operation": {
            "inputFields": fields,
            "perform": _source(perform, base=base),
            "performResume": _source(_RESUME, base=base, documents=True),
            "outputFields": _output_fields(),
            "sample": sample,
        },
    }


def _export_create(base: str) -> dict[str, Any]:
    perform = """return z.request({url: BASE + '/v1/exports', method: 'POST',
  body: {record_key: bundle.inputData.record_key, format: bundle.inputData.format}})
  .then((response) => Object.assign({id: response.data.task_id + ':' + response.data.format,
                                     file: response.data.file_url}, response.data));"""
    [record] = _submit_fields("record_key", required=("record_key",))
    sample = {
        "id": "tsk_01JD3Y5R2Q8W6N4M7K9P0ZX1AB:pdf",
        "file": "https://relay.example/files/...",
        "task_id": "tsk_01JD3Y5R2Q8W6N4M7K9P0ZX1AB",
        "run_id": "run_01JD3Y5R2Q8W6N4M7K9P0ZX1AC",
        "record_key": "hubspot:deal:42",
        "format": "pdf",
        "file_url": "https://relay.example/files/...",
    }
    return {
        "key": "export_document",
        "noun": "Export",
        "display": {
            "label": "Export Document",
            "description": "Gets a record's latest document in another format (PDF, CSV, ...).",
        },
        "operation": {
            "inputFields": [
                record,
                {
                    "key": "format",
                    "label": "Format",
                    "required": True,
                    "choices": export_formats(),
                    "type": "string",
                },
            ],
            "perform": _source(perform, base=base),
            "outputFields": [
                {"key": "file", "label": "File", "type": "file"},
                *(
                    {"key": k, "label": k.replace("_", " ").title(), "type": "string"}
                    for k in ("id", "task_id", "run_id", "record_key", "format", "file_url")
                ),
            ],
            "sample": sample,
        },
    }


_BATCH_SUBMIT = """if (bundle.meta && bundle.meta.isLoadingSample) { return @SAMPLE@; }
const input = bundle.inputData;
const rows = [].concat(input.rows || []).map((row) => ({record_key: row.record_key, prompt: row.prompt}));
const body = {format: input.format || 'excel', rows, callback_url: z.generateCallbackUrl()};
if (input.destinations && [].concat(input.destinations).length) {
  body.destinations = [].concat(input.destinations).map((id) => ({id}));
}
if (input.write_back) { body.write_back = {connection: input.write_back}; }
if (input.on_error) { body.on_error = input.on_error; }
if (input.skip_done !== undefined && input.skip_done !== null && input.skip_done !== '') {
  body.skip_done = ![false, 'false', 'no', '0'].includes(input.skip_done);
}
return z.request({url: BASE + '/v1/batches', method: 'POST', body}).then((response) => response.data);"""

# The batch's end, flat: what the callback brings (relay/batch-completed.json), over what the submit answered.
_BATCH_RESUME = """const batch = Object.assign({}, bundle.outputData, bundle.cleanedRequest);
const counts = batch.counts || {};
return {id: batch.batch_id, batch_id: batch.batch_id, status: batch.status, total: batch.total,
        completed: counts.completed || 0, failed: counts.failed || 0, skipped: counts.skipped || 0,
        cancelled: counts.cancelled || 0, credits_used: batch.credits_used, summary: batch.summary || null,
        manifest: batch.manifest_url || null, manifest_url: batch.manifest_url || null,
        zip: batch.zip_url || null, zip_url: batch.zip_url || null};"""

_BATCH_OUTPUT = [
    ("id", "ID", "string"),
    ("batch_id", "Batch ID", "string"),
    ("status", "Status", "string"),
    ("total", "Rows", "integer"),
    ("completed", "Completed", "integer"),
    ("failed", "Failed", "integer"),
    ("skipped", "Skipped", "integer"),
    ("cancelled", "Cancelled", "integer"),
    ("credits_used", "Credits Used", "number"),
    ("summary", "Summary", "string"),
    ("manifest", "Manifest (CSV)", "file"),
    ("manifest_url", "Manifest URL", "string"),
    ("zip", "All Files (ZIP)", "file"),
    ("zip_url", "All Files URL", "string"),
]

BATCH_SAMPLE = {
    "id": "bat_01JD3Y5R2Q8W6N4M7K9P0ZX1AB",
    "batch_id": "bat_01JD3Y5R2Q8W6N4M7K9P0ZX1AB",
    "status": "completed",
    "total": 3,
    "completed": 3,
    "failed": 0,
    "skipped": 0,
    "cancelled": 0,
    "credits_used": 129,
    "summary": "Batch bat_01JD3Y5R2Q8W6N4M7K9P0ZX1AB completed: 3 of 3 documents "
    "made, 129 credits. The manifest lists every row; all the files in one ZIP: "
    "https://relay.example/files/...",
    "manifest": "https://relay.example/files/...",
    "manifest_url": "https://relay.example/files/...",
    "zip": "https://relay.example/files/...",
    "zip_url": "https://relay.example/files/...",
}


def _batch_create(base: str) -> dict[str, Any]:
    """ "Generate Documents for Rows": one document per line item, each with its record and its own prompt
    (mapped per item in the Zap), answered at once; the Zap goes on when the relay's callback brings the end."""
    batch = schemas.load("relay/batch-create.json")["properties"]
    rows = {
        "key": "rows",
        "label": "Rows (one document per line item)",
        "required": True,
        "children": [
            {
                "key": "record_key",
                "label": "Record Key",
                "required": True,
                "type": "string",
                "helpText": "Each line item's record (a deal, a client): map a line-item field.",
            },
            {
                "key": "prompt",
                "label": "Prompt",
                "required": True,
                "type": "text",
                "helpText": (
                    "Each line item's prompt: text and line-item fields, "
                    "e.g. `Renewal memo for` and the company."
                ),
            },
        ],
    }
    fields = [
        _submit_fields("format", required=("format",))[0],
        rows,
        *_submit_fields("destinations", "write_back"),
        _field_from_schema("on_error", batch["on_error"]),
        _field_from_schema("skip_done", batch["skip_done"]),
    ]
    perform = _BATCH_SUBMIT.replace("@SAMPLE@", json.dumps(BATCH_SAMPLE))
    return {
        "key": "generate_documents_for_rows",
        "noun": "Batch",
        "display": {
            "label": "Generate Documents for Rows",
            "description": "Builds one document per line item (up to 10,000) at the API's pace, and "
            "goes on when every row has ended, with the counts, a manifest and a ZIP.",
        },
        "operation": {
            "inputFields": fields,
            "perform": _source(perform, base=base),
            "performResume": _source(_BATCH_RESUME, base=base),
            "outputFields": _fields(_BATCH_OUTPUT),
            "sample": BATCH_SAMPLE,
        },
    }


def _cancel_create(base: str) -> dict[str, Any]:
    perform = """return z.request({url: BASE + '/v1/tasks/' + encodeURIComponent(bundle.inputData.task_id) + '/cancel',
  method: 'POST'}).then((response) => toDocument(response.data, null));"""
    return {
        "key": "cancel_task",
        "noun": "Task",
        "display": {
            "label": "Cancel Task",
            "description": "Stops a document that is still being made (a runaway Zap, a wrong prompt).",
        },
        "operation": {
            "inputFields": [
                {
                    "key": "task_id",
                    "label": "Task ID",
                    "required": True,
                    "type": "string",
                    "helpText": "The Task ID a Generate Document step gave.",
                }
            ],
            "perform": _source(perform, base=base, documents=True),
            "outputFields": _output_fields(),
            "sample": document_from(SAMPLE_TASK),
        },
    }


_BUDGET_OUTPUT = [
    ("id", "ID", "string"),
    ("scope", "Scope", "string"),
    ("record_key", "Record Key", "string"),
    ("share", "Share Reached", "number"),
    ("spent", "Credits Spent This Month", "number"),
    ("monthly_credits", "Monthly Credits", "number"),
    ("hard_cap", "Hard Cap", "boolean"),
    ("resets_at", "Resets At", "datetime"),
    ("summary", "Summary", "string"),
]
_TO_ALERT = """const toAlert = (budget, event) => ({id: event ? event.id : 'budget:' + (budget.record_key || 'tenant'),
  scope: budget.scope, record_key: budget.record_key, share: budget.share ?? budget.share_spent, spent: budget.spent,
  monthly_credits: budget.monthly_credits, hard_cap: budget.hard_cap, resets_at: budget.period.resets_at,
  summary: budget.summary || null});
"""


def _budget_trigger(base: str) -> dict[str, Any]:
    """budget.threshold as a REST hook; its sample list is where each budget stands now."""
    perform = (
        _TO_ALERT + "const event = bundle.cleanedRequest;\nreturn [toAlert(event.data, event)];"
    )
    listed = (
        _TO_ALERT
        + """return z.request({url: BASE + '/v1/budgets'})
  .then((response) => response.data.items.map((budget) => toAlert(budget, null)));"""
    )
    sample = {
        "id": "evt_01JD3Y9V5T7X2B4D6F8H0JKLMQ",
        "scope": "record",
        "record_key": "hubspot:deal:42",
        "share": 0.9,
        "spent": 460,
        "monthly_credits": 500,
        "hard_cap": True,
        "resets_at": "2027-01-01T00:00:00.000Z",
        "summary": "Record hubspot:deal:42 has spent 460 of its 500 monthly credits (90% reached) since "
        "2026-12-01; the budget resets at 2027-01-01T00:00:00.000Z. Past 100% new submits are "
        "refused.",
    }
    return {
        "key": "budget_threshold",
        "noun": "Budget",
        "display": {
            "label": "Budget Threshold Reached",
            "description": "Triggers once a month for each share of a credit budget reached (70%, 90%, "
            "100% by default).",
        },
        "operation": {
            "type": "hook",
            "perform": _source(perform, base=base),
            "performList": _source(listed, base=base),
            **_hook_subscription("budget.threshold", base),
            "outputFields": _fields(_BUDGET_OUTPUT),
            "sample": sample,
        },
    }


def _search(base: str) -> dict[str, Any]:
    perform = """const key = bundle.inputData.record_key;
return z.request({url: BASE + '/v1/records/' + encodeURIComponent(key), skipThrowForStatus: true})
  .then((response) => {
    if (response.status === 404) { return []; }
    response.throwForStatus();
    const record = response.data;
    const latest = record.latest_result || {};
    return [toDocument(Object.assign({status: latest.task_id ? 'completed' : null, result: latest,
                                      file_url: latest.file_url, task_id: latest.task_id}, record), null)];
  });"""
    [record] = _submit_fields("record_key", required=("record_key",))
    return {
        "key": "find_document",
        "noun": "Document",
        "display": {
            "label": "Find Document by Record Key",
            "description": "Finds the document kept for one of your records (a deal, a ticket).",
        },
        "operation": {
            "inputFields": [record],
            "perform": _source(perform, base=base, documents=True),
            "outputFields": _output_fields(),
            "sample": document_from(SAMPLE_TASK),
        },
    }


def _event_list(event_type: str, base: str) -> dict[str, Any]:
    body = f"""return z.request({{url: BASE + '/v1/events', params: {{type: {json.dumps(event_type)}, limit: 50}}}})
  .then((response) => response.data.items.map((event) => toDocument(event.data, event)));"""
    return _source(body, base=base, documents=True)


def _hook_subscription(event_type: str, base: str) -> dict[str, Any]:
    """A REST hook's subscribe and unsubscribe, on /v1/hooks."""
    subscribe = f"""return z.request({{url: BASE + '/v1/hooks', method: 'POST',
  body: {{target_url: bundle.targetUrl, event: {json.dumps(event_type)}}}}}).then((response) => response.data);"""
    unsubscribe = """return z.request({url: BASE + '/v1/hooks/' + encodeURIComponent(bundle.subscribeData.id),
  method: 'DELETE', skipThrowForStatus: true}).then((response) => {
  if (response.status !== 404) { response.throwForStatus(); }
  return {};
});"""
    return {
        "performSubscribe": _source(subscribe, base=base),
        "performUnsubscribe": _source(unsubscribe, base=base),
    }


def _hook_trigger(
    key: str, event_type: str, label: str, description: str, base: str
) -> dict[str, Any]:
    perform = "const event = bundle.cleanedRequest;\nreturn [toDocument(event.data, event)];"
    return {
        "key": key,
        "noun": "Document",
        "display": {"label": label, "description": description},
        "operation": {
            "type": "hook",
            "perform": _source(perform, base=base, documents=True),
            "performList": _event_list(event_type, base),
            **_hook_subscription(event_type, base),
            "outputFields": _output_fields(),
            "sample": _event_sample(event_type),
        },
    }


def _event_sample(event_type: str) -> dict[str, Any]:
    event = {
        "id": "evt_01JD3Y9V5T7X2B4D6F8H0JKLMN",
        "type": event_type,
        "created_at": SAMPLE_TASK["updated_at"],
    }
    return document_from(SAMPLE_TASK, event)


def _polling_trigger(base: str) -> dict[str, Any]:
    return {
        "key": "document_completed_polling",
        "noun": "Document",
        "display": {
            "label": "New Completed Document (Polling)",
            "description": "Triggers when a document is finished; checks every few minutes.",
        },
        "operation": {
            "type": "polling",
            "perform": _event_list("task.completed", base),
            "outputFields": _output_fields(),
            "sample": _event_sample("task.completed"),
        },
    }


def _hidden_list(key: str, path: str, mapping: str, base: str, keep: str = "") -> dict[str, Any]:
    """``keep``: a JavaScript predicate on each item, when only some are offered."""
    chosen = f".filter({keep})" if keep else ""
    body = f"return z.request({{url: BASE + '{path}'}}).then((response) => response.data.items{chosen}.map({mapping}));"
    return {
        "key": key,
        "noun": key.removeprefix("list_").title(),
        "display": {
            "label": key.replace("_", " ").title(),
            "description": "Feeds a dropdown.",
            "hidden": True,
        },
        "operation": {"type": "polling", "perform": _source(body, base=base)},
    }


def zapier_app(public_url: str) -> dict[str, Any]:
    base = public_url.rstrip("/")
    generate_fields = _submit_fields(
        "format",
        "prompt",
        "record_key",
        "resume",
        "destinations",
        "write_back",
        "export",
        required=("format", "prompt"),
    )
    continue_fields = _submit_fields(
        "record_key",
        "prompt",
        "format",
        "destinations",
        "write_back",
        "export",
        required=("record_key", "prompt"),
    )
    creates = [
        _create(
            "generate_document",
            "Document",
            "Generate Document",
            "Builds an Excel, Word or PowerPoint file from a prompt and waits for it (up to 25 minutes).",
            generate_fields,
            False,
            base,
        ),
        _create(
            "continue_document",
            "Document",
            "Continue Document",
            "Changes the document kept for a record (a deal, a ticket) with a new prompt.",
            continue_fields,
            True,
            base,
        ),
        _export_create(base),
        _batch_create(base),
        _cancel_create(base),
    ]
    triggers = [
        _hook_trigger(
            "document_completed",
            "task.completed",
            "Document Completed",
            "Triggers when a document is finished.",
            base,
        ),
        _hook_trigger(
            "task_failed",
            "task.failed",
            "Task Failed",
            "Triggers when a document could not be made.",
            base,
        ),
        _polling_trigger(base),
        _budget_trigger(base),
        _hidden_list(
            "list_formats", "/v1/formats", "(item) => ({id: item.id, label: item.label})", base
        ),
        _hidden_list(
            "list_destinations",
            "/v1/destinations",
            "(item) => ({id: item.id, name: item.name + ' (' + item.kind + ')'})",
            base,
            keep=f"(item) => !{json.dumps(list(RECORD_KINDS))}.includes(item.kind)",
        ),
        _hidden_list(
            "list_connections",
            "/v1/destinations",
            "(item) => ({id: item.id, name: item.name + ' (' + item.kind + ')'})",
            base,
            keep=f"(item) => {json.dumps(list(RECORD_KINDS))}.includes(item.kind)",
        ),
    ]
    return {
        "version": APP_VERSION,
        "platformVersion": PLATFORM_VERSION,
        "authentication": {
            "type": "custom",
            "fields": [
                {
                    "key": "api_key",
                    "label": "Relay API key",
                    "required": True,
                    "type": "password",
                    "helpText": "Create one with `relay tenants create` or `relay tenants keys` on your relay.",
                }
            ],
            "test": _source(_CONNECTION_TEST, base=base, args=["z", "bundle"]),
            "connectionLabel": "{{bundle.inputData.name}}",
        },
        "beforeRequest": [_source(_AUTH_HEADER, base=base, args=["request", "z", "bundle"])],
        "afterResponse": [
            _source(_ERRORS + "\nreturn response;", base=base, args=["response", "z", "bundle"])
        ],
        "triggers": {t["key"]: t for t in triggers},
        "creates": {c["key"]: c for c in creates},
        "searches": {s["key"]: s for s in [_search(base)]},
    }


def zapier_package(public_url: str) -> dict[str, str]:
    """The files of a project `zapier-platform push` accepts: the definition, an index and package.json."""
    return {
        "definition.json": json.dumps(zapier_app(public_url), indent=2) + "\n",
        "index.js": "// Generated by `relay connectors export zapier`: edit the relay, not this file.\n"
        "module.exports = require('./definition.json');\n",
        "package.json": json.dumps(
            {
                "name": "overten-relay-zapier",
                "version": APP_VERSION,
                "private": True,
                "main": "index.js",
                "engines": {"node": ">=18"},
                "dependencies": {"zapier-platform-core": PLATFORM_VERSION},
            },
            indent=2,
        )
        + "\n",
        "README.md": ZAPIER_README.format(base=public_url.rstrip("/")),
    }


ZAPIER_README = """# Overten Relay for Zapier

Generated from the relay at {base}. Push it as your own private integration:

    npm install
    npx zapier-platform login
    npx zapier-platform register "Overten Relay"   # once
    npx zapier-platform push

The steps of a Zap call {base} directly; re-export after changing the relay's public URL.
"""
