"""Relay identifiers: a short prefix over a ULID, so they sort by creation time."""

import hashlib

from ulid import ULID

_ULID = "[0-9A-HJKMNP-TV-Z]{26}"  # Crockford's base 32, as python-ulid writes it

PATTERNS = {
    "batch_id": f"bat_{_ULID}",
    "delivery_id": "dlv_[0-9A-F]{26}",  # app.domain.deliveries.delivery_id_for
    "destination_id": f"dst_{_ULID}",
    "hook_id": f"hook_{_ULID}",
    "task_id": f"tsk_{_ULID}",
    "tenant_id": f"ten_{_ULID}",
}
"""What each kind of id looks like, by the name a route gives it: an id becomes part of a Redis key, so
anything else (``bat_...:rows`` names another key) is never looked up."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


def digest(text: str, size: int = 32) -> str:
    """A fixed-size, key-safe stand-in for user text (record keys, idempotency keys, webhook ids)."""
    return hashlib.sha256(text.encode()).hexdigest()[:size]
