"""`relay audit`: the audit log, read on the host (every tenant's, or one's), and what the `relay` commands
that change state write to it (``cli_did``)."""

from __future__ import annotations

import getpass
import re
import socket
import sys

import click

from app.domain import audit_export
from app.stores import context
from app.stores.audit import OK, Action, Actor, ActorKind, AuditFilter, Target


def cli_actor() -> Actor:
    """The `relay` command, run by the host's user (the operator who holds the relay's configuration)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no name
        user = ""
    return Actor(ActorKind.SYSTEM, "cli", name=user)


def cli_did(action: Action, target: Target, result: str = OK, tenant: str = "") -> None:
    context.current().audit.append(
        cli_actor(), action, target, result, f"cli@{socket.gethostname()}", tenant
    )


@click.group("audit")
def audit_group() -> None:
    """Who changed what, when, from where: every tenant's audit log, or one tenant's."""


def _filters(function):
    for option in reversed(
        (
            click.option("--tenant", default=None, help="One tenant's entries (its name or id)."),
            click.option(
                "--action",
                default=None,
                type=click.Choice([str(a) for a in Action]),
                help="One action.",
            ),
            click.option(
                "--actor", default=None, help="One actor's id (a key id, a person, admin, cli)."
            ),
            click.option(
                "--since", default=None, help="A day (YYYY-MM-DD, UTC) or an ISO 8601 time."
            ),
            click.option("--until", default=None, help="A day (included) or an ISO 8601 time."),
        )
    ):
        function = option(function)
    return function


def _wanted(
    tenant: str | None, action: str | None, actor: str | None, since: str | None, until: str | None
) -> tuple[str | None, AuditFilter]:
    tenant_id = None
    if tenant:
        found = context.current().tenants.find(tenant)
        if found is None:
            raise click.ClickException(f"no tenant named or with id {tenant!r}")
        tenant_id = found.tenant_id
    try:
        wanted = AuditFilter(
            action=action,
            actor=actor,
            since=audit_export.moment(since),
            until=audit_export.moment(until, end_of_day=True),
        )
    except ValueError:
        raise click.ClickException(
            "--since and --until take YYYY-MM-DD or an ISO 8601 time"
        ) from None
    return tenant_id, wanted


@audit_group.command("list")
@_filters
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", default=None, help="Where the page before ended (it says).")
def list_(
    tenant: str | None,
    action: str | None,
    actor: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """Entries, newest first, a page at a time."""
    if cursor and not re.fullmatch(r"[0-9]{1,15}-[0-9]{1,19}", cursor):
        raise click.ClickException("--cursor takes what the page before said (an entry id)")
    tenant_id, wanted = _wanted(tenant, action, actor, since, until)
    entries, next_cursor = context.current().audit.page(tenant_id, wanted, cursor, limit)
    for e in entries:
        target = " ".join(filter(None, (e.target_type, e.target_id, e.target_name)))
        click.echo(
            f"{e.at}  {e.action:<20} {e.result:<16} {e.actor_kind}:{e.actor_id}"
            f"  {e.tenant or '-'}  {target}  {e.source}"
        )
    if not entries and cursor is None:
        click.echo("no entries")
    if next_cursor is not None:
        click.echo(f"more: --cursor {next_cursor}", err=True)


@audit_group.command("export")
@_filters
@click.option(
    "--format", "format_", type=click.Choice(["csv", "jsonl"]), default="jsonl", show_default=True
)
def export(
    tenant: str | None,
    action: str | None,
    actor: str | None,
    since: str | None,
    until: str | None,
    format_: str,
) -> None:
    """Every entry the filters admit, newest first, to standard output as CSV or JSON Lines."""
    tenant_id, wanted = _wanted(tenant, action, actor, since, until)
    entries = context.current().audit.every(tenant_id, wanted)
    lines = (
        audit_export.csv_lines(entries) if format_ == "csv" else audit_export.jsonl_lines(entries)
    )
    for line in lines:
        sys.stdout.write(line)
