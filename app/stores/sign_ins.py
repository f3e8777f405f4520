"""Sign-ins to Relay's web pages, kept in Redis so that each can be ended: signing out deletes one, a role
removed or a change of a person's groups deletes all of that person's, and each remembers a fingerprint of
the credential it was made with (the admin token, or the identity provider and client), so replacing that
ends them (they are refused, and expire).

The browser holds only a random session id (in the signed session cookie); Redis holds its SHA-256, so a
copy of the database signs no one in.

Keys: ``sign-in:{sha256(id)}`` (hash), ``person-sign-ins:{person_id}`` (set of those digests)."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from redis import Redis


class SignInMethod(StrEnum):
    OPENID_CONNECT = "openid-connect"
    """A person, through the identity provider."""
    BREAK_GLASS = "break-glass"
    """The shared RELAY_ADMIN_TOKEN: an operator, for when the identity provider is out of reach."""


@dataclass(frozen=True, slots=True)
class SignIn:
    method: SignInMethod
    fingerprint: str
    """Of the credential it was made with (app.web.sign_in): it is refused once that changes."""
    created_at: float
    person_id: str = ""
    """Empty for break-glass."""

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> SignIn:
        return cls(
            method=SignInMethod(raw.get("method", SignInMethod.BREAK_GLASS)),
            fingerprint=raw["fingerprint"],
            created_at=float(raw["created_at"]),
            person_id=raw.get("person_id", ""),
        )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SignInStore:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix

    def _key(self, session_id: str) -> str:
        return f"{self._prefix}sign-in:{_digest(session_id)}"

    def _person_key(self, person_id: str) -> str:
        return f"{self._prefix}person-sign-ins:{person_id}"

    def start(
        self, method: SignInMethod, fingerprint: str, life_seconds: int, person_id: str = ""
    ) -> str:
        """A new sign-in, for ``life_seconds`` at most; returns its id (the browser's to keep)."""
        session_id = secrets.token_urlsafe(32)
        key, pipe = self._key(session_id), self._redis.pipeline()
        pipe.hset(
            key,
            mapping={
                "method": method,
                "fingerprint": fingerprint,
                "created_at": time.time(),
                "person_id": person_id,
            },
        )
        pipe.expire(key, life_seconds)
        if person_id:
            pipe.sadd(self._person_key(person_id), key)
            pipe.expire(self._person_key(person_id), life_seconds)  # outlives every member
        pipe.execute()
        return session_id

    def get(self, session_id: str) -> SignIn | None:
        raw = self._redis.hgetall(self._key(session_id))
        return SignIn.from_hash(raw) if raw else None

    def end(self, session_id: str) -> None:
        self._redis.delete(self._key(session_id))

    def end_person(self, person_id: str) -> int:
        """Every sign-in of the person ended; how many were live."""
        keys = list(self._redis.smembers(self._person_key(person_id)))
        pipe = self._redis.pipeline()
        for key in keys:
            pipe.delete(key)
        pipe.delete(self._person_key(person_id))
        return sum(pipe.execute()[: len(keys)])
