"""Task events to webhook_url: signed per Standard Webhooks, retried on a schedule, durable in Redis.

Fault knobs (drop a share of first attempts, send several copies, delay) let clients test their intake.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from .config import SandboxConfig
from .store import SandboxStore

log = logging.getLogger(__name__)


class WebhookSender:
    def __init__(self, store: SandboxStore, config: SandboxConfig):
        self._store = store
        self._config = config
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sandbox-webhooks", daemon=True)
        self._client = httpx.Client(timeout=config.webhook_timeout_seconds, follow_redirects=False)
        self._copies = ThreadPoolExecutor(max_workers=max(1, config.webhook_copies), thread_name_prefix="wh")
        self._due = store.key("webhooks", "due")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._copies.shutdown(wait=False)
        self._client.close()

    def enqueue(self, org_id: str, url: str, event: dict) -> None:
        """Store the event for delivery; the first attempt goes out at once (plus any delay knob)."""
        key = self._store.key("webhook", event["id"])
        record = {"event_id": event["id"], "org_id": org_id, "url": url, "body": json.dumps(event),
                  "attempts": 0, "status": "pending"}
        pipe = self._store.redis.pipeline()
        pipe.hset(key, mapping=record)
        pipe.zadd(self._due, {event["id"]: time.time() + self._config.webhook_delay_seconds})
        pipe.execute()

    def deliveries(self) -> list[dict]:
        keys = self._store.redis.keys(self._store.key("webhook", "*"))
        return [self._store.redis.hgetall(k) for k in keys]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                due = self._store.redis.zrangebyscore(self._due, "-inf", time.time(), start=0, num=20)
                for event_id in due:
                    if self._store.redis.zrem(self._due, event_id):  # claimed by us
                        self._attempt(event_id)
            except Exception:  # keep the dispatcher alive whatever one delivery does
                log.exception("webhook dispatcher error")
            self._stop.wait(0.05)

    def _attempt(self, event_id: str) -> None:
        key = self._store.key("webhook", event_id)
        record = self._store.redis.hgetall(key)
        if not record:
            return
        attempt = int(record["attempts"])
        if attempt == 0 and random.random() < self._config.webhook_drop_rate:
            outcome = "dropped"
        else:
            outcome = self._send_copies(record)
        status = self._next_status(outcome, attempt)
        self._store.redis.hset(key, mapping={"attempts": attempt + 1, "last_outcome": outcome, "status": status})
        if status == "pending":
            delay = self._config.webhook_retry_schedule[attempt]
            self._store.redis.zadd(self._due, {event_id: time.time() + delay})

    def _next_status(self, outcome: str, attempt: int) -> str:
        if outcome.startswith("2"):
            return "delivered"
        if outcome == "410":
            return "gone"  # the receiver asked us to stop
        return "pending" if attempt < len(self._config.webhook_retry_schedule) else "failed"

    def _send_copies(self, record: dict) -> str:
        org = self._store.get_org(record["org_id"]) or {}
        copies = [self._copies.submit(self._send, record, org.get("webhook_secret", ""))
                  for _ in range(max(1, self._config.webhook_copies))]
        outcomes = [c.result() for c in copies]
        return next((o for o in outcomes if o.startswith("2")), outcomes[0])

    def _send(self, record: dict, secret: str) -> str:
        body = record["body"]
        stamp = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "Overten-Sandbox-Webhooks/1.0",
            "webhook-id": record["event_id"],
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(record["event_id"], stamp, body),
        }
        try:
            return str(self._client.post(record["url"], content=body.encode(), headers=headers).status_code)
        except httpx.HTTPError as exc:
            return f"error: {type(exc).__name__}"
