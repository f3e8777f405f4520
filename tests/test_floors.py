"""The floors pyproject.toml declares are what the code needs. A throwaway venv gets every direct dependency
at its floor (uv's lowest-direct resolution, from the package index), and there the relay imports every
module, finds the libraries' internals it reaches into (tests/support/floors_probe.py), keeps the layout's
contracts (import-linter), and runs a few tests end to end: the rate limit (Flask-Limiter), signed webhooks
(standardwebhooks), a retried delivery and the scheduler (RQ, redis-py). (Collecting the whole suite there
too cost 12 s of CPU on every run and found nothing the probe's imports do not.)

Its cost: about 40 s with uv's cache warm (the install ~10 s, the tests ~20 s), plus the downloads the
first time. It is a long test: collected first, it runs beside the others."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
SMOKE = [
    "tests/relay/test_limits.py::test_rate_limit_per_api_key_answers_429_with_retry_after",
    "tests/relay/test_intake.py::test_events_signed_by_the_sandbox_are_accepted_end_to_end",
    "tests/relay/test_deliveries.py::test_retry_after_5xx_and_429_then_delivered",
    "tests/relay/test_retention.py::test_the_scheduler_runs_the_sweep",
]


def _direct() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]
    ]


def _floor(requirement: Requirement) -> Version | None:
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return max(floors) if floors else None


def _run(*command: str | Path, timeout: float = 600) -> str:
    # the outer run's pytest and xdist settings are not this run's
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [str(part) for part in command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _name(name: str) -> str:
    return name.lower().replace("_", "-")


def test_every_direct_dependency_has_a_floor():
    assert [str(r) for r in _direct() if _floor(r) is None] == []


def test_the_lock_satisfies_pyproject():
    """constraints.txt (``make lock``), which make, CI and the image install from, pins every direct
    dependency within what pyproject.toml declares: a floor raised without ``make lock`` fails here."""
    pins: dict[str, list[Version]] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.split(";")[0].strip().partition("==")
            pins.setdefault(_name(name), []).append(Version(version))
    wrong = {
        str(requirement): pins.get(_name(requirement.name))
        for requirement in _direct()
        if not pins.get(_name(requirement.name))
        or not all(
            requirement.specifier.contains(v, prereleases=True)
            for v in pins[_name(requirement.name)]
        )
    }
    assert wrong == {}


@pytest.mark.long
def test_the_declared_floors_install_and_work(tmp_path):
    uv, venv = Path(sys.executable).parent / "uv", tmp_path / "floors"
    python = venv / "bin" / "python"
    started = time.monotonic()
    _run(uv, "venv", "--quiet", "--python", sys.executable, venv)
    _run(
        uv,
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "--resolution",
        "lowest-direct",
        "-r",
        "pyproject.toml",
        "--extra",
        "dev",
    )
    installed = {
        _name(line.split("==")[0]): Version(line.split("==")[1])
        for line in _run(uv, "pip", "freeze", "--python", python).splitlines()
        if "==" in line
    }
    # really the floors (an index without them would make this a test of something else): each installed
    # version is its floor, or the floor's first release (0.8.1 is released as 0.8.1.2)
    off_floor = {}
    for requirement in _direct():
        floor, got = _floor(requirement), installed[_name(requirement.name)]
        assert floor is not None
        if got.release[: len(floor.release)] != floor.release:
            off_floor[requirement.name] = f"{got} (floor {floor})"
    assert off_floor == {}
    installed_in = time.monotonic() - started

    probe = _run(python, "-m", "tests.support.floors_probe")
    _run(venv / "bin" / "lint-imports")
    _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *SMOKE)
    print(
        f"floors: installed in {installed_in:.0f} s, checked in "
        f"{time.monotonic() - started - installed_in:.0f} s; {probe.strip().splitlines()[-1]}"
    )
