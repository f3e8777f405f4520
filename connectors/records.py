"""What the write-back kinds (HubSpot, Airtable, Google Sheets) write to a record, whatever the platform:
the status in words, the error, the link that always leads to a fresh download, the version (the run's turn)
and the credits, each in the field the connection maps it to (``fields``). No relay import here."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .base import Delivery, Document, Environment, Outcome

STATUS = {"task.started": "Generating", "task.completed": "Ready"}  # any other end is "Failed"


@dataclass(frozen=True)
class WriteBack:
    task_id: str
    record_key: str
    completed: bool
    values: dict[str, Any]
    """By mapping name (status, error, link, version, credits, updated_at): only what this stage writes. A
    start writes no link, version or credits."""


def write_back_of(delivery: Delivery, document: Document | None) -> WriteBack:
    event, task = delivery.event, delivery.event.get("data") or {}
    started, completed = event["type"] == "task.started", event["type"] == "task.completed"
    error = (
        "" if started or completed else _in_words(task.get("error"), task.get("status") or "failed")
    )
    values: dict[str, Any] = {
        "status": STATUS.get(event["type"], "Failed"),
        "error": error,
        "updated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    if not (delivery.config.get("fields") or {}).get("error") and error:
        values["status"] = f"Failed: {error}"  # no error field: the reason goes with the status
    if completed and document is not None:
        values["link"] = document.link
    if completed and task.get("turn_index") is not None:
        values["version"] = task["turn_index"]
    if not started and task.get("credits_used") is not None:
        values["credits"] = task["credits_used"]
    return WriteBack(task["task_id"], task.get("record_key") or "", completed, values)


def mapped(write_back: WriteBack, fields: dict[str, str]) -> dict[str, Any]:
    """The platform's field names with the values to write there."""
    return {fields[name]: value for name, value in write_back.values.items() if fields.get(name)}


def _in_words(error: Any, status: str) -> str:
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:500]
    return {
        "cancelled": "The task was cancelled.",
        "expired": "The task expired before it finished.",
    }.get(status, "The document could not be made.")


def marker(task_id: str) -> str:
    """Names the task in a note or a file, so a repeated attempt finds what an earlier one made."""
    return f"relay-task:{task_id}"


class RecordWriter:
    """What the record kinds share: the record is read while writing (nothing to find first), and the
    platform's client library loads only in a process that writes there (``writer``, a module whose
    ``write(delivery, document, env, parse_record)`` does it). A kind adds ``name``, ``scheme`` and
    ``parse_record``."""

    needs_document = True
    writer = ""

    def parse_record(self, record_key: str) -> dict[str, str]:
        raise NotImplementedError

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        return None

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        return importlib.import_module(self.writer).write(
            delivery, document, env, self.parse_record
        )
