"""/v1/batches: one document per row of JSON or CSV (app.domain.batches), its progress, its rows, retry,
cancel and the manifest."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

import schemas
from app.domain import batch_files, batch_rows, batches, deliveries
from app.domain.write_back import WriteBackRefused
from app.web.api import check_destinations, idempotent
from app.web.base import ctx, public, require_tenant, tenant
from schemas.http import ApiError, json_body, query_params

bp = Blueprint("batches", __name__, url_prefix="/v1")
bp.before_request(require_tenant)

_SETTINGS = ("format", "prompt_template", "export", "callback_url", "on_error")


@bp.post("/batches")
def create_batch():
    body = _batch_body()
    check_destinations(body)
    return idempotent(body, lambda: _create(body))


def _create(body: dict) -> tuple[Response, int]:
    try:
        batch = batches.create(ctx(), tenant(), body)
    except WriteBackRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message, field=exc.field) from None
    except batches.BatchInvalid as exc:
        faults = [{"row": f.row, "column": f.column, "message": f.message} for f in exc.faults]
        first = exc.faults[0]
        raise ApiError(
            400,
            "invalid_batch",
            f"{_faults(len(faults))}; the first: row "
            f"{first.row}, {first.column or 'the file'}: {first.message}",
            field=f"rows.{first.row - 1}.{first.column}" if first.row else first.column or "rows",
            errors=faults[: batches.MAX_ERRORS],
            count=len(faults),
        ) from None
    return jsonify(_answer(batch)), 202


def _faults(count: int) -> str:
    return "1 row or column is at fault" if count == 1 else f"{count} rows or columns are at fault"


def _batch_body() -> dict[str, Any]:
    """The batch as JSON, or built from a CSV upload (text/csv with the settings in the query string, or
    multipart/form-data with a ``file``); checked against relay/batch-create.json either way."""
    kind = (request.mimetype or "").lower()
    if kind == "text/csv":
        return _from_csv(request.get_data(as_text=True), request.args)
    if kind == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(
                400,
                "invalid_request",
                "a multipart batch needs a CSV in its file field",
                field="file",
            )
        return _from_csv(upload.read().decode("utf-8", errors="replace"), request.form)
    return json_body("relay/batch-create.json")


def _from_csv(text: str, settings) -> dict[str, Any]:
    try:
        rows = batches.rows_from_csv(text)
    except WriteBackRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message, field=exc.field) from None
    except batches.BatchInvalid as exc:
        raise ApiError(400, "invalid_batch", exc.faults[0].message, field="file") from None
    body: dict[str, Any] = {name: settings[name] for name in _SETTINGS if settings.get(name)}
    body["rows"] = rows
    if settings.get("skip_done"):
        body["skip_done"] = settings["skip_done"].lower() not in ("false", "0", "no")
    if settings.get("destinations"):
        body["destinations"] = [
            {"id": ref.strip()} for ref in settings["destinations"].split(",") if ref.strip()
        ]
    if settings.get("write_back"):
        body["write_back"] = {"connection": settings["write_back"]}
    schemas.validate("relay/batch-create.json", body)
    return body


@bp.get("/batches/<batch_id>")
def get_batch(batch_id: str):
    return jsonify(_answer(_batch(batch_id)))


@bp.get("/batches/<batch_id>/rows")
def batch_rows_page(batch_id: str):
    query = query_params("relay/batch-rows-query.json")
    batch = _batch(batch_id)
    rows, cursor = batches.page(
        ctx(), batch, query.get("state"), query.get("cursor", 0), query.get("limit", 100)
    )
    return jsonify({"items": rows, "next_cursor": cursor})


@bp.post("/batches/<batch_id>/retry")
def retry_batch(batch_id: str):
    batch = _batch(batch_id)
    retried = batches.retry(ctx(), batch)
    return jsonify({**_answer(ctx().batches.get(batch_id) or batch), "retried": retried}), 202


@bp.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str):
    batch = _batch(batch_id)
    if batch["status"] != "running":
        raise ApiError(
            409, "batch_ended", f"the batch has ended ({batch['status']})", field="batch_id"
        )
    cancelled = batches.cancel(ctx(), batch)
    return jsonify({**_answer(ctx().batches.get(batch_id) or batch), "cancelled": cancelled}), 202


@bp.get("/batches/<batch_id>/files.zip")
def batch_archive(batch_id: str):
    batch = _batch(batch_id)
    return Response(
        batch_files.archive(ctx(), batch),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}.zip"'},
    )


@bp.get("/batches/<batch_id>/manifest.csv")
def batch_manifest(batch_id: str):
    batch = _batch(batch_id)
    return Response(
        batch_files.manifest(ctx(), batch),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}.csv"'},
    )


def _batch(batch_id: str) -> dict:
    batch = ctx().batches.get(batch_id, tenant().tenant_id)
    if batch is None:
        raise ApiError(404, "batch_not_found", "no batch with this id", field="batch_id")
    return batch


def _answer(batch: dict) -> dict:
    path = f"/v1/batches/{batch['batch_id']}"
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
