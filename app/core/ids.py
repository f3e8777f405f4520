"""Relay identifiers: a short prefix over a ULID, so they sort by creation time."""

import hashlib

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


def digest(text: str, size: int = 32) -> str:
    """A fixed-size, key-safe stand-in for user text (record keys, idempotency keys, webhook ids)."""
    return hashlib.sha256(text.encode()).hexdigest()[:size]
