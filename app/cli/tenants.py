"""Tenant, key and secret administration."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from app.cli.audit import cli_did
from app.core.crypto import SecretBox
from app.stores import context
from app.stores.audit import Action, Target


def _tenant_or_fail(name_or_id: str):
    tenant = context.current().tenants.find(name_or_id)
    if tenant is None:
        raise click.ClickException(f"no tenant named or with id {name_or_id!r}")
    return tenant


def key_id(api_key: str) -> str:
    """The id part of a relay API key (``rly_<key id>_<secret>``): what the audit log names it by."""
    return api_key.split("_")[1]


@click.group()
def tenants() -> None:
    """Tenants: who may use the relay, with which Overten account."""


@tenants.command("create")
@click.argument("name")
@click.option("--upstream-url", required=True, help="Base URL of the Overten API (or the sandbox).")
@click.option("--upstream-key", required=True, help="The tenant's Overten API key.")
@click.option(
    "--webhook-secret", required=True, help="The tenant's whsec_ webhook secret from Overten."
)
def create(name: str, upstream_url: str, upstream_key: str, webhook_secret: str) -> None:
    """Create a tenant and print its relay API key (shown once)."""
    try:
        tenant, api_key = context.current().tenants.create(
            name, upstream_url, upstream_key, webhook_secret
        )
    except ValueError as exc:
        cli_did(Action.TENANT_CREATED, Target("tenant", name=name), "invalid_request")
        raise click.ClickException(str(exc)) from None
    cli_did(
        Action.TENANT_CREATED,
        Target("tenant", tenant.tenant_id, tenant.name),
        tenant=tenant.tenant_id,
    )
    cli_did(Action.KEY_CREATED, Target("key", key_id(api_key)), tenant=tenant.tenant_id)
    click.echo(f"tenant   {tenant.tenant_id} ({tenant.name})")
    click.echo(f"api key  {api_key}")
    click.echo("Keep the key: it is stored hashed and cannot be shown again.", err=True)


@tenants.command("list")
def list_() -> None:
    """List tenants with their usage (no secrets)."""
    ctx = context.current()
    for tenant in ctx.tenants.list():
        usage = ctx.tenants.usage(tenant.tenant_id)
        click.echo(
            f"{tenant.tenant_id}  {tenant.name:<20} {tenant.upstream_url}  "
            f"tasks={usage['task_count']} credits={usage['credits_used']}"
        )


@tenants.command("keys")
@click.argument("tenant")
def keys(tenant: str) -> None:
    """List a tenant's API key ids (the keys themselves are never stored)."""
    for meta in context.current().tenants.keys(_tenant_or_fail(tenant).tenant_id):
        created = datetime.fromtimestamp(meta["created_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
        click.echo(f"{meta['key_id']}  created {created}")


@tenants.command("rotate-key")
@click.argument("tenant")
@click.option("--keep-old", is_flag=True, help="Keep the current keys valid (revoke them later).")
def rotate_key(tenant: str, keep_old: bool) -> None:
    """Issue a new API key and, unless --keep-old, revoke the others."""
    tenant_id = _tenant_or_fail(tenant).tenant_id
    api_key = context.current().tenants.rotate_key(tenant_id, keep_old=keep_old)
    cli_did(Action.KEY_ROTATED, Target("key", key_id(api_key)), tenant=tenant_id)
    click.echo(f"api key  {api_key}")


@tenants.command("revoke-key")
@click.argument("tenant")
@click.argument("key_id")
def revoke_key(tenant: str, key_id: str) -> None:
    """Revoke one API key by its id (see `relay tenants keys`)."""
    tenant_id = _tenant_or_fail(tenant).tenant_id
    revoked = context.current().tenants.revoke_key(tenant_id, key_id)
    cli_did(
        Action.KEY_REVOKED, Target("key", key_id), "ok" if revoked else "key_not_found", tenant_id
    )
    if not revoked:
        raise click.ClickException(f"no key {key_id!r} for that tenant")
    click.echo(f"revoked {key_id}")


@click.group()
def secrets() -> None:
    """Encryption of secrets at rest."""


@secrets.command("new-key")
def new_key() -> None:
    """Print a new encryption key for RELAY_ENCRYPTION_KEYS."""
    click.echo(SecretBox.new_key())


@secrets.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored secret with the first key of RELAY_ENCRYPTION_KEYS."""
    from app.domain import sealing

    counts = sealing.rotate(context.current())
    cli_did(Action.SECRETS_ROTATED, Target("secrets"))
    done = ", ".join(f"{count} {kind}(s)" for kind, count in counts.items())
    click.echo(f"re-encrypted the secrets of {done}; the old key can now be removed")
