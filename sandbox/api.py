"""The authenticated API: generation endpoints, tasks and runs, as the contract describes them."""

from __future__ import annotations

import random

from flask import Blueprint, g, jsonify, redirect, request

from schemas.http import ApiError, query_params

from .builders import PRODUCTS, TEXT_KINDS
from .clock import iso
from .exports import SUPPORTED, ConversionFailed, ConverterMissing
from .http import base_url, json_body, sandbox
from .links import FileRef
from .store import TERMINAL, hash_key
from .tasks import RunExpired, RunFormatMismatch, RunNotFound

bp = Blueprint("api", __name__)


@bp.before_request
def authenticate():
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(
            401,
            "unauthorized",
            "Send your API key as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    org = sandbox().store.org_for_key(key)
    if org is None:
        raise ApiError(
            401,
            "invalid_api_key",
            "That API key is not valid.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    allowed, remaining, reset = sandbox().limiter.hit(hash_key(key))
    g.rate_headers = {
        "X-RateLimit-Limit": str(sandbox().config.rate_limit_requests),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset),
    }
    if not allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests; retry in {reset} s.",
            headers={**g.rate_headers, "Retry-After": str(reset)},
        )
    if random.random() < sandbox().config.error_rate:
        raise ApiError(
            503,
            "unavailable",
            "The service is briefly unavailable; retry shortly.",
            headers={"Retry-After": "1"},
        )
    g.org = org


@bp.after_request
def rate_headers(response):
    for name, value in getattr(g, "rate_headers", {}).items():
        response.headers[name] = value  # once: a 429 already carries them
    return response


# -- generation ------------------------------------------------------------------------------------


@bp.post("/excel/generate")
def excel():
    return _generate("excel")


@bp.post("/word/generate")
def word():
    return _generate("word")


@bp.post("/slides/generate")
def slides():
    return _generate("slides")


@bp.post("/slides/outline")
def outline():
    return _generate("outline")


@bp.post("/text/<kind>")
def text(kind: str):
    if kind not in TEXT_KINDS:
        raise ApiError(
            404,
            "unknown_text_kind",
            f"No /text/{kind} endpoint; use one of: {', '.join(TEXT_KINDS)}.",
            kinds=list(TEXT_KINDS),
        )
    return _generate(f"text/{kind}")


def _generate(kind: str):
    body = json_body("upstream/generate-request.json")
    box = sandbox()
    promote = not body.get("async") and box.executor.saturated()
    try:
        task = box.submit(g.org, kind, body, base_url())
    except RunNotFound:
        raise ApiError(404, "run_not_found", "No run with that run_id.", field="run_id") from None
    except RunExpired:
        raise ApiError(
            410,
            "run_expired",
            "This run has expired (no task in the retention period) and can "
            "no longer be resumed; start a fresh run by leaving out run_id.",
            field="run_id",
        ) from None
    except RunFormatMismatch as exc:
        raise ApiError(
            400,
            "run_format_mismatch",
            f"This run was made by the {exc} endpoint; resume it there.",
            field="run_id",
        ) from None
    accepted = {"run_id": task["run_id"], "task_id": task["task_id"], "status": "queued"}
    location = {"Location": f"/tasks/{task['task_id']}"}
    if body.get("async"):
        return jsonify(accepted), 202, location
    if promote:
        message = "The server signalled an intermediate delay (worker pool saturated); continuing asynchronously."
        return jsonify({**accepted, "message": message}), 202, location
    ceiling = box.config.sync_ceiling_seconds
    if not box.executor.wait(task["task_id"], ceiling):
        current = box.store.get_task(task["task_id"]) or task
        message = f"Sync ceiling ({ceiling:g}s) exceeded; continuing asynchronously."
        return jsonify({**accepted, "status": current["status"], "message": message}), 202, location
    view = box.service.view(box.store.get_task(task["task_id"]) or task)
    result = view["result"] or {}
    answer = {
        "run_id": view["run_id"],
        "task_id": view["task_id"],
        "status": view["status"],
        "download_url": result.get("download_url"),
        "edit_url": result.get("edit_url"),
        "summary": result.get("summary"),
        "credits_used": view["credits_used"],
        "duration_ms": view["duration_ms"],
    }
    if view["error"]:
        answer["error"] = view["error"]
    return jsonify(answer), 200


# -- tasks -----------------------------------------------------------------------------------------


def _own_task(task_id: str) -> dict:
    task = sandbox().store.get_task(task_id, g.org["org_id"])
    if task is None:
        raise ApiError(404, "task_not_found", "No task with that id.")
    return task


@bp.get("/tasks/<task_id>")
def get_task(task_id: str):
    task = _own_task(task_id)
    if task["status"] == "queued" and sandbox().service.expire_stale():
        task = _own_task(task_id)
    return jsonify(sandbox().service.view(task))


@bp.post("/tasks/<task_id>/cancel")
def cancel_task(task_id: str):
    task = _own_task(task_id)
    if task["status"] in TERMINAL:
        raise ApiError(
            409, "task_finished", f"The task already ended ({task['status']}); nothing to cancel."
        )
    box = sandbox()
    box.service.cancel(task)
    box.executor.cancel(task_id)
    view = box.service.view(_own_task(task_id))
    return jsonify(view), 200 if view["status"] == "cancelled" else 202


# -- runs ------------------------------------------------------------------------------------------


def _own_run(run_id: str) -> dict:
    run = sandbox().store.get_run(run_id, g.org["org_id"])
    if run is None:
        raise ApiError(404, "run_not_found", "No run with that id.")
    return run


@bp.get("/runs")
def list_runs():
    query = query_params("upstream/runs-query.json")
    limit, box = query.get("limit", 20), sandbox()
    items, cursor = [], query.get("cursor")
    while len(items) <= limit:
        page = box.store.page_of_runs(g.org["org_id"], cursor, 100)
        if not page:
            break
        for run_id in page:
            run = box.store.get_run(run_id)
            if run and _matches(run, query):
                items.append(_run_item(run))
        cursor = page[-1]
    more = len(items) > limit
    items = items[:limit]
    return jsonify({"items": items, "next_cursor": items[-1]["run_id"] if more else None})


def _matches(run: dict, query: dict) -> bool:
    status = sandbox().service.run_status(run)
    return query.get("format") in (None, run["format"]) and query.get("status") in (None, status)


def _run_item(run: dict) -> dict:
    return {
        "run_id": run["run_id"],
        "format": run["format"],
        "status": sandbox().service.run_status(run),
        "prompt": run["prompt"][:200],
        "credits_used": int(run["credits_used"]),
        "duration_ms": int(run["duration_ms"]),
        "created_at": iso(float(run["created_at"])),
        "file_name": run["file_name"] or None,
    }


@bp.get("/runs/<run_id>")
def get_run(run_id: str):
    run, box = _own_run(run_id), sandbox()
    expires = float(run["last_task_at"]) + box.config.run_retention_seconds
    return jsonify(
        {
            **_run_item(run),
            "updated_at": iso(float(run["updated_at"])),
            "expires_at": iso(expires),
            "task_count": int(run["task_count"]),
            "turn_count": int(run["turn_count"]),
            "latest_task_id": run["latest_task_id"] or None,
            **box.service.run_links(base_url(), run),
        }
    )


@bp.get("/runs/<run_id>/download")
def download_run(run_id: str):
    run = _own_run(run_id)
    _require_document(run)
    return redirect(sandbox().service.run_links(base_url(), run)["download_url"], code=302)


@bp.post("/runs/<run_id>/export")
def export_run(run_id: str):
    body = json_body("upstream/export-request.json")
    run, box = _own_run(run_id), sandbox()
    _require_document(run)
    source_ext = PRODUCTS[run["kind"]].extension
    fmt, targets = body["format"], SUPPORTED[source_ext]
    if fmt not in targets:
        listed = ", ".join(targets) or "nothing (this format has no exports)"
        raise ApiError(
            400,
            "unsupported_export",
            f"A {source_ext} document exports to {listed}.",
            field="format",
            supported=list(targets),
        )
    task_id = run["latest_task_id"]
    out = box.files.export(run["org_id"], run_id, task_id, fmt)
    cached = box.store.cached_export(task_id, fmt) is not None and out.exists()
    if not cached:
        source = box.files.document(run["org_id"], run_id, task_id, source_ext)
        try:
            box.exporter.convert(source, source_ext, fmt, out, run["prompt"][:80])
        except ConverterMissing as exc:
            raise ApiError(501, "converter_missing", str(exc), field="format") from None
        except ConversionFailed as exc:
            raise ApiError(502, "conversion_failed", str(exc)) from None
        box.store.remember_export(task_id, fmt, str(out.relative_to(box.files.root)))
    token, expires = box.links.download_token(FileRef(run_id, task_id, fmt))
    return jsonify(
        {
            "format": fmt,
            "download_url": f"{base_url()}/files/{token}",
            "expires_at": iso(expires),
            "cached": cached,
        }
    )


def _require_document(run: dict) -> None:
    if run.get("bytes_deleted"):
        raise ApiError(
            410, "document_deleted", "This run expired and its document has been deleted."
        )
    if not run["latest_task_id"]:
        raise ApiError(409, "no_document", "This run has no finished document yet.")
