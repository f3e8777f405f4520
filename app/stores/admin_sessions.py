"""The dashboard's sign-ins, kept in Redis so that each can be ended: signing out deletes one, and each
remembers a fingerprint of the credential it was made with, so replacing RELAY_ADMIN_TOKEN ends them all
(they are refused, and expire).

The browser holds only a random session id (in the signed session cookie); Redis holds its SHA-256, so
a copy of the database signs no one in. A sign-in says who (``person``: empty for the shared admin token,
an OpenID Connect subject once people sign in as themselves) and with which ``roles``."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from redis import Redis


@dataclass(frozen=True, slots=True)
class AdminSession:
    fingerprint: str
    """Of the credential it was made with (app.web.dashboard_auth): it is refused once that changes."""
    created_at: float
    person: str = ""
    roles: tuple[str, ...] = ("admin",)

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> AdminSession:
        return cls(
            fingerprint=raw["fingerprint"],
            created_at=float(raw["created_at"]),
            person=raw.get("person", ""),
            roles=tuple(r for r in raw.get("roles", "").split(",") if r),
        )


class AdminSessionStore:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix

    def _key(self, session_id: str) -> str:
        digest = hashlib.sha256(session_id.encode()).hexdigest()
        return f"{self._prefix}admin-session:{digest}"

    def start(
        self,
        fingerprint: str,
        life_seconds: int,
        person: str = "",
        roles: tuple[str, ...] = ("admin",),
    ) -> str:
        """A new sign-in, for ``life_seconds`` at most; returns its id (the browser's to keep)."""
        session_id = secrets.token_urlsafe(32)
        key, pipe = self._key(session_id), self._redis.pipeline()
        pipe.hset(
            key,
            mapping={
                "fingerprint": fingerprint,
                "created_at": time.time(),
                "person": person,
                "roles": ",".join(roles),
            },
        )
        pipe.expire(key, life_seconds)
        pipe.execute()
        return session_id

    def get(self, session_id: str) -> AdminSession | None:
        raw = self._redis.hgetall(self._key(session_id))
        return AdminSession.from_hash(raw) if raw else None

    def end(self, session_id: str) -> None:
        self._redis.delete(self._key(session_id))
