"""Shares one directory for /metrics among this host's processes (prometheus_client's multiprocess mode).

prometheus_client picks how it keeps values when it is first imported, from PROMETHEUS_MULTIPROC_DIR, and
the relay's modules import it; so `relay` (app.cli.main) calls ``share`` before it loads its commands."""

from __future__ import annotations

import os

from app.core.config import RelayConfig


def share() -> None:
    """PROMETHEUS_MULTIPROC_DIR from RELAY_METRICS_DIR, unless it is set already."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = RelayConfig.from_env().metrics_dir
    if folder:
        os.makedirs(folder, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.abspath(folder)
