"""The layout of docs/architecture.md, as import-linter checks it (pyproject.toml): the contracts hold on the
code, and each fails when the code breaks it, so a new cycle or a broken layer fails CI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.work import jobs

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "connectors", "sandbox", "schemas")
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [LINT_IMPORTS, "--no-cache"],
            cwd=root,
            env={"PYTHONPATH": str(root), "PATH": ""},
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"lint-imports still ran after 300 s:\n{exc.stdout}\n{exc.stderr}"
        ) from None


def test_the_contracts_hold():
    checked = lint_imports(ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "5 kept, 0 broken" in checked.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("app/domain/deliveries.py", "from app.domain import tracking", "No import cycles"),
        ("app/stores/tasks.py", "from app.stores import context", "No import cycles"),
        (
            "app/domain/submit.py",
            "from app.work import jobs",
            "app.domain is not allowed to import app.work",
        ),
        (
            "app/core/metrics.py",
            "from app.stores import lane_stream",
            "app.core is not allowed to import app.stores",
        ),
        (
            "connectors/webhook/__init__.py",
            "import app.core.ids",
            "Connectors never import the relay",
        ),
        (
            "sandbox/store.py",
            "import app.core.ids",
            "The sandbox and the relay never import each other",
        ),
        ("app/domain/tracking.py", "import flask", "never import Flask"),
    ],
    ids=[
        "cycle",
        "cycle-in-stores",
        "domain-to-work",
        "core-to-stores",
        "connector-to-app",
        "sandbox-to-app",
        "domain-to-flask",
    ],
)
def test_a_broken_rule_fails(tmp_path, module, line, broken):
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{line}  # deliberately against the layout\n")
    checked = lint_imports(tmp_path)
    assert checked.returncode != 0 and broken in checked.stdout, checked.stdout + checked.stderr


def test_every_job_enqueued_by_name_exists():
    """The domain and the stores enqueue RQ jobs by dotted name (app.stores.queues.job): a misspelt name would
    fail only when RQ runs it."""
    named = {
        name
        for path in (ROOT / "app").rglob("*.py")
        for name in re.findall(r"""\bjob\(["'](\w+)["']\)""", path.read_text())
    }
    assert named >= {"deliver", "submit_pending", "slack_progress"}
    assert [name for name in named if not callable(getattr(jobs, name, None))] == []
