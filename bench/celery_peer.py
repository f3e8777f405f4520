"""The peer that bench/ingest and bench/fanout measure the relay against: what a Python team would write
instead of the relay, with Celery on a Redis broker.

- Intake: a Flask route that verifies the webhook with `standardwebhooks` and hands the event to Celery
  (`.delay()`), served by gunicorn with the relay's own settings (bench/ingest).
- Fan-out: a Celery task that posts one signed delivery with a shared httpx client, run by two worker
  processes with a thread pool of 8 (the relay's RELAY_DELIVERY_THREADS), late acknowledgement (a delivery
  is not lost when its worker dies, as in the relay's lane) (bench/fanout).

Settings from the environment: BENCH_CELERY_BROKER (redis://...), BENCH_WEBHOOK_SECRET (whsec_...).
"""

from __future__ import annotations

import os
import threading
import time

import httpx
from celery import Celery
from flask import Flask, request
from redis import Redis
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6399/0")
DONE = (
    "bench:celery:done"  # completion times of fan-out deliveries, as the relay records delivered_at
)

celery = Celery("bench_peer", broker=BROKER)
celery.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    task_default_queue="bench-peer",
)

_local = threading.local()


def _client() -> httpx.Client:
    if not hasattr(_local, "client"):
        _local.client = httpx.Client(timeout=30)
    return _local.client


_redis: Redis | None = None


def _done() -> Redis:
    """The broker's own Redis, where completion times go (kombu spells a unix socket redis+socket://)."""
    global _redis
    if _redis is None:
        broker = str(celery.conf.broker_url)
        _redis = Redis.from_url(
            broker.replace("redis+socket://", "unix://").replace("virtual_host=", "db=")
        )
    return _redis


@celery.task(name="bench.process_event")
def process_event(tenant: str, body: str) -> None:
    """What the intake hands over (bench/ingest measures only the hand-over)."""


@celery.task(name="bench.deliver")
def deliver(url: str, body: str, headers: dict) -> None:
    _client().post(url, content=body, headers=headers).raise_for_status()
    _done().rpush(DONE, time.time())


def create_app() -> Flask:
    app = Flask(__name__)
    verifier = Webhook(os.environ["BENCH_WEBHOOK_SECRET"])

    @app.post("/hook/<tenant>")
    def hook(tenant: str):
        body = request.get_data(as_text=True)
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return {"error": "bad signature"}, 401
        process_event.delay(tenant, body)
        return "", 204

    @app.get("/")
    def ready():
        return {"ok": True}

    return app
