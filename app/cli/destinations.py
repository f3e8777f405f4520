"""`relay destinations check`: a tenant's saved destinations checked as they are when saved, each thing a
delivery will need passed, a warning or a failure with the fix; exits 1 when any fails."""

from __future__ import annotations

import click

from app.cli.audit import cli_did
from app.domain import checks
from app.stores import context
from app.stores.audit import OK, Action, Target
from app.stores.destinations import SavedDestination

_MARKS = {
    checks.Verdict.PASS: "ok  ",
    checks.Verdict.WARNING: "warn",
    checks.Verdict.FAILURE: "FAIL",
}


@click.group("destinations")
def destinations_group() -> None:
    """Tenants' saved destinations and write-back connections."""


@destinations_group.command("check")
@click.option("--tenant", "tenant_name", required=True, help="The tenant (its name or id).")
@click.argument("destination_ids", nargs=-1)
def check(tenant_name: str, destination_ids: tuple[str, ...]) -> None:
    """Check the tenant's saved destinations (these, or all), without delivering anything."""
    ctx = context.current()
    tenant = ctx.tenants.find(tenant_name)
    if tenant is None:
        raise click.ClickException(f"no tenant named {tenant_name!r}")
    saved = ctx.destinations.list(tenant.tenant_id)
    if destination_ids:
        unknown = set(destination_ids) - {d.id for d in saved}
        if unknown:
            raise click.ClickException(f"{tenant.name} has no destination {', '.join(unknown)}")
        saved = [d for d in saved if d.id in destination_ids]
    if not saved:
        raise click.ClickException(f"{tenant.name} has no saved destinations")
    found = checks.run_saved(ctx, tenant.tenant_id, saved)
    for destination, report in found:
        _show(destination, report)
        target = Target("destination", destination.id, destination.name)
        cli_did(Action.DESTINATION_CHECKED, target, OK, tenant.tenant_id)
    if any(report.failed for _, report in found):
        raise SystemExit(1)


def _show(destination: SavedDestination, report: checks.Report) -> None:
    click.echo(f"{destination.id}  {destination.kind}  {destination.name}: {report.verdict}")
    for item in report.checks:
        click.echo(f"  {_MARKS[item.verdict]}  {item.name}: {item.message}")
        if item.fix:
            click.echo(f"        fix: {item.fix}")
