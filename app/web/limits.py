"""Rate limits per relay API key (flask-limiter, counters in the relay's Redis so every web process
shares them). Over the limit: 429 with Retry-After and the usual JSON error."""

from __future__ import annotations

import hashlib
from functools import wraps

from flask import Blueprint, Flask, request
from flask_limiter import Limiter

from app.core import redis_connection
from app.core.config import RelayConfig


def api_key_of_request() -> str:
    """The caller's bearer key, hashed (the counter's Redis key never holds the key itself)."""
    key = request.headers.get("Authorization", "").partition(" ")[2].strip()
    return (
        "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
        if key
        else "anonymous:" + (request.remote_addr or "")
    )


def storage(config: RelayConfig) -> dict:
    """The Limiter arguments that put its counters in the relay's Redis. limits spells a unix socket
    redis+unix://; with Sentinels it reads the URL's whole path as the primary's name (``relay/0`` would be
    ``relay0``) and would give the Sentinels' password to the primary too: those go as options."""
    if not config.redis_sentinels:
        url = config.redis_url
        unix = url.startswith("unix://")
        return {"storage_uri": "redis+unix://" + url.removeprefix("unix://") if unix else url}
    hosts = ",".join(f"{host}:{port}" for host, port in redis_connection.sentinel_hosts(config))
    options: dict = {
        "db": redis_connection.database(config),
        "sentinel_kwargs": {"password": config.redis_sentinel_password or None},
    }
    if config.redis_password:
        options["password"] = config.redis_password
    return {
        "storage_uri": f"redis+sentinel://{hosts}/{config.redis_master_name}",
        "storage_options": options,
    }


def install_limits(app: Flask, config: RelayConfig, blueprints: list[Blueprint]) -> None:
    limit = config.rate_limit
    if not limit:
        return
    limiter = Limiter(
        api_key_of_request,
        **storage(config),
        headers_enabled=True,
        key_prefix=config.key_prefix + "ratelimit",
        strategy="moving-window",
        swallow_errors=True,
    )
    for blueprint in blueprints:
        # one budget per key for the whole API
        limiter.shared_limit(limit, scope="relay-api")(blueprint)
    only_on(app, {blueprint.name for blueprint in blueprints}, lambda: limiter.init_app(app))


def only_on(app: Flask, blueprint_names: set[str], install) -> None:
    """Run the before-request hooks ``install`` adds only for requests to these blueprints. flask-limiter
    looks at every request (0.2 ms even where no limit applies); webhooks and Slack commands, which
    have their own deadlines, should not pay that."""
    before = list(app.before_request_funcs.get(None, []))
    install()
    added = [hook for hook in app.before_request_funcs.get(None, []) if hook not in before]

    def guarded(hook):
        @wraps(hook)
        def only_there():
            return hook() if request.blueprint in blueprint_names else None

        return only_there

    app.before_request_funcs[None] = before + [guarded(hook) for hook in added]
