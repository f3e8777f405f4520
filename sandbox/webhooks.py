"""Task events to webhook_url: signed per Standard Webhooks, retried on a schedule, durable in Redis.

Fault knobs (drop a share of first attempts, send several copies, delay) let clients test their intake.
Every delay (the first attempt's knob, the retry schedule) is on the sandbox clock (store.clock), so a test
moves time with POST /_sandbox/clock instead of waiting; the dispatcher sleeps until the next attempt is due
and is woken when an event is queued or the clock moves.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import certifi
import httpx
from standardwebhooks import Webhook

from .config import SandboxConfig
from .store import SandboxStore

log = logging.getLogger(__name__)

_RECHECK_SECONDS = 0.5
"""The dispatcher looks again at least this often: another process may have queued an event or moved the clock."""
_BATCH = 20


@functools.cache
def _tls() -> ssl.SSLContext:
    """One per process: loading the CA bundle costs more CPU (~35 ms) than a whole task, and tests start many
    sandboxes."""
    return ssl.create_default_context(cafile=certifi.where())


class WebhookSender:
    def __init__(self, store: SandboxStore, config: SandboxConfig):
        self._store = store
        self._config = config
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sandbox-webhooks", daemon=True)
        self._client = httpx.Client(
            timeout=config.webhook_timeout_seconds, follow_redirects=False, verify=_tls()
        )
        self._copies = ThreadPoolExecutor(
            max_workers=max(1, config.webhook_copies), thread_name_prefix="wh"
        )
        self._due = store.key("webhooks", "due")
        # every event id: listing them never scans the keyspace
        self._all = store.key("webhooks", "all")
        self._wake = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._copies.shutdown(wait=False)
        self._client.close()

    def wake(self) -> None:
        """Look for due attempts now (after the clock moved)."""
        self._wake.set()

    def enqueue(self, org_id: str, url: str, event: dict) -> None:
        """Store the event for delivery; the first attempt goes out at once (plus any delay knob)."""
        key, now = self._store.key("webhook", event["id"]), self._store.clock.now()
        record = {
            "event_id": event["id"],
            "org_id": org_id,
            "url": url,
            "body": json.dumps(event),
            "attempts": 0,
            "status": "pending",
            "enqueued_at": now,
        }
        pipe = self._store.redis.pipeline()
        pipe.hset(key, mapping=record)
        pipe.sadd(self._all, event["id"])
        pipe.zadd(self._due, {event["id"]: now + self._config.webhook_delay_seconds})
        pipe.execute()
        self._wake.set()

    def deliveries(self) -> list[dict]:
        """Every delivery record, with ``due_at``: when its next attempt is due on the sandbox clock (None: no
        attempt is planned, so a final status means no attempt will ever be made again)."""
        event_ids = sorted(self._store.redis.smembers(self._all))
        pipe = self._store.redis.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.hgetall(self._store.key("webhook", event_id))
        records = [record for record in pipe.execute() if record]
        for record in records:
            pipe.zscore(self._due, record.get("event_id", ""))
        return [
            {**record, "due_at": due} for record, due in zip(records, pipe.execute(), strict=True)
        ]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before looking: a wake-up while we look is not lost
            try:
                pause = self._dispatch_due()
            except Exception:  # keep the dispatcher alive whatever one delivery does
                log.exception("webhook dispatcher error")
                pause = _RECHECK_SECONDS
            self._wake.wait(pause)

    def _dispatch_due(self) -> float:
        """Make the attempts that are due; return how long to sleep before the next one is due."""
        redis = self._store.redis
        due = redis.zrangebyscore(self._due, "-inf", self._store.clock.now(), start=0, num=_BATCH)
        for event_id in due:
            if redis.zrem(self._due, event_id):  # claimed by us
                self._attempt(event_id)
        if len(due) == _BATCH:
            return 0.0
        upcoming = redis.zrange(self._due, 0, 0, withscores=True)
        if not upcoming:
            return _RECHECK_SECONDS
        return min(_RECHECK_SECONDS, max(0.0, upcoming[0][1] - self._store.clock.now()))

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
        status, now = self._next_status(outcome, attempt), self._store.clock.now()
        # one transaction: the outcome is never seen without its next attempt
        pipe = self._store.redis.pipeline()
        pipe.hset(
            key,
            mapping={
                "attempts": attempt + 1,
                "last_outcome": outcome,
                "status": status,
                "last_attempt_at": now,
            },
        )
        if status == "pending":
            pipe.zadd(self._due, {event_id: now + self._config.webhook_retry_schedule[attempt]})
        pipe.execute()

    def _next_status(self, outcome: str, attempt: int) -> str:
        if outcome.startswith("2"):
            return "delivered"
        if outcome == "410":
            return "gone"  # the receiver asked us to stop
        return "pending" if attempt < len(self._config.webhook_retry_schedule) else "failed"

    def _send_copies(self, record: dict) -> str:
        org = self._store.get_org(record["org_id"]) or {}
        copies = [
            self._copies.submit(self._send, record, org.get("webhook_secret", ""))
            for _ in range(max(1, self._config.webhook_copies))
        ]
        outcomes = [c.result() for c in copies]
        return next((o for o in outcomes if o.startswith("2")), outcomes[0])

    def _send(self, record: dict, secret: str) -> str:
        body = record["body"]
        # real time, not the sandbox clock: receivers check it against their own clock
        stamp = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "Overten-Sandbox-Webhooks/1.0",
            "webhook-id": record["event_id"],
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(record["event_id"], stamp, body),
        }
        try:
            return str(
                self._client.post(record["url"], content=body.encode(), headers=headers).status_code
            )
        except httpx.HTTPError as exc:
            return f"error: {type(exc).__name__}"
