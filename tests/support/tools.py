"""System tools some tests need (tests/system-tools.sh installs them where it can).

One rule for all of them: a test whose tool is missing is skipped with one line naming the Debian package
to install, except under CI=true, where a missing tool fails the test (CI installs them, so a skip there
would hide a broken install step).
"""

from __future__ import annotations

import os
import shutil

import pytest

# tool -> (the names it may have on PATH, the Debian packages that provide it)
TOOLS: dict[str, tuple[tuple[str, ...], str]] = {
    "soffice": (
        ("soffice",),
        "libreoffice-calc-nogui libreoffice-writer-nogui libreoffice-impress-nogui",
    ),
    "chromium": (("chromium", "chromium-browser"), "chromium"),
    "npm": (("npm",), "nodejs npm"),
    # its --sentinel mode, for the Sentinel tests
    "redis-server": (
        ("redis-server",),
        "redis-server",
    ),
}


def find(tool: str) -> str | None:
    names, _ = TOOLS[tool]
    return next((path for name in names if (path := shutil.which(name))), None)


def require(tool: str) -> str:
    """The tool's path; otherwise skip (or, under CI=true, fail) the calling test, naming the package."""
    path = find(tool)
    if path:
        return path
    message = (
        f"needs {tool}: apt-get install {TOOLS[tool][1]} (or run tests/system-tools.sh as root)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true, so a missing tool is a failure", pytrace=False)
    pytest.skip(message)
