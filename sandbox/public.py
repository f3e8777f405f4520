"""Unauthenticated routes whose token is the capability: signed downloads, the read-only view, health."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, jsonify, send_file

from schemas.http import ApiError

from .builders import PRODUCTS
from .files import CONTENT_TYPES
from .http import sandbox
from .links import LinkExpired, LinkInvalid
from .render import to_html

bp = Blueprint("public", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/files/<token>")
def download(token: str):
    box = sandbox()
    try:
        ref = box.links.open_download(token)
    except LinkInvalid:
        raise ApiError(404, "link_invalid", "This download link is not valid.") from None
    except LinkExpired:
        raise ApiError(
            410,
            "link_expired",
            "This download link has expired; ask the API for a fresh one (GET /runs/{run_id}).",
        ) from None
    run = box.store.get_run(ref.run_id)
    if run is None:
        raise ApiError(404, "run_not_found", "The document behind this link does not exist.")
    product = PRODUCTS[run["kind"]]
    if ref.export:
        path = box.files.export(run["org_id"], ref.run_id, ref.task_id, ref.export)
        ext, name = ref.export, f"{Path(product.file_name).stem}.{ref.export}"
    else:
        path = box.files.document(run["org_id"], ref.run_id, ref.task_id, product.extension)
        ext, name = product.extension, product.file_name
    if not path.exists():
        raise ApiError(
            410, "document_deleted", "This document has been deleted (retention period over)."
        )
    return send_file(
        path,
        mimetype=CONTENT_TYPES[ext],
        as_attachment=True,
        download_name=name,
        conditional=True,
        max_age=0,
    )


@bp.get("/view/<token>")
def view(token: str):
    box = sandbox()
    try:
        run_id = box.links.open_view(token)
    except LinkInvalid:
        raise ApiError(404, "link_invalid", "This view link is not valid.") from None
    run = box.store.get_run(run_id)
    if run is None or not run["latest_task_id"] or run.get("bytes_deleted"):
        raise ApiError(404, "no_document", "There is no document to show for this run.")
    product = PRODUCTS[run["kind"]]
    path = box.files.document(run["org_id"], run_id, run["latest_task_id"], product.extension)
    html = to_html(path, product.extension, run["prompt"][:80])
    return Response(
        html,
        mimetype="text/html",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )
