"""The /v1 API: submit documents, follow tasks, records and events, who am I."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify, request

import schemas
from app.core.errors import Conflict, Invalid, NotFound, UpstreamFailed
from app.core.formats import document_formats
from app.core.states import TASK_ENDED, TaskStatus
from app.core.storage import DoneNotReplicated
from app.core.upstream import UpstreamError
from app.domain import deliveries, exports, links, submit, tracking
from app.domain.serializers import record_view, task_view
from app.stores.audit import Action
from app.stores.destinations import check_config
from app.stores.idempotency import StoredAnswer, fingerprint
from app.stores.tasks import Task
from app.web.auditing import audited
from app.web.base import ctx, public, record_path, require_tenant, tenant
from app.web.openapi import ERROR, JSON, V1
from app.web.routing import Routes, json_body, query_params
from connectors.registry import RECORD_KINDS

bp = Blueprint("api", __name__, url_prefix="/v1")
bp.before_request(require_tenant)
route = Routes(bp, V1)


@route(
    "GET", "/me", "The tenant behind the API key, and its usage", {200: "relay/me.json", 401: ERROR}
)
def me():
    current = tenant()
    return jsonify(
        {
            "tenant_id": current.tenant_id,
            "name": current.name,
            "upstream_url": current.upstream_url,
            "usage": ctx().tenants.usage(current.tenant_id),
        }
    )


@route(
    "GET",
    "/formats",
    "The document formats, labelled",
    {200: None, 401: ERROR},
    response_type={200: JSON},
)
def formats():
    """The formats POST /v1/documents takes, labelled (dynamic dropdowns in Zapier and Make)."""
    return jsonify({"items": document_formats()})


def check_destinations(body: dict) -> None:
    """Saved ids must exist (the schema has checked inline kinds and configs), before anything is submitted."""
    for n, ref in enumerate(body.get("destinations") or []):
        if ref.get("id"):
            saved = ctx().destinations.get(tenant().tenant_id, ref["id"])
            if saved is None:
                raise NotFound(
                    "destination_not_found",
                    "no saved destination with this id",
                    field=f"destinations.{n}.id",
                )
            if saved.kind in RECORD_KINDS:
                raise Invalid(
                    "invalid_request",
                    f"a {saved.kind} connection writes back to the record: "
                    "name it in write_back.connection",
                    field=f"destinations.{n}.id",
                )
            continue
        try:
            ref["config"] = check_config(ref["kind"], ref.get("config") or {})
        except schemas.SchemaViolation as exc:
            raise schemas.SchemaViolation(
                [schemas.FieldError(f"destinations.{n}.{e.field}", e.message) for e in exc.errors]
            ) from None


@route(
    "POST",
    "/documents",
    "Generate or change a document",
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
)
def create_document():
    body = json_body()
    received = fingerprint(body)
    check_destinations(body)
    return idempotent(received, lambda: _submit(body))


def idempotent(received: str, answer: Callable[[], tuple[Response, int]]):
    """``answer()``, or the answer it gave before to the same Idempotency-Key and body. ``received`` is the
    body's fingerprint as it came, taken before the checks complete it (a webhook's new random secret)."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 255:
        raise Invalid(
            "invalid_request",
            "Idempotency-Key must be at most 255 characters.",
            field="Idempotency-Key",
        )
    if not key:
        return answer()
    store, tenant_id, print_ = ctx().idempotency, tenant().tenant_id, received
    stored = store.begin(tenant_id, key, print_)
    if stored is not None:
        return jsonify(stored.body), stored.status, {"Idempotent-Replayed": "true"}
    try:
        response, status = answer()
    except DoneNotReplicated as exc:
        # done on the primary, not yet confirmed: a retry gets this answer (or, if the primary goes, runs)
        store.finish(tenant_id, key, print_, StoredAnswer(*exc.done))
        raise
    except Exception:
        store.abandon(tenant_id, key)
        raise
    store.finish(tenant_id, key, print_, StoredAnswer(status, response.get_json()))
    return response, status


def _submit(body: dict):
    try:
        task = submit.submit(ctx(), tenant(), submit.SubmitRequest.from_body(body))
    except DoneNotReplicated as exc:  # what was done, as the answer a retry will get
        raise DoneNotReplicated(_answer(exc.done), exc) from exc
    wait = min(int(body.get("wait") or 0), ctx().config.max_wait_seconds)
    if wait:
        task = submit.wait_for(ctx(), task.task_id, wait)
    status, answer = _answer(task)
    return jsonify(answer), status


def _answer(task: Task) -> tuple[int, dict]:
    """A submit's answer: 200 with the task once it has ended, else 202 with its ids and links."""
    view = task_answer(task)
    links = {"task": public(f"/v1/tasks/{task.task_id}")}
    if view["record_key"]:
        links["record"] = public(record_path(view["record_key"]))
    if task.status in TASK_ENDED:
        return 200, {**view, "links": links}
    return 202, {
        "task_id": view["task_id"],
        "run_id": view["run_id"],
        "record_key": view["record_key"],
        "status": view["status"],
        "run_restarted": view["run_restarted"],
        "links": links,
    }


@route(
    "GET",
    "/tasks/<task_id>",
    "A task: status, progress, result, deliveries",
    {200: "relay/task.json", 401: ERROR, 404: ERROR},
)
def get_task(task_id: str):
    task = ctx().tasks.get(task_id, tenant().tenant_id)
    if task is None:
        raise NotFound("task_not_found", "No task with that id.")
    return jsonify(task_answer(tracking.refresh(ctx(), task)))


def task_answer(task: Task) -> dict:
    """A task as the API answers it: its view, its deliveries, links to its document."""
    view = task_view(task, deliveries.for_task(ctx(), task))
    return {**view, **links.document_links(ctx(), view)}


def _record_key(record_key: str) -> str:
    schemas.validate("relay/record-key.json", {"record_key": record_key})
    return record_key


@route(
    "GET",
    "/records/<path:record_key>",
    "A record's documents and tasks",
    {200: "relay/record.json", 400: ERROR, 401: ERROR, 404: ERROR},
)
def get_record(record_key: str):
    tenant_id = tenant().tenant_id
    record = ctx().records.get(tenant_id, _record_key(record_key))
    if record is None:
        raise NotFound("record_not_found", "No record with that key.")
    tasks = ctx().tasks.many(ctx().records.task_ids(tenant_id, record_key))
    view = record_view(record, tasks)
    if view["latest_result"]:
        view["latest_result"]["file_url"] = links.file_link(ctx(), view["latest_result"]["task_id"])
    return jsonify(view)


@route(
    "DELETE",
    "/records/<path:record_key>",
    "Forget a record: its next prompt starts new documents",
    {204: None, 400: ERROR, 401: ERROR, 404: ERROR},
)
@audited(Action.RECORD_FORGOTTEN, "record", "record_key")
def forget_record(record_key: str):
    if not ctx().records.forget(tenant().tenant_id, _record_key(record_key)):
        raise NotFound("record_not_found", "No record with that key.")
    return "", 204


@route(
    "GET",
    "/events",
    "Task events, newest first (polling triggers)",
    {200: "items:relay/event.json", 400: ERROR, 401: ERROR},
    query="relay/events-query.json",
)
def list_events():
    query = query_params()
    events = ctx().events.newest(tenant().tenant_id, query.get("type"), query.get("limit", 50))
    return jsonify({"items": [links.with_links(ctx(), event) for event in events]})


@route(
    "POST",
    "/exports",
    "A link to a finished document in another format",
    {201: None, 400: ERROR, 401: ERROR, 404: ERROR, 409: ERROR, 502: ERROR},
    body="relay/export-create.json",
    response_type={201: JSON},
)
def create_export():
    """A link to a finished document in another format; the link fetches a fresh copy each time."""
    body = json_body()
    task = _export_source(body)
    try:
        link = exports.export_link(ctx(), tenant(), task, body["format"])
    except UpstreamError as exc:
        kind = UpstreamFailed if exc.status is None or exc.status >= 500 else Conflict
        raise kind(
            "export_failed",
            f"The API could not export the document: {exc.message}",
            field="format",
        ) from None
    return jsonify(
        {
            "task_id": task.task_id,
            "run_id": task.run_id,
            "record_key": task.record_key,
            "format": body["format"],
            "file_url": link,
        }
    ), 201


def _export_source(body: dict) -> Task:
    tenant_id = tenant().tenant_id
    if body.get("task_id"):
        task = ctx().tasks.get(body["task_id"], tenant_id)
        if task is None or task.status != TaskStatus.COMPLETED:
            raise NotFound("task_not_found", "No completed task with that id.", field="task_id")
        return task
    latest = exports.latest_document(ctx(), tenant_id, body["record_key"])
    if latest is None:
        raise NotFound(
            "record_not_found", "This record has no finished document yet.", field="record_key"
        )
    return latest
