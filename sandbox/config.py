"""Sandbox settings: every knob has a documented default and a SANDBOX_* environment variable."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DAY = 86_400.0


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class SandboxConfig:
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Where the sandbox keeps its state (under ``key_prefix``)."""
    key_prefix: str = "sandbox:"
    data_dir: Path = Path("var/sandbox")
    """Generated documents and exports live here, one folder per run."""
    public_url: str = ""
    """Base of download and edit links; empty: the URL the request came in on."""
    secret_key: str = ""
    """Signs download links; empty: a random key kept in Redis, so links survive restarts."""
    admin_token: str = ""
    """Enables /_sandbox/* test controls (clock, faults) for holders of this token; empty: disabled."""

    task_seconds: float = 3.0
    """How long the simulated agent takes for one task (a prompt can override: [[duration=N]])."""
    sync_ceiling_seconds: float = 300.0
    pool_size: int = 4
    """Tasks executing at once; more wait queued in the acquiring_pool phase."""
    fail_marker: str = "[[fail]]"
    """A prompt containing this fails during executing_plan."""

    rate_limit_requests: int = 600
    rate_limit_window_seconds: int = 60

    download_ttl_seconds: float = DAY
    queued_expiry_seconds: float = DAY
    run_retention_seconds: float = 30 * DAY
    """A run expires this long after its last task."""
    bytes_retention_seconds: float = 30 * DAY
    """An expired run's bytes are deleted this long after it expired."""
    sweep_interval_seconds: float = 5.0

    error_rate: float = 0.0
    """Share of authenticated API requests answered 503 with Retry-After (fault knob for clients)."""

    webhook_retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_timeout_seconds: float = 10.0
    webhook_drop_rate: float = 0.0
    """Share of first delivery attempts silently lost (they are retried per the schedule)."""
    webhook_copies: int = 1
    """Send each event this many times, concurrently, with the same webhook-id."""
    webhook_delay_seconds: float = 0.0

    soffice: str = field(default_factory=lambda: shutil.which("soffice") or "")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> SandboxConfig:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = env.get(f"SANDBOX_{item.name.upper()}")
            if raw is not None:
                values[item.name] = _parse(item.type, raw)
        return replace(cls(**values), **overrides)


def _parse(kind: Any, raw: str) -> Any:
    kind = str(kind)
    if "tuple" in kind:
        return _floats(raw)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "Path":
        return Path(raw)
    return raw
