"""GET /files/{token}: a signed, expiring link (in emails, messages, Zapier file fields) that redirects
to a fresh download URL of the document, so it outlives the API's 24-hour links."""

from __future__ import annotations

from flask import Blueprint, redirect

from app.core.tokens import TokenExpired, TokenInvalid
from app.core.upstream import UpstreamError
from app.web.base import ctx
from schemas.http import ApiError

bp = Blueprint("files", __name__)


@bp.get("/files/<token>")
def file(token: str):
    try:
        payload = ctx().tokens.open_file(token, max_age=ctx().config.files_link_ttl_seconds)
    except TokenExpired:
        raise ApiError(410, "link_expired", "This link has expired; ask for the document again.") from None
    except TokenInvalid:
        raise ApiError(404, "link_invalid", "This link is not valid.") from None
    task = ctx().tasks.get(payload["t"])
    tenant = ctx().tenants.get(task["tenant_id"]) if task else None
    if task is None or tenant is None or not task.get("run_id"):
        raise ApiError(404, "not_found", "The document behind this link is gone.")
    try:
        with ctx().upstream(tenant) as client:
            url = (client.export(task["run_id"], payload["x"]).download_url if payload.get("x")
                   else client.download_location(task["run_id"]))
    except UpstreamError as exc:
        raise ApiError(502 if exc.status is None or exc.status >= 500 else 410, "document_unavailable",
                       f"The document cannot be fetched right now: {exc.message}") from None
    return redirect(url, code=302)
