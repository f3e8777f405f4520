"""A real OpenID provider for the sign-in tests: the certified `oidc-provider` npm package, run by Node on
loopback (tests/support/oidc_provider.mjs), with its own login and consent pages. npm installs it once per
version into the user's cache directory (tests/system-tools.sh does it before the tests start).

The provider reads its clients and people from a JSON file at each use: ``add_client`` registers Relay's
client for a relay's redirect URI, ``set_person`` adds a person or changes their groups."""

from __future__ import annotations

import json
import select
import shutil
import subprocess
from pathlib import Path

from tests.support import tools

VERSION = "9.13.3"
SCRIPT = Path(__file__).with_suffix(".mjs")


def npm_cache(npm: str | None = None) -> Path:
    """node_modules with oidc-provider, installed once per version into the user's cache directory."""
    packages = [f"oidc-provider@{VERSION}"]
    return tools.npm_modules(f"oidc-provider-{VERSION}", packages, "oidc-provider", npm)


class OpenIDProvider:
    """``oidc-provider`` serving on 127.0.0.1 until ``stop()``; ``issuer`` is its URL."""

    def __init__(self, folder: Path):
        modules = npm_cache()  # npm comes with node (Debian's nodejs npm)
        self._file = folder / "oidc-provider.json"
        self._state: dict = {"clients": {}, "people": {}}
        self._write()
        self._log = (folder / "oidc-provider.log").open("w")
        self._process = subprocess.Popen(
            [shutil.which("node") or "node", str(SCRIPT), str(self._file), str(modules)],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        ready, _, _ = select.select([self._process.stdout], [], [], 60)
        line = self._process.stdout.readline() if ready else ""
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(
                f"oidc-provider did not start: {line!r} {(folder / 'oidc-provider.log').read_text()}"
            )
        self.issuer = f"http://127.0.0.1:{int(line.split()[1])}"

    def _write(self) -> None:
        # a whole file at once: the provider may read it at any moment
        part = self._file.with_suffix(".part")
        part.write_text(json.dumps(self._state))
        part.replace(self._file)

    def add_client(self, client_id: str, secret: str, redirect_uri: str) -> None:
        self._state["clients"][client_id] = {
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
        self._write()

    def set_person(self, login: str, email: str, name: str, groups: list[str]) -> None:
        self._state["people"][login] = {"email": email, "name": name, "groups": groups}
        self._write()

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process.stdout.close()
        self._log.close()


if __name__ == "__main__":  # tests/system-tools.sh, before the tests start
    npm_cache(npm=shutil.which("npm"))
