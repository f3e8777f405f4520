"""Zapier's own packages for the tests: `zapier-platform-schema` (the official validator) and
`zapier-platform-core` (the runtime that executes an app's steps), installed with npm into a cache
directory the first time, and a runner that executes one step the way Zapier does."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from app.integrations.zapier import PLATFORM_VERSION
from tests.support import tools

HERE = Path(__file__).parent
PACKAGES = [f"zapier-platform-schema@{PLATFORM_VERSION}", f"zapier-platform-core@{PLATFORM_VERSION}"]


def npm_cache(npm: str | None = None) -> Path:
    """node_modules with Zapier's packages, installed once per version into the user's cache directory
    (tests/system-tools.sh does it before the tests start)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = cache / "overten-relay" / f"zapier-{PLATFORM_VERSION}"
    modules = root / "node_modules"
    if (modules / "zapier-platform-core" / "package.json").exists():
        return modules
    npm = npm or tools.require("npm")
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the tests run in several processes: one installs, the others wait
        if not (modules / "zapier-platform-core" / "package.json").exists():
            print(f"system-tools: installing {' '.join(PACKAGES)} with npm into {root}", flush=True)
            subprocess.run([npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--loglevel=error",
                            *PACKAGES], check=True, timeout=1800)
    return modules


def node(script: str, *args: str, modules: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["node", "-e", script, *args], env={**os.environ, "NODE_PATH": str(modules)},
                          capture_output=True, text=True, timeout=120, check=False)


def validation_errors(definition: dict, modules: Path, tmp: Path) -> list[str]:
    """`validateAppDefinition(def).errors`, from the official package."""
    path = tmp / "definition-under-test.json"
    path.write_text(json.dumps(definition))
    script = ("const {validateAppDefinition} = require('zapier-platform-schema');"
              "const result = validateAppDefinition(require(process.argv[1]));"
              "console.log(JSON.stringify(result.errors.map((e) => e.property + ': ' + e.message)));")
    done = node(script, str(path), modules=modules)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


class ZapierRuntime:
    """Runs a step of the app through zapier-platform-core's Lambda handler, over real HTTP."""

    def __init__(self, definition: dict, modules: Path, tmp: Path):
        self.modules, self.tmp = modules, tmp
        self.definition_path = tmp / "definition.json"
        self.definition_path.write_text(json.dumps(definition))
        self._calls = 0

    def run(self, method: str, bundle: dict, callback_url: str | None = None) -> dict[str, Any]:
        self._calls += 1
        bundle_path, out_path = self.tmp / f"bundle-{self._calls}.json", self.tmp / f"out-{self._calls}.json"
        bundle_path.write_text(json.dumps(bundle))
        args = ["node", str(HERE / "zapier_runner.js"), str(self.definition_path), method, str(bundle_path),
                str(out_path)] + ([callback_url] if callback_url else [])
        done = subprocess.run(args, env={**os.environ, "NODE_PATH": str(self.modules)}, capture_output=True,
                              text=True, timeout=120, check=False)
        assert out_path.exists(), f"the Zapier runtime wrote no answer:\n{done.stdout}\n{done.stderr}"
        return json.loads(out_path.read_text())

    def results(self, method: str, bundle: dict, callback_url: str | None = None) -> Any:
        answer = self.run(method, bundle, callback_url)
        assert "error" not in answer, f"{method} failed: {answer['error']}"
        return answer["results"]


if __name__ == "__main__":  # tests/system-tools.sh, before the tests start
    npm_cache(npm=shutil.which("npm"))
