"""Chaos tests record what they measured; docs/reliability.md is written from the last run
(RELAY_RELIABILITY_REPORT=path.json makes the run keep the figures; `python -m tests.chaos.report`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_ROWS: list[dict] = []


@pytest.fixture(scope="session")
def reliability():
    """``reliability(fault=..., tried=..., lost=..., duplicated=..., notes=...)`` adds a row to the report."""
    yield lambda **row: _ROWS.append(row)
    path = os.environ.get("RELAY_RELIABILITY_REPORT")
    if path and _ROWS:
        existing = json.loads(Path(path).read_text()) if os.path.exists(path) else []
        faults = {row["fault"] for row in _ROWS}
        with open(path, "w") as out:
            json.dump([r for r in existing if r["fault"] not in faults] + _ROWS, out, indent=2)
