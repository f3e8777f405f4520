"""HubSpot writes over its REST API (connectors.hubspot says what and why; connectors.hubspot.api how)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from typing import Any

from ..base import Delivery, DeliveryError, Document, Environment, Outcome, Permanent
from ..records import mapped, marker, write_back_of
from . import properties
from .api import HubSpotApi, InvalidValues, MissingScopes
from .scopes import needed, noun

NOTE_TO = {"contacts": 202, "companies": 190, "deals": 214, "tickets": 228}
"""HubSpot-defined association types from a note to each standard object (a custom object uses its default)."""
_MARKER = re.compile(r"relay-task:(tsk_[0-9A-Z]{26})")


def write(
    delivery: Delivery,
    document: Document | None,
    env: Environment,
    parse_record: Callable[[str], dict[str, str]],
) -> Outcome:
    write_back = write_back_of(delivery, document)
    record = parse_record(write_back.record_key)
    api = HubSpotApi(delivery, env)
    try:
        return _write(api, delivery, document, env, record)
    except MissingScopes as exc:
        # name every scope the write-back lacks, not only this call's: one fix, one replay
        raise MissingScopes(_lacking(api, delivery.config, record, exc.scopes)) from None


def _lacking(api: HubSpotApi, config: dict, record: dict, refused: list[str]) -> list[str]:
    try:
        granted = api.token_scopes()
    except DeliveryError:
        return refused
    return sorted({n.scope for n in needed(config, record["object_type"])} - granted) or refused


def _write(
    api: HubSpotApi,
    delivery: Delivery,
    document: Document | None,
    env: Environment,
    record: dict,
) -> Outcome:
    write_back = write_back_of(delivery, document)
    api.access_token()  # signs in first: a refused OAuth app fails even a write with nothing to write
    values = mapped(write_back, delivery.config.get("fields") or {})
    # every value in the shape its property takes, or refused here before anything is written
    adapted = adapted_values(api, record["object_type"], values) if values else {}
    location = f"hubspot:{record['object_type']}/{record['id']}"
    attach = write_back.completed and document is not None and delivery.config.get("attach", True)
    if not attach:
        _update(api, record, adapted)
        return Outcome(f"{location} ({write_back.values['status']})")
    assert document is not None
    # the note first: the record says Ready once its file is on it
    notes = _relay_notes(api, record)
    note_id = next(
        (note_id for note_id, (task_id, _) in notes.items() if task_id == write_back.task_id), None
    )
    if note_id is None:
        note_id = _attach(api, delivery, document, env, record, write_back.task_id)
    _update(api, record, adapted)
    if delivery.config.get("versions", "replace") == "replace":
        for earlier, (task_id, files) in notes.items():
            if task_id != write_back.task_id:
                _archive(api, earlier, files)
    return Outcome(f"{location} note {note_id}", note_id)


def adapted_values(api: HubSpotApi, object_type: str, values: dict[str, Any]) -> dict[str, str]:
    """``values`` as their properties take them, read from the definitions (read again once when the kept
    ones refuse a value: an option may have been added since)."""
    what = noun(object_type)
    try:
        return properties.adapt(values, properties.definitions(api, object_type), what)
    except Permanent:
        properties.forget(api, object_type)
        return properties.adapt(values, properties.definitions(api, object_type), what)


def _update(api: HubSpotApi, record: dict, values: dict[str, str]) -> None:
    if not values:
        return
    try:
        api.call(
            "PATCH",
            f"/crm/v3/objects/{record['object_type']}/{record['id']}",
            json={"properties": values},
        )
    except InvalidValues:
        properties.forget(api, record["object_type"])  # the next attempt reads what changed
        raise


# -- the file and its note ------------------------------------------------------------------------


def _relay_notes(api: HubSpotApi, record: dict) -> dict[str, tuple[str, list[str]]]:
    """The relay's notes on the record: note id -> (task id, attached file ids)."""
    ids: list[str] = []
    after = None
    while True:
        page = api.call(
            "GET",
            f"/crm/v4/objects/{record['object_type']}/{record['id']}/associations/notes",
            params={"limit": 500, **({"after": after} if after else {})},
        )
        ids += [str(result["toObjectId"]) for result in page.get("results") or []]
        after = ((page.get("paging") or {}).get("next") or {}).get("after")
        if not after:
            break
    notes: dict[str, tuple[str, list[str]]] = {}
    for start in range(0, len(ids), 100):
        answer = api.call(
            "POST",
            "/crm/v3/objects/notes/batch/read",
            json={
                "inputs": [{"id": i} for i in ids[start : start + 100]],
                "properties": ["hs_note_body", "hs_attachment_ids"],
                "propertiesWithHistory": [],
            },
        )
        for note in answer.get("results") or []:
            found = _MARKER.search((note.get("properties") or {}).get("hs_note_body") or "")
            if found:
                attached = (note["properties"].get("hs_attachment_ids") or "").split(";")
                notes[str(note["id"])] = (found[1], [f for f in attached if f])
    return notes


def _attach(
    api: HubSpotApi,
    delivery: Delivery,
    document: Document,
    env: Environment,
    record: dict,
    task_id: str,
) -> str:
    state = dict(delivery.state)
    if not state.get("file_id"):
        state["file_id"] = _upload(api, delivery, document)
        # a repeated attempt attaches this file, not a second one
        env.save_state(delivery.delivery_id, state)
    standard = NOTE_TO.get(record["object_type"])
    if not state.get("note_id"):
        body = (
            f"<p><strong>{escape(document.name)}</strong> is ready.</p>"
            f'<p><a href="{escape(document.link)}">Download the latest copy</a></p><p>{marker(task_id)}</p>'
        )
        associations = (
            [
                {
                    "to": {"id": record["id"]},
                    "types": [
                        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": standard}
                    ],
                }
            ]
            if standard
            else []
        )
        note = api.call(
            "POST",
            "/crm/v3/objects/notes",
            json={
                "properties": {
                    "hs_note_body": body,
                    "hs_attachment_ids": state["file_id"],
                    "hs_timestamp": datetime.now(UTC).isoformat(),
                },
                "associations": associations,
            },
        )
        state["note_id"] = str(note["id"])
        env.save_state(delivery.delivery_id, state)
    if standard:
        return state["note_id"]
    # a custom object: the note made above (or by an attempt that stopped here) gets the default association
    api.call(
        "PUT",
        f"/crm/v4/objects/notes/{state['note_id']}/associations/default/"
        f"{record['object_type']}/{record['id']}",
    )
    return state["note_id"]


def _upload(api: HubSpotApi, delivery: Delivery, document: Document) -> str:
    """The document into the Files API, streamed from a temporary file (the multipart body needs its
    length, and a retried call sends it again)."""
    limit = int(delivery.config.get("max_upload_mb", 300)) * 1024 * 1024
    if document.size is not None and document.size > limit:
        raise Permanent(
            f"the document is {document.size // 2**20} MiB, over this connection's max_upload_mb"
        )
    folder = tempfile.mkdtemp(prefix="relay-hubspot-")
    try:
        path = os.path.join(folder, "document")
        with document.open(0) as chunks, open(path, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        options = json.dumps(
            {"access": delivery.config.get("file_access", "PRIVATE"), "overwrite": False}
        )
        with open(path, "rb") as file:
            uploaded = api.call(
                "POST",
                "/files/v3/files",
                upload=True,
                files={"file": (document.name, file, document.content_type)},
                data={
                    "folderPath": delivery.config.get("folder_path", "/Overten Relay"),
                    "fileName": document.name,
                    "options": options,
                },
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return str(uploaded["id"])


def _archive(api: HubSpotApi, note_id: str, files: list[str]) -> None:
    """An earlier version under the replace policy: its note and the files on it (already gone is fine)."""
    with contextlib.suppress(Permanent):
        api.call("DELETE", f"/crm/v3/objects/notes/{note_id}")
    for file_id in files:
        with contextlib.suppress(Permanent):
            api.call("DELETE", f"/files/v3/files/{file_id}")
