"""Signed tokens (itsdangerous): the webhook URL handed to the API, expiring file links, and the Slack
install flow's links and OAuth `state`."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer


class TokenInvalid(Exception):
    pass


class TokenExpired(Exception):
    pass


class Tokens:
    def __init__(self, secret: str, clock: Callable[[], float] = time.time):
        """``clock``: the time a file link's age is measured at (tests move it instead of waiting)."""
        self.clock = clock
        self._webhooks = URLSafeSerializer(secret, salt="relay-upstream-webhook")
        # failures raise: never cached
        self._opened_webhook = lru_cache(maxsize=4096)(self._open_webhook)
        self._files = URLSafeTimedSerializer(secret, salt="relay-file-link")
        self._timed = {
            purpose: URLSafeTimedSerializer(secret, salt=f"relay-{purpose}")
            for purpose in ("slack-install", "slack-oauth-state")
        }

    def webhook(self, tenant_id: str, task_id: str) -> str:
        """The path token of /webhooks/upstream/{token}: the tenant id, signed, plus the relay task it
        concerns, so an event can be routed even before the submit call has recorded the API's ids."""
        return self._webhooks.dumps([tenant_id, task_id])

    def open_webhook(self, token: str) -> tuple[str, str]:
        """The tenant and task of a webhook token. Tokens that verified are remembered (the answer never
        changes for a given secret): every webhook of a task comes with the same one."""
        return self._opened_webhook(token)

    def _open_webhook(self, token: str) -> tuple[str, str]:
        try:
            tenant_id, task_id = self._webhooks.loads(token)
        except (BadSignature, ValueError, TypeError):
            raise TokenInvalid from None
        return str(tenant_id), str(task_id)

    def file(self, payload: dict) -> str:
        return self._files.dumps(payload)

    def open_file(self, token: str, max_age: float, now: float | None = None) -> dict:
        """A file link's payload; ``max_age`` unless the link carries a life of its own (``l``, seconds), at
        ``now`` (the clock's time unless given)."""
        try:
            payload, signed_at = self._files.loads(token, return_timestamp=True)
        except BadSignature:
            raise TokenInvalid from None
        if not isinstance(payload, dict):
            raise TokenInvalid
        now = self.clock() if now is None else now
        if now - signed_at.timestamp() > float(payload.get("l") or max_age):
            raise TokenExpired
        return payload

    def signed(self, purpose: str, payload: dict) -> str:
        """A token for one of the Slack install flow's steps (``slack-install``, ``slack-oauth-state``)."""
        return self._timed[purpose].dumps(payload)

    def open_signed(self, purpose: str, token: str, max_age: float) -> dict:
        return _open(self._timed[purpose], token, max_age)


def _open(serializer: URLSafeTimedSerializer, token: str, max_age: float) -> dict:
    try:
        payload = serializer.loads(token, max_age=max_age)
    except SignatureExpired:
        raise TokenExpired from None
    except BadSignature:
        raise TokenInvalid from None
    if not isinstance(payload, dict):
        raise TokenInvalid
    return payload
