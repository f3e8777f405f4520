"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from app.core import metrics, storage
from app.core.metrics import Gauge
from app.stores import queues
from app.stores.context import Context
from app.web import openapi
from app.web.base import ctx
from app.web.openapi import ADMIN, JSON
from app.web.routing import Routes

bp = Blueprint("health", __name__)
route = Routes(bp, ADMIN, auth=False)


@route("GET", "/healthz", "The process is up", {200: None}, response_type={200: JSON})
def healthz():
    """The process is up (no dependency is asked)."""
    return jsonify({"status": "ok"})


@route(
    "GET",
    "/readyz",
    "Redis takes a write",
    {200: None, 503: None},
    response_type={200: JSON, 503: JSON},
)
def readyz():
    """Ready for traffic: Redis takes a write (it is not full, read-only or gone). Live workers are counted
    but not required: webhooks, submits and the API are taken without them, and a web pod out of the
    Service for want of workers would turn every webhook away. No worker alive is an alert
    (relay_workers_alive) and a `relay doctor` failure."""
    try:
        ctx().primary.check_writable()
        alive = len(ctx().queues.workers())  # a worker's key expires when its heartbeat stops
    except RedisError as exc:
        kind = storage.trouble(exc) or "other"
        return jsonify(
            {
                "status": "unavailable",
                "redis": kind,
                "workers": None,
                "hint": storage.MESSAGES.get(kind, str(exc)),
            }
        ), 503
    return jsonify({"status": "ok", "redis": "ok", "workers": alive})


@route("GET", "/openapi.json", "This document", {200: None}, response_type={200: JSON})
def openapi_document():
    return jsonify(openapi.document(ctx().config.public_url))


@route(
    "GET",
    "/metrics",
    "Prometheus metrics",
    {200: None},
    response_type={200: "text/plain"},
)
def prometheus():
    body, content_type = metrics.exposition(_waiting_work(ctx()))
    return Response(body, content_type=content_type)


def _waiting_work(ctx: Context) -> list[Gauge]:
    """What /metrics reads from Redis when scraped."""
    return [
        Gauge(
            "relay_queue_depth",
            "Jobs waiting in each RQ queue.",
            lambda: {name: ctx.queues.get(name).count for name in queues.ALL},
            label="queue",
        ),
        Gauge(
            "relay_intake_backlog",
            "Webhooks and commands accepted and not yet processed.",
            lambda: ctx.intake.backlog(),
        ),
        Gauge(
            "relay_delivery_lane_backlog",
            "Deliveries due now and not finished (waiting or running in a worker's delivery lane).",
            lambda: ctx.lane.backlog(),
        ),
        Gauge(
            "relay_workers_alive",
            "Workers whose heartbeat is fresh: alert when it is 0 (queued work waits).",
            lambda: len(ctx.queues.workers()),
        ),
        Gauge(
            "relay_dead_letters",
            "Deliveries that failed for good and wait for a replay.",
            ctx.deliveries.dead_count,
        ),
    ]
