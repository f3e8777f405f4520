"""GET /files/{token}: a signed, expiring link (in emails, messages, Zapier file fields) that redirects
to a fresh download URL of the document, so it outlives the API's 24-hour links."""

from __future__ import annotations

from flask import Blueprint, Response, redirect

from app.core.errors import Gone, NotFound, UpstreamFailed
from app.core.tokens import TokenExpired, TokenInvalid
from app.core.upstream import UpstreamError
from app.domain import batch_files
from app.web.base import ctx
from app.web.openapi import ERROR, V1
from app.web.routing import Routes

bp = Blueprint("files", __name__)
route = Routes(bp, V1, auth=False)


@route(
    "GET",
    "/files/<token>",
    "A signed link: redirects to a fresh download",
    {302: None, 404: ERROR, 410: ERROR, 502: ERROR},
)
def file(token: str):
    try:
        payload = ctx().tokens.open_file(token, max_age=ctx().config.files_link_ttl_seconds)
    except TokenExpired:
        raise Gone("link_expired", "This link has expired; ask for the document again.") from None
    except TokenInvalid:
        raise NotFound("link_invalid", "This link is not valid.") from None
    if payload.get("b"):  # a batch's manifest, or its ZIP (app.domain.batch_files)
        return _batch_file(payload)
    task = ctx().tasks.get(payload["t"])
    tenant = ctx().tenants.get(task.tenant_id) if task else None
    if task is None or tenant is None or not task.run_id:
        raise NotFound("not_found", "The document behind this link is gone.")
    try:
        with ctx().upstream(tenant) as client:
            url = (
                client.export(task.run_id, payload["x"]).download_url
                if payload.get("x")
                else client.download_location(task.run_id)
            )
    except UpstreamError as exc:
        kind = UpstreamFailed if exc.status is None or exc.status >= 500 else Gone
        raise kind(
            "document_unavailable",
            f"The document cannot be fetched right now: {exc.message}",
        ) from None
    return redirect(url, code=302)


def _batch_file(payload: dict) -> Response:
    batch = ctx().batches.get(payload["b"])
    if batch is None:
        raise NotFound("not_found", "The batch behind this link is gone.")
    if payload.get("z"):
        return Response(
            batch_files.archive(ctx(), batch),
            mimetype="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{batch.batch_id}.zip"'},
        )
    return Response(
        batch_files.manifest(ctx(), batch),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{batch.batch_id}.csv"'},
    )
