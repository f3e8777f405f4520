"""Session-wide real parts: a private Redis server (never the shared one on 6379), and fixtures that
start real servers on loopback."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import pytest

from app.cli.embedded_redis import EmbeddedRedis
from tests.relay_fixtures import (  # noqa: F401 - fixtures
    fake_airtable,
    fake_drive,
    fake_dropbox,
    fake_graph,
    fake_hubspot,
    fake_sheets,
    fake_slack,
    fake_teams,
    loopback_ca,
    make_relay,
    moto,
    moto_server,
    relay,
    smtp_server,
)
from tests.reliability import reliability  # noqa: F401 - fixture
from tests.sandbox_fixtures import make_sandbox, receiver, sandbox  # noqa: F401 - fixtures

_databases = itertools.count(1)  # db 0 holds the sandboxes (one key prefix each)


@pytest.fixture(scope="session")
def redis_server():
    # a short directory: unix socket paths are limited to ~107 bytes
    directory = Path(tempfile.mkdtemp(prefix="relay-test-redis-"))
    server = EmbeddedRedis(directory, databases=1000)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def fresh_redis_url(redis_server) -> str:
    """A Redis database of its own for this test (RQ's keys have no prefix to separate tests)."""
    return f"{redis_server.url}?db={next(_databases)}"
