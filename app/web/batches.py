"""/v1/batches: one document per row of JSON or CSV (app.domain.batches), its progress, its rows, retry,
cancel and the manifest."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

import schemas
from app.core.errors import Conflict, Invalid, NotFound
from app.core.states import BatchStatus
from app.domain import batch_csv, batch_files, batch_rows, batches, deliveries
from app.domain.batch_template import RowFault
from app.stores.audit import Action
from app.stores.batches import Batch
from app.stores.idempotency import fingerprint
from app.web.api import check_destinations, idempotent
from app.web.auditing import audited
from app.web.base import ctx, public, require_tenant, tenant
from app.web.openapi import CSV, ERROR, V1
from app.web.routing import Routes, body_schema, query_params
from schemas import http

bp = Blueprint("batches", __name__, url_prefix="/v1")
bp.before_request(require_tenant)
route = Routes(bp, V1)

_SETTINGS = ("format", "prompt_template", "export", "callback_url", "on_error")


@route(
    "POST",
    "/batches",
    "One document per row of JSON or CSV (text/csv, multipart), at the API's pace",
    {
        202: "relay/batch.json",
        400: ERROR,
        401: ERROR,
        402: ERROR,
        404: ERROR,
        409: ERROR,
        413: ERROR,
        422: ERROR,
        503: ERROR,
    },
    body="relay/batch-create.json",
)
def create_batch():
    body, lines, faults = _batch_body()
    received = fingerprint(body)  # before the checks give an inline webhook its secret
    check_destinations(body)
    return idempotent(received, lambda: _create(body, lines, faults))


def _create(body: dict, lines: list[int] | None, faults: list[RowFault]) -> tuple[Response, int]:
    return jsonify(_answer(batches.create(ctx(), tenant(), body, lines, faults))), 202


def _batch_body() -> tuple[dict[str, Any], list[int] | None, list[RowFault]]:
    """The batch as JSON, or built from a CSV upload (text/csv with the settings in the query string, or
    multipart/form-data with a ``file``), checked against the declared body schema either way. Also each
    row's line in the file, and the rows' schema faults, listed with the template's (app.domain.batches)."""
    kind = (request.mimetype or "").lower()
    if kind == "text/csv":
        return _from_csv(request.get_data(), request.args)
    if kind == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise Invalid(
                "invalid_request",
                "a multipart batch needs a CSV in its file field",
                field="file",
            )
        return _from_csv(upload.read(), request.form)
    body = http.parse_json(request.get_data())
    if not isinstance(body, dict):
        raise http.ApiError(400, "invalid_json", "The request body must be a JSON object.")
    return body, None, _row_faults(body, None)


def _from_csv(data: bytes, settings) -> tuple[dict[str, Any], list[int], list[RowFault]]:
    try:
        read = batch_csv.read(data)
    except batch_csv.FileRefused as exc:
        raise batches.BatchInvalid(exc.faults) from None
    body: dict[str, Any] = {name: settings[name] for name in _SETTINGS if settings.get(name)}
    body["rows"] = read.rows
    if settings.get("skip_done"):
        body["skip_done"] = settings["skip_done"].lower() not in ("false", "0", "no")
    if settings.get("destinations"):
        body["destinations"] = [
            {"id": ref.strip()} for ref in settings["destinations"].split(",") if ref.strip()
        ]
    if settings.get("write_back"):
        body["write_back"] = {"connection": settings["write_back"]}
    return body, read.lines, _row_faults(body, read.lines)


def _row_faults(body: dict[str, Any], lines: list[int] | None) -> list[RowFault]:
    """The rows' faults by the schema; a fault of the body itself is raised."""
    try:
        schemas.validate(body_schema(), body)
    except schemas.SchemaViolation as exc:
        faults = batches.row_faults([(e.field, e.message) for e in exc.errors], lines)
        if faults is None:
            raise
        return faults
    return []


@route(
    "GET",
    "/batches/<batch_id>",
    "A batch's progress",
    {200: "relay/batch.json", 401: ERROR, 404: ERROR},
)
def get_batch(batch_id: str):
    return jsonify(_answer(_batch(batch_id)))


@route(
    "GET",
    "/batches/<batch_id>/rows",
    "A batch's rows, by state, a page at a time",
    {200: "items:relay/batch-row.json", 400: ERROR, 401: ERROR, 404: ERROR},
    query="relay/batch-rows-query.json",
)
def batch_rows_page(batch_id: str):
    query = query_params()
    batch = _batch(batch_id)
    rows, cursor = batches.page(
        ctx(), batch, query.get("state"), query.get("cursor", 0), query.get("limit", 100)
    )
    return jsonify({"items": rows, "next_cursor": cursor})


@route(
    "POST",
    "/batches/<batch_id>/retry",
    "Run the failed rows again",
    {202: "relay/batch.json", 401: ERROR, 404: ERROR},
)
@audited(Action.BATCH_RETRIED, "batch", "batch_id")
def retry_batch(batch_id: str):
    batch = _batch(batch_id)
    retried = batches.retry(ctx(), batch)
    return jsonify({**_answer(ctx().batches.get(batch_id) or batch), "retried": retried}), 202


@route(
    "POST",
    "/batches/<batch_id>/cancel",
    "Cancel the rows that have not ended",
    {202: "relay/batch.json", 401: ERROR, 404: ERROR, 409: ERROR},
)
@audited(Action.BATCH_CANCELLED, "batch", "batch_id")
def cancel_batch(batch_id: str):
    batch = _batch(batch_id)
    if batch.status != BatchStatus.RUNNING:
        raise Conflict("batch_ended", f"the batch has ended ({batch.status})", field="batch_id")
    cancelled = batches.cancel(ctx(), batch)
    return jsonify({**_answer(ctx().batches.get(batch_id) or batch), "cancelled": cancelled}), 202


@route(
    "GET",
    "/batches/<batch_id>/files.zip",
    "Every finished file and the manifest, streamed",
    {200: None, 401: ERROR, 404: ERROR},
    response_type={200: "application/zip"},
)
def batch_archive(batch_id: str):
    batch = _batch(batch_id)
    return Response(
        batch_files.archive(ctx(), batch),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}.zip"'},
    )


@route(
    "GET",
    "/batches/<batch_id>/manifest.csv",
    "Row, record, status, file link, credits and error",
    {200: None, 401: ERROR, 404: ERROR},
    response_type={200: CSV},
)
def batch_manifest(batch_id: str):
    batch = _batch(batch_id)
    return Response(
        batch_files.manifest(ctx(), batch),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}.csv"'},
    )


def _batch(batch_id: str) -> Batch:
    batch = ctx().batches.get(batch_id, tenant().tenant_id)
    if batch is None:
        raise NotFound("batch_not_found", "no batch with this id", field="batch_id")
    return batch


def _answer(batch: Batch) -> dict:
    path = f"/v1/batches/{batch.batch_id}"
    links = {
        "batch": public(path),
        "rows": public(f"{path}/rows"),
        "manifest": public(f"{path}/manifest.csv"),
        "zip": public(f"{path}/files.zip"),
    }
    return {
        **batch_rows.view(batch),
        "deliveries": deliveries.for_batch(ctx(), batch),
        "links": links,
    }
