"""The RQ job functions under the names Relay 0.1 gave them (app.jobs.*): jobs enqueued before an upgrade,
waiting in Redis for a retry, still run. Only ``app.work.jobs`` is enqueued now; remove this module once no
Redis holds a job of 0.1 (the longest wait is a delivery retry's, RELAY_DELIVERY_BACKOFF_CAP_SECONDS)."""

from app.work.jobs import (
    deliver,
    process_upstream_event,
    reconcile,
    slack_command,
    submit_pending,
    sweep,
)

__all__ = [
    "deliver",
    "process_upstream_event",
    "reconcile",
    "slack_command",
    "submit_pending",
    "sweep",
]
