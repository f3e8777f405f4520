"""Refusing to run with a signing key or admin token that someone else may know: a placeholder copied from
an example (deploy/kubernetes ships some) or one too short to withstand guessing. Empty is allowed: an empty
RELAY_SECRET_KEY makes a random one kept in Redis, an empty RELAY_ADMIN_TOKEN turns the dashboard off."""

from __future__ import annotations

import re

from app.core.config import RelayConfig

MIN_LENGTH = 32
"""Characters: what ``secrets.token_urlsafe(24)`` makes, 192 random bits."""
MIN_DISTINCT = 12
"""Different characters: ``aaaa...`` or ``0123...`` repeated is long and still guessable."""
# words long enough that a random token holds one by chance less than once in a billion
_PLACEHOLDER = re.compile(r"replace|change.?me|example|placeholder|insecure|[<>]", re.IGNORECASE)
MAKE_ONE = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class WeakSecret(ValueError):
    """A setting that must not be used; the message names it and says how to make a good one."""


def weakness(value: str) -> str | None:
    """Why ``value`` is no secret (None: it may be one)."""
    if _PLACEHOLDER.search(value):
        return "is a placeholder"
    if len(value) < MIN_LENGTH:
        return f"is shorter than {MIN_LENGTH} characters"
    if len(set(value)) < MIN_DISTINCT:
        return f"has fewer than {MIN_DISTINCT} different characters"
    return None


def problems(config: RelayConfig) -> list[str]:
    """One sentence per weak setting, naming its variable."""
    found = []
    for name, value in (
        ("RELAY_SECRET_KEY", config.secret_key),
        ("RELAY_ADMIN_TOKEN", config.admin_token),
    ):
        if value and (why := weakness(value)):
            found.append(f"{name} {why}; {MAKE_ONE}")
    return found


def refuse_weak_secrets(config: RelayConfig) -> None:
    """Raise WeakSecret when a signing key or admin token is set and weak: every process checks at start."""
    if found := problems(config):
        raise WeakSecret(" ".join(found))
