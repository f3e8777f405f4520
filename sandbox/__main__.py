"""``python -m sandbox``: serve the sandbox API and manage its organisations.

``relay sandbox ...`` runs this in a child process, so the relay never imports the sandbox.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import threading

import click
from redis import Redis
from werkzeug.serving import make_server

from .app import create_app
from .config import SandboxConfig
from .store import SandboxStore


@click.group()
def cli() -> None:
    """The Overten API sandbox: the whole generation API contract, locally."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the sandbox API until interrupted (configuration: SANDBOX_* environment variables)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(levelname)s %(message)s")
    app = create_app(SandboxConfig.from_env())
    server = make_server(host, port, app, threaded=True)
    faulthandler.enable()
    # shutdown() waits for serve_forever() to return, so it must not run on serve_forever's own thread. SIGINT
    # too, explicitly: a process started in the background without a terminal inherits SIGINT ignored.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(
            signum, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()
        )
    click.echo(f"sandbox listening on http://{host}:{server.server_port}", err=True)
    try:
        server.serve_forever()
    finally:
        app.extensions["sandbox"].stop()


@cli.group()
def orgs() -> None:
    """Organisations: each has API keys and its own whsec_ webhook secret."""


def _store() -> SandboxStore:
    config = SandboxConfig.from_env()
    return SandboxStore(Redis.from_url(config.redis_url, decode_responses=True), config.key_prefix)


@orgs.command("create")
@click.argument("name")
@click.option("--api-key", help="Use this key instead of a generated one.")
@click.option("--webhook-secret", help="Use this whsec_ secret instead of a generated one.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def create_org(name: str, api_key: str | None, webhook_secret: str | None, as_json: bool) -> None:
    """Create an organisation and print its API key and webhook secret (shown once)."""
    try:
        org = _store().create_org(name, api_key=api_key, webhook_secret=webhook_secret)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({k: org[k] for k in ("org_id", "name", "api_key", "webhook_secret")}))
        return
    click.echo(f"organisation   {org['org_id']} ({name})")
    click.echo(f"api key        {org['api_key']}")
    click.echo(f"webhook secret {org['webhook_secret']}")
    click.echo("Keep both: they are not shown again.", err=True)


@orgs.command("list")
def list_orgs() -> None:
    """List organisations (secrets are not shown)."""
    for org in _store().list_orgs():
        click.echo(f"{org['org_id']}  {org['name']}")


if __name__ == "__main__":
    cli()
