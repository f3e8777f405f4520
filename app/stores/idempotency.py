"""Idempotency-Key handling: the same key within the TTL returns the first answer and starts nothing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from redis import Redis

from app.core.errors import Conflict, Unprocessable
from app.core.ids import digest


class RequestInProgress(Conflict):
    """The first request with this key has not been answered yet: ask again in a second."""

    def __init__(self) -> None:
        super().__init__(
            "request_in_progress",
            "A request with this Idempotency-Key is still being processed.",
            field="Idempotency-Key",
            headers={"Retry-After": "1"},
        )


class KeyReused(Unprocessable):
    """The key was used before with a different request body."""

    def __init__(self) -> None:
        super().__init__(
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request.",
            field="Idempotency-Key",
        )


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: dict


def fingerprint(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


PENDING_SECONDS = 120
"""How long a key is held for a request still being answered: longer than any request takes (a submit's
`wait` is at most 25 s, the API's answer within its timeouts), short enough that a claim whose request died
with Redis (the abandon could not be written) frees the key within minutes, not after the key's 24 hours."""


class IdempotencyStore:
    def __init__(self, redis: Redis, prefix: str, ttl_seconds: int):
        self._redis, self._prefix, self._ttl = redis, prefix, ttl_seconds

    def _key(self, tenant_id: str, key: str) -> str:
        return f"{self._prefix}idem:{tenant_id}:{digest(key)}"

    def begin(self, tenant_id: str, key: str, body_fingerprint: str) -> StoredAnswer | None:
        """Claim the key (returns None: go ahead) or return the answer given the first time."""
        claim = json.dumps({"state": "pending", "fingerprint": body_fingerprint})
        if self._redis.set(self._key(tenant_id, key), claim, nx=True, ex=PENDING_SECONDS):
            return None
        stored = json.loads(self._redis.get(self._key(tenant_id, key)) or "{}")
        if stored.get("fingerprint") != body_fingerprint:
            raise KeyReused
        if stored.get("state") == "pending":
            raise RequestInProgress
        return StoredAnswer(stored["status"], stored["body"])

    def finish(self, tenant_id: str, key: str, body_fingerprint: str, answer: StoredAnswer) -> None:
        value = json.dumps(
            {
                "state": "done",
                "fingerprint": body_fingerprint,
                "status": answer.status,
                "body": answer.body,
            }
        )
        self._redis.set(self._key(tenant_id, key), value, ex=self._ttl)

    def abandon(self, tenant_id: str, key: str) -> None:
        self._redis.delete(self._key(tenant_id, key))
