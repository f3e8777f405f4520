"""`relay connectors export zapier|make|slack DIR`: the app definitions, ready for each platform's tooling."""

from __future__ import annotations

from pathlib import Path

import click

from app.core.config import RelayConfig
from app.integrations.export import PLATFORMS, write

NEXT_STEPS = {
    "zapier": "cd {dir} && npm install && npx zapier-platform push",
    "make": "open {dir} in VS Code with Make's Apps SDK extension, add an origin, then deploy",
    "slack": "paste {dir}/manifest.yml at https://api.slack.com/apps?new_app=1 (From an app manifest)",
}


@click.group("connectors")
def connectors() -> None:
    """No-code app definitions (Zapier, Make, Slack) generated for this relay."""


@connectors.command("export")
@click.argument("platform", type=click.Choice(sorted(PLATFORMS)))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--public-url", help="The relay's public base URL (default: RELAY_PUBLIC_URL).")
def export(platform: str, directory: Path, public_url: str | None) -> None:
    """Write PLATFORM's app definition into DIRECTORY, pointing at the relay's public URL."""
    url = public_url or RelayConfig.from_env().public_url
    if url.startswith(("http://127.", "http://localhost")) and platform != "make":
        click.secho(
            f"note: {url} is a loopback address; {platform} cannot reach it. "
            "Set RELAY_PUBLIC_URL or pass --public-url.",
            fg="yellow",
            err=True,
        )
    written = write(platform, url, directory)
    click.echo(f"wrote {len(written)} files for {platform} to {directory} (relay at {url})")
    click.echo("next: " + NEXT_STEPS[platform].format(dir=directory))
