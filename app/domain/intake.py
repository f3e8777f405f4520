"""The API's signed webhooks: check the token and the Standard Webhooks signature, then store and
enqueue the event atomically. Only then may the caller answer 2xx."""

from __future__ import annotations

import binascii
import json
import logging
from dataclasses import dataclass

from standardwebhooks import Webhook, WebhookVerificationError

import schemas
from app.core.tokens import TokenInvalid
from app.stores import intake_stream
from app.stores.context import Context

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Rejected(Exception):
    status: int
    code: str
    message: str


def accept(ctx: Context, token: str, body: bytes, headers: dict[str, str]) -> bool:
    """Verify and durably enqueue one webhook. True: new; False: a redelivery of one we have.

    Raises Rejected (401 bad token or signature, 413 too large, 400 not a task event)."""
    if len(body) > MAX_BODY:
        raise Rejected(413, "payload_too_large", "The webhook body is larger than 1 MiB.")
    try:
        tenant_id, task_id = ctx.tokens.open_webhook(token)
    except TokenInvalid:
        raise Rejected(401, "invalid_token", "Unknown webhook URL.") from None
    tenant = ctx.tenants.get(tenant_id)
    if tenant is None:
        raise Rejected(401, "invalid_token", "Unknown webhook URL.")
    try:
        Webhook(tenant.webhook_secret).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError, binascii.Error, UnicodeDecodeError, TypeError):
        # the library raises plain ValueError/binascii.Error for some malformed signature headers
        raise Rejected(401, "invalid_signature", "The webhook signature does not verify.") from None
    try:
        event = json.loads(body)
        schemas.validate("upstream/task-event-received.json", event)
    except (ValueError, schemas.SchemaViolation) as exc:
        raise Rejected(400, "invalid_event", f"The webhook body is not a task event: {exc}") from None
    webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
    return intake_stream.record_event(ctx, tenant_id, task_id, webhook_id, body.decode())
