"""Session-wide real parts: a private Redis server (never the shared one on 6379)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from app.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server():
    # a short directory: unix socket paths are limited to ~107 bytes
    directory = Path(tempfile.mkdtemp(prefix="relay-test-redis-"))
    server = EmbeddedRedis(directory)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url
