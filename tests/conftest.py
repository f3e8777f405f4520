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
    dropbox_relay,
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


def _share_the_default_tls_context() -> None:
    """Every httpx client the tests make with the default ``verify`` builds a TLS context from certifi's bundle,
    about 60 ms of CPU, and the tests make thousands (one per ``httpx.get``): they share one instead. The relay's
    own code passes a shared context already (app.core.upstream.TLS)."""
    from httpx._transports import default

    made = default.create_ssl_context
    shared = made()

    def create_ssl_context(verify=True, cert=None, trust_env=True):
        if verify is True and cert is None and trust_env:
            return shared
        return made(verify=verify, cert=cert, trust_env=trust_env)

    default.create_ssl_context = create_ssl_context


_share_the_default_tls_context()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests (``@pytest.mark.long``, tens of seconds each) are collected first. With xdist's
    ``--maxschedchunk 1`` (Makefile) each process starts on one of them and takes the rest a test at a time,
    so no long test starts last and stretches the run."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


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
