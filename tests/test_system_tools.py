"""The one rule for the system tools tests need (tests/support/tools.py): a missing tool skips its test with
a line naming the package, except under CI=true, where it fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("ci", ["", "true"])
def test_a_missing_tool_is_a_skip_naming_its_package_and_under_ci_a_failure(tmp_path, ci):
    (tmp_path / "test_needs_chromium.py").write_text(
        "from tests.support import tools\n\n\ndef test_it():\n    tools.require('chromium')\n"
    )
    # the rule needs pytest alone: no second of plugin imports
    env = {
        **os.environ,
        "PATH": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "CI": ci,  # no chromium on this PATH
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"the inner pytest still ran after 300 s:\n{exc.stdout}\n{exc.stderr}"
        ) from None
    if ci:
        assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout
        assert "CI=true, so a missing tool is a failure" in run.stdout
    else:
        assert run.returncode == 0 and "1 skipped" in run.stdout, run.stdout
    assert "apt-get install chromium" in run.stdout, "the line names the package to install"
