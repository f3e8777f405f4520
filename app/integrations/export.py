"""Each platform's app as the files its own tooling takes, for `relay connectors export` and the web."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from app.integrations.make import make_app
from app.integrations.slack_manifest import manifest_yaml
from app.integrations.zapier import zapier_package


def _make_files(public_url: str) -> dict[str, str]:
    return {path: json.dumps(body, indent=2) + "\n" for path, body in make_app(public_url).items()}


def _slack_files(public_url: str) -> dict[str, str]:
    return {"manifest.yml": manifest_yaml(public_url)}


PLATFORMS: dict[str, Callable[[str], dict[str, str]]] = {
    "zapier": zapier_package,
    "make": _make_files,
    "slack": _slack_files,
}


def write(platform: str, public_url: str, folder: Path) -> list[Path]:
    written = []
    for relative, text in PLATFORMS[platform](public_url).items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written
