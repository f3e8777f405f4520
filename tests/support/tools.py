"""System tools some tests need (tests/system-tools.sh installs them where it can).

One rule for all of them: a test whose tool is missing is skipped with one line naming the Debian package
to install, except under CI=true, where a missing tool fails the test (CI installs them, so a skip there
would hide a broken install step).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

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


def npm_modules(name: str, packages: list[str], marker: str, npm: str | None = None) -> Path:
    """node_modules holding ``packages``, installed once into the user's cache directory under ``name``
    (tests/system-tools.sh does it before the tests start); ``marker``: the package whose package.json
    shows the install is whole."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = cache / "overten-relay" / name
    modules = root / "node_modules"
    if (modules / marker / "package.json").exists():
        return modules
    npm = npm or require("npm")
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".install.lock").open("w") as lock:
        # the tests run in several processes: one installs, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (modules / marker / "package.json").exists():
            print(f"system-tools: installing {' '.join(packages)} with npm into {root}", flush=True)
            quiet = ["--no-audit", "--no-fund", "--loglevel=error"]
            subprocess.run(
                [npm, "install", "--prefix", str(root), *quiet, *packages],
                check=True,
                timeout=1800,
            )
    return modules
