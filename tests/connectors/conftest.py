from __future__ import annotations

from pathlib import Path

import pytest

from tests.connectors.zapier_support import npm_cache


@pytest.fixture(scope="session")
def zapier_modules() -> Path:
    return npm_cache()
