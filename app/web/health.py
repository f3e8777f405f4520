"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, jsonify
from redis.exceptions import RedisError

from .base import ctx

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    try:
        ctx().redis.ping()
    except RedisError as exc:
        return jsonify({"status": "unavailable", "redis": f"unreachable: {type(exc).__name__}"}), 503
    return jsonify({"status": "ok", "redis": "ok"})
