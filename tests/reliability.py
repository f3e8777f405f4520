"""Chaos, fuzzing and security tests record what they tried and measured; docs/reliability.md is written
from the last run: `RELAY_RELIABILITY_REPORT=var/reliability.json make test`, then
`python -m tests.reliability var/reliability.json > docs/reliability.md`."""

from __future__ import annotations

import fcntl
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
        with open(f"{path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # each pytest-xdist worker merges its own rows in turn
            existing = json.loads(Path(path).read_text()) if os.path.exists(path) else []
            faults = {row["fault"] for row in _ROWS}
            with open(path, "w") as out:
                json.dump([r for r in existing if r["fault"] not in faults] + _ROWS, out, indent=2)


ATTACKER = Path(__file__).with_name("reliability_attacker.md")
"""What issue 29's review tried, before and after: written by hand, kept with the generated page."""

INTRO = """# Reliability and security: what was tried, and what was lost

Relay promises that a finished document is never lost, never delivered twice where the destination can
prevent it, and that one customer never sees another's data. These figures are measured by the test suite
(`tests/chaos/`, `tests/relay/test_isolation.py`, `test_outbound.py`, `test_limits.py`, `test_fuzz.py`,
`test_openapi.py`), in CI, on loopback with real processes and a real Redis. This page is generated from the
last run: `RELAY_RELIABILITY_REPORT=var/reliability.json make test`, then
`python -m tests.reliability var/reliability.json > docs/reliability.md`. Each fault comes at a point of the
work's progress (a kill at each seventh of a batch's rows, an outage until every submission has failed three
hand-overs, a Sentinel fault after so many acknowledged webhooks), not after so many seconds, so a slow or busy
machine meets the same faults; timings in the notes are what this run measured.

| fault or bad input | times | lost | duplicated | notes |
|---|---:|---:|---|---|
"""

OUTRO = """
## What the numbers do not cover

- A power loss or `SIGKILL` of Redis can lose up to one second of writes (`appendfsync everysec`): those
  webhooks were acknowledged, so the API will not resend them; the reconciler still finds their tasks by
  polling the API, so the document is not lost, only its fan-out is later. `appendfsync always` closes the
  gap at a cost in write throughput.
- Slack and email cannot be asked whether a message already went out: a worker killed between sending and
  recording can send it twice (at most once per kill; see the SIGKILL row).
- A worker that dies (or loses Redis) right after popping a job loses it (RQ's BLPOP over several queues):
  webhooks and Slack commands are recovered through the intake stream, deliveries and background submit
  retries by the reconciler.
- When Redis starts refusing writes in the instant after the API accepted a submission and keeps refusing
  for more than 20 s, the submitter is answered 503 although the API runs the job (its webhook still
  finishes the task); a client that retries then gets a second document.
- Behind an HTTP proxy (`HTTPS_PROXY`), the SDKs that use requests check the target's name only: the
  proxy makes the connection and must refuse private addresses itself (docs/operations.md).
"""


def render(rows: list[dict]) -> str:
    lines = [
        f"| {r['fault']} | {r['tried']} | {r['lost']} | {r['duplicated']} | {r.get('notes', '')} |"
        for r in rows
    ]
    return INTRO + "\n".join(lines) + "\n\n" + ATTACKER.read_text() + OUTRO


if __name__ == "__main__":
    import sys

    print(render(json.loads(Path(sys.argv[1]).read_text())), end="")
