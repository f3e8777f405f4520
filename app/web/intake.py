"""POST /webhooks/upstream/{token}: the API's signed task events."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.core import metrics
from app.domain import intake
from app.web.base import ctx
from schemas.http import ApiError

bp = Blueprint("intake", __name__)


@bp.post("/webhooks/upstream/<token>")
def upstream_webhook(token: str):
    if (request.content_length or 0) > intake.MAX_BODY:
        metrics.WEBHOOKS.labels("rejected_size").inc()
        raise ApiError(413, "payload_too_large", "The webhook body is larger than 1 MiB.")
    try:
        fresh = intake.accept(ctx(), token, request.get_data(), dict(request.headers))
    except intake.Rejected as exc:
        metrics.WEBHOOKS.labels(f"rejected_{exc.code.removeprefix('invalid_')}").inc()
        raise ApiError(exc.status, exc.code, exc.message) from None
    metrics.WEBHOOKS.labels("accepted" if fresh else "duplicate").inc()
    # reached only once the event is stored and its work enqueued: now the sender may forget it
    return jsonify({"status": "accepted" if fresh else "duplicate"}), 200
