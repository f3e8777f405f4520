"""Rate limits per relay API key (flask-limiter, counters in the relay's Redis so every web process
shares them). Over the limit: 429 with Retry-After and the usual JSON error."""

from __future__ import annotations

import hashlib

from flask import Blueprint, Flask, request
from flask_limiter import Limiter


def api_key_of_request() -> str:
    """The caller's bearer key, hashed (the counter's Redis key never holds the key itself)."""
    key = request.headers.get("Authorization", "").partition(" ")[2].strip()
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32] if key else "anonymous:" + (request.remote_addr or "")


def storage_uri(redis_url: str) -> str:
    """limits spells a Redis unix socket redis+unix://."""
    return "redis+unix://" + redis_url.removeprefix("unix://") if redis_url.startswith("unix://") else redis_url


def install_limits(app: Flask, limit: str, redis_url: str, prefix: str, blueprints: list[Blueprint]) -> None:
    if not limit:
        return
    limiter = Limiter(api_key_of_request, app=app, storage_uri=storage_uri(redis_url), headers_enabled=True,
                      key_prefix=prefix + "ratelimit", strategy="moving-window", swallow_errors=True)
    for blueprint in blueprints:
        limiter.shared_limit(limit, scope="relay-api")(blueprint)  # one budget per key for the whole API
    limited = {blueprint.name for blueprint in blueprints}
    # Every other route (webhooks, Slack, the dashboard) skips the limiter's per-request work at once.
    limiter.request_filter(lambda: request.blueprint not in limited)
