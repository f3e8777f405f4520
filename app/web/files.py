"""GET /files/{token}: a signed, expiring link (in emails, messages, Zapier file fields) that redirects
to a fresh download URL of the document, so it outlives the API's 24-hour links."""

from __future__ import annotations

from flask import Blueprint, Response, redirect

from app.core.tokens import TokenExpired, TokenInvalid
from app.core.upstream import UpstreamError
from app.domain import batch_files
from app.web.base import ctx
from schemas.http import ApiError

bp = Blueprint("files", __name__)


@bp.get("/files/<token>")
def file(token: str):
    try:
        payload = ctx().tokens.open_file(token, max_age=ctx().config.files_link_ttl_seconds)
    except TokenExpired:
        raise ApiError(
            410, "link_expired", "This link has expired; ask for the document again."
        ) from None
    except TokenInvalid:
        raise ApiError(404, "link_invalid", "This link is not valid.") from None
    if payload.get("b"):  # a batch's manifest, or its ZIP (app.domain.batch_files)
        return _batch_file(payload)
    task = ctx().tasks.get(payload["t"])
    tenant = ctx().tenants.get(task.tenant_id) if task else None
    if task is None or tenant is None or not task.run_id:
        raise ApiError(404, "not_found", "The document behind this link is gone.")
    try:
        with ctx().upstream(tenant) as client:
            url = (
                client.export(task.run_id, payload["x"]).download_url
                if payload.get("x")
                else client.download_location(task.run_id)
            )
    except UpstreamError as exc:
        raise ApiError(
            502 if exc.status is None or exc.status >= 500 else 410,
            "document_unavailable",
            f"The document cannot be fetched right now: {exc.message}",
        ) from None
    return redirect(url, code=302)


def _batch_file(payload: dict) -> Response:
    batch = ctx().batches.get(payload["b"])
    if batch is None:
        raise ApiError(404, "not_found", "The batch behind this link is gone.")
    if payload.get("z"):
        return Response(
            batch_files.archive(ctx(), batch),
            mimetype="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{batch["batch_id"]}.zip"'},
        )
    return Response(
        batch_files.manifest(ctx(), batch),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{batch["batch_id"]}.csv"'},
    )
