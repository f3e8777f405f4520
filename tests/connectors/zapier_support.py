"""Zapier's own packages for the tests: `zapier-platform-schema` (the official validator) and
`zapier-platform-core` (the runtime that executes an app's steps), installed with npm into a cache
directory the first time, and a runner that executes one step the way Zapier does."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
from pathlib import Path
from typing import Any

from app.integrations.zapier import PLATFORM_VERSION
from tests.support import tools

HERE = Path(__file__).parent
PACKAGES = [
    f"zapier-platform-schema@{PLATFORM_VERSION}",
    f"zapier-platform-core@{PLATFORM_VERSION}",
]


def npm_cache(npm: str | None = None) -> Path:
    """node_modules with Zapier's packages, installed once per version into the user's cache directory
    (tests/system-tools.sh does it before the tests start)."""
    name = f"zapier-{PLATFORM_VERSION}"
    return tools.npm_modules(name, PACKAGES, "zapier-platform-core", npm)


def node(script: str, *args: str, modules: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["node", "-e", script, *args],
        env={**os.environ, "NODE_PATH": str(modules)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def validation_errors(definition: dict, modules: Path, tmp: Path) -> list[str]:
    """`validateAppDefinition(def).errors`, from the official package."""
    path = tmp / "definition-under-test.json"
    path.write_text(json.dumps(definition))
    script = (
        "const {validateAppDefinition} = require('zapier-platform-schema');"
        "const result = validateAppDefinition(require(process.argv[1]));"
        "console.log(JSON.stringify(result.errors.map((e) => e.property + ': ' + e.message)));"
    )
    done = node(script, str(path), modules=modules)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


class ZapierRuntime:
    """Runs steps of the app through zapier-platform-core's Lambda handler, over real HTTP, in one node process
    (as a warm Lambda of Zapier's runs one after another); ``close()`` ends it."""

    def __init__(self, definition: dict, modules: Path, tmp: Path):
        self.modules, self.tmp = modules, tmp
        self.definition_path = tmp / "definition.json"
        self.definition_path.write_text(json.dumps(definition))
        self._log = (tmp / "zapier-runtime.log").open("w")
        answers, self._answers_in = os.pipe()
        self._process = subprocess.Popen(
            [
                "node",
                str(HERE / "zapier_runner.js"),
                str(self.definition_path),
                str(self._answers_in),
            ],
            env={**os.environ, "NODE_PATH": str(self.modules)},
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=(self._answers_in,),
        )
        os.close(self._answers_in)
        self._answers = os.fdopen(answers)

    def run(self, method: str, bundle: dict, callback_url: str | None = None) -> dict[str, Any]:
        self._process.stdin.write(
            json.dumps({"method": method, "bundle": bundle, "callback_url": callback_url}) + "\n"
        )
        self._process.stdin.flush()
        line = _read_line(self._answers, timeout=120)
        assert line, (
            f"the Zapier runtime gave no answer to {method} (exit code {self._process.poll()}):\n"
            f"{(self.tmp / 'zapier-runtime.log').read_text()}"
        )
        return json.loads(line)

    def results(self, method: str, bundle: dict, callback_url: str | None = None) -> Any:
        answer = self.run(method, bundle, callback_url)
        assert "error" not in answer, f"{method} failed: {answer['error']}"
        return answer["results"]

    def close(self) -> None:
        self._process.stdin.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._answers.close()
        self._log.close()


def _read_line(stream, timeout: float) -> str:
    """The next line from ``stream``, or "" if none came within ``timeout`` seconds (the runtime hung or died)."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


if __name__ == "__main__":  # tests/system-tools.sh, before the tests start
    npm_cache(npm=shutil.which("npm"))
