"""The API's signed webhooks: check the token and the Standard Webhooks signature, then store and
enqueue the event atomically. Only then may the caller answer 2xx."""

from __future__ import annotations

import binascii
import json
import logging
import time
from typing import Protocol

from standardwebhooks import Webhook, WebhookVerificationError

import schemas
from app.core.errors import Invalid, TooLarge, Unauthorized
from app.core.tokens import TokenInvalid, Tokens
from app.stores.intake_stream import IntakeStream
from app.stores.tenants import TenantStore


class Needs(Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    tokens: Tokens
    tenants: TenantStore
    intake: IntakeStream


log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
SECRET_SECONDS = 5.0
"""How long a process verifies a tenant's webhooks with the secret it read, before reading it again: a tenant
deleted, or a secret rotated, takes up to this long to refuse what the old one signed."""
# tenant key -> (its webhook secret, when it was read)
_verified_with: dict[str, tuple[str, float]] = {}


def accept(ctx: Needs, token: str, body: bytes, headers: dict[str, str]) -> bool:
    """Verify and durably enqueue one webhook. True: new; False: a redelivery of one we have.

    Raises Unauthorized (a bad token or signature), TooLarge, or Invalid (not a task event)."""
    if len(body) > MAX_BODY:
        raise TooLarge("payload_too_large", "The webhook body is larger than 1 MiB.")
    try:
        tenant_id, task_id = ctx.tokens.open_webhook(token)
    except TokenInvalid:
        raise Unauthorized("invalid_token", "Unknown webhook URL.") from None
    _verify(ctx, tenant_id, body, headers)
    try:
        event = json.loads(body)
        schemas.validate("upstream/task-event-received.json", event)
    except (ValueError, schemas.SchemaViolation) as exc:
        raise Invalid("invalid_event", f"The webhook body is not a task event: {exc}") from None
    webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
    return ctx.intake.record_event(tenant_id, task_id, webhook_id, body.decode())


def _verify(ctx: Needs, tenant_id: str, body: bytes, headers: dict[str, str]) -> None:
    """Check the signature with the tenant's secret: the one this process read in the last SECRET_SECONDS
    (a Redis read and two decryptions fewer per webhook), else read now; a signature the remembered secret
    refuses is checked again with a fresh read, so a rotated secret applies at once."""
    key = ctx.tenants.key_for(tenant_id)
    remembered = _verified_with.get(key)
    if (
        remembered
        and time.monotonic() - remembered[1] < SECRET_SECONDS
        and _signed(remembered[0], body, headers)
    ):
        return
    tenant = ctx.tenants.get(tenant_id)
    if tenant is None:
        _verified_with.pop(key, None)
        raise Unauthorized("invalid_token", "Unknown webhook URL.")
    if not _signed(tenant.webhook_secret, body, headers):
        raise Unauthorized("invalid_signature", "The webhook signature does not verify.")
    _verified_with[key] = (tenant.webhook_secret, time.monotonic())


def _signed(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError, binascii.Error, UnicodeDecodeError, TypeError):
        # the library raises plain ValueError/binascii.Error for some malformed signature headers
        return False
    return True
