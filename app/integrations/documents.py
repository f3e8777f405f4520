"""The flat "document" shape no-code steps output: one table of fields, from which the Zapier app's
JavaScript, its outputFields and its samples are all generated, so the three cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import schemas
from connectors.registry import KINDS, RECORD_KINDS

_SAVED_KINDS = schemas.load("relay/destination-create.json")["properties"]["kind"]["enum"]
DESTINATION_KINDS = ", ".join(
    kind for kind in _SAVED_KINDS if kind in KINDS and kind not in RECORD_KINDS
)
"""The kinds a saved destination delivers files to, for the no-code apps' help texts."""


@dataclass(frozen=True)
class DocumentField:
    key: str
    label: str
    zapier_type: str
    path: str  # where the value is in a relay task (relay/task.json), dotted
    event_path: str = ""  # where it is in the event around the task, when there is one

    @property
    def js(self) -> str:
        task = f"pick(task, '{self.path}')"
        return f"(event ? pick(event, '{self.event_path}') : {task})" if self.event_path else task

    def value(self, task: dict, event: dict | None) -> Any:
        source, path = (event, self.event_path) if event and self.event_path else (task, self.path)
        for part in path.split("."):
            source = source.get(part) if isinstance(source, dict) else None
        return source


DOCUMENT_FIELDS = (
    DocumentField("id", "ID", "string", "task_id", "id"),
    DocumentField("task_id", "Task ID", "string", "task_id"),
    DocumentField("status", "Status", "string", "status"),
    DocumentField("format", "Format", "string", "format"),
    DocumentField("record_key", "Record Key", "string", "record_key"),
    DocumentField("run_id", "Run ID", "string", "run_id"),
    DocumentField("turn_index", "Turn", "integer", "turn_index"),
    DocumentField("run_restarted", "Document Restarted", "boolean", "run_restarted"),
    DocumentField("summary", "Summary", "string", "result.summary"),
    DocumentField("file", "File", "file", "file_url"),
    DocumentField("file_url", "File Link", "string", "file_url"),
    DocumentField("export_file", "Export File", "file", "export_url"),
    DocumentField("edit_url", "Edit Link", "string", "result.edit_url"),
    DocumentField("error_code", "Error Code", "string", "error.code"),
    DocumentField("error_message", "Error Message", "string", "error.message"),
    DocumentField("credits_used", "Credits Used", "number", "credits_used"),
    DocumentField("duration_ms", "Duration (ms)", "integer", "duration_ms"),
    DocumentField("finished_at", "Finished At", "datetime", "updated_at", "created_at"),
)


def document_from(task: dict, event: dict | None = None) -> dict[str, Any]:
    return {field.key: field.value(task, event) for field in DOCUMENT_FIELDS}


# What a finished task looks like (relay/task.json): the samples of every no-code step.
SAMPLE_TASK: dict[str, Any] = {
    "task_id": "tsk_01JD3Y5R2Q8W6N4M7K9P0ZX1AB",
    "status": "completed",
    "phase": None,
    "progress": 100,
    "turn_index": 1,
    "format": "excel",
    "export": "pdf",
    "record_key": "hubspot:deal:42",
    "run_id": "run_01JD3Y5R2Q8W6N4M7K9P0ZX1AC",
    "run_restarted": False,
    "created_at": "2026-11-22T09:14:03.120Z",
    "updated_at": "2026-11-22T09:16:41.870Z",
    "result": {
        "summary": "Built a 3-sheet revenue model for Acme: inputs, monthly forecast and a chart.",
        "download_url": "https://api.overten.example/files/run_01JD3Y5R2Q8W6N4M7K9P0ZX1AC?sig=...",
        "edit_url": "https://api.overten.example/runs/run_01JD3Y5R2Q8W6N4M7K9P0ZX1AC/edit",
        "artifacts": [],
    },
    "error": None,
    "credits_used": 12,
    "duration_ms": 158750,
    "deliveries": [],
    "file_url": "https://relay.example/files/eyJ0IjoidHNrXzAxSkQzWTVSMlE4VzZONE03SzlQMFpYMUFCIn0...",
    "export_url": "https://relay.example/files/eyJ0IjoidHNrXzAxSkQzWTVSMlE4VzZONE03SzlQMFpYMUFCIiwieCI6InBkZiJ9...",
}
