"""Relay settings: every knob has a documented default and a RELAY_* environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class RelayConfig:
    redis_url: str = "redis://127.0.0.1:6379/0"
    """App data and RQ queues. Use AOF persistence and maxmemory-policy noeviction in production."""
    key_prefix: str = "relay:"
    public_url: str = "http://127.0.0.1:8080"
    """How the outside world (the API's webhooks, Zapier, email readers) reaches this relay."""
    secret_key: str = ""
    """Signs webhook and file tokens. Empty: a random key kept in Redis (fine for one installation)."""
    encryption_keys: str = ""
    """Comma-separated Fernet keys for secrets at rest; the first encrypts, all decrypt (rotation)."""

    upstream_timeout_seconds: float = 30.0
    upstream_retries: int = 4
    """Attempts after the first on connection errors, 429 and 5xx, with exponential backoff and jitter."""
    upstream_backoff_seconds: float = 0.5
    upstream_backoff_cap_seconds: float = 10.0

    submit_retry_intervals: tuple[float, ...] = (2, 5, 10, 30, 60, 120, 300, 300, 300, 600, 600, 900, 900)
    """When the API is down at submit time: waits between background attempts (about 70 minutes)."""
    idempotency_ttl_seconds: int = 86_400
    webhook_dedupe_ttl_seconds: int = 172_800
    """How long a webhook-id is remembered (and its job kept) to drop redeliveries: 48 h."""
    max_wait_seconds: int = 25

    reconcile_interval_seconds: int = 30
    """How often the scheduler enqueues the reconciler."""
    reconcile_quiet_seconds: float = 120.0
    """A task with no news for this long is polled."""
    poll_first_seconds: float = 3.0
    poll_cap_seconds: float = 10.0
    poll_give_up_seconds: float = 1800.0

    worker_lease_seconds: int = 60
    """A running job's lease: a worker that dies mid-job has its job retried about this long after."""
    worker_maintenance_seconds: int = 30
    """How often a worker looks for jobs abandoned by dead workers (RQ's maintenance)."""
    outbound_allow: str = ""
    """Hosts and CIDR ranges user-supplied URLs may reach although private (e.g. 127.0.0.0/8 in development)."""
    files_link_ttl_seconds: int = 7 * 86_400
    """Life of /files/{token} links in emails and messages (each use redirects to a fresh download)."""
    delivery_max_attempts: int = 8
    delivery_backoff_seconds: float = 5.0
    delivery_backoff_cap_seconds: float = 3600.0
    delivery_threads: int = 8
    """Deliveries each worker runs at once (its delivery lane's threads; they mostly wait on the network)."""
    delivery_recheck_seconds: float = 120.0
    """A delivery not done this long after its job was due is looked at by the reconciler (a job lost
    between Redis and a worker is queued again)."""
    folder_roots: str = "var/deliveries"
    """Comma-separated directories the folder destination may write under (paths are relative to the first)."""
    slack_api_url: str = "https://slack.com/api/"
    slack_authorize_url: str = "https://slack.com/oauth/v2/authorize"
    slack_signing_secret: str = ""
    """From the Slack app's Basic Information page: verifies /slack/commands requests."""
    slack_client_id: str = ""
    slack_client_secret: str = ""
    """The Slack app's OAuth credentials, for installs through /slack/install."""
    slack_bot_token: str = ""
    slack_tenant_id: str = ""
    """Single-workspace mode, without the install flow: this bot token answers for this tenant."""
    slack_progress_seconds: float = 20.0
    """How often a running /overten job's progress is checked (at most 2 progress posts per job)."""
    drive_api_url: str = "https://www.googleapis.com"
    drive_token_url: str = "https://oauth2.googleapis.com/token"
    email_attach_max_bytes: int = 10 * 1024 * 1024
    """Larger files are sent as a link instead of an attachment."""
    metrics_dir: str = "var/metrics"
    """Where the web and worker processes of this host write Prometheus metrics for /metrics to add up
    (prometheus_client's multiprocess mode; PROMETHEUS_MULTIPROC_DIR wins when set). Empty: per process."""
    rate_limit: str = "600 per minute;50 per second"
    """Per relay API key on /v1 (flask-limiter syntax, counted in Redis across processes). Empty: no limit."""
    admin_token: str = ""
    """Signs in to /dashboard and /dashboard/rq. Empty: the dashboard is off."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> RelayConfig:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = env.get(f"RELAY_{item.name.upper()}")
            if raw is not None:
                values[item.name] = _parse(str(item.type), raw)
        return replace(cls(**values), **overrides)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces this config in a child process (worker, scheduler)."""
        env = {}
        for item in fields(self):
            value = getattr(self, item.name)
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            env[f"RELAY_{item.name.upper()}"] = text
        return env


def _parse(kind: str, raw: str) -> Any:
    if "tuple" in kind:
        return tuple(float(p) for p in raw.split(",") if p.strip())
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    return raw
