"""`relay deliveries`: the dead-letter list, a page at a time, and replaying from it."""

from __future__ import annotations

from collections.abc import Iterator

import click

from app.cli.audit import cli_did
from app.domain import deliveries
from app.stores import context
from app.stores.audit import Action, Target
from app.stores.context import Context
from app.stores.deliveries import DeliveryRecord


@click.group("deliveries")
def deliveries_group() -> None:
    """Deliveries that failed for good, and re-running them."""


@deliveries_group.command("list")
@click.option(
    "--tenant", "tenant_id", default=None, help="One tenant's (its id); else every tenant's."
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", default=None, type=float, help="Where the page before ended (it says).")
def list_(tenant_id: str | None, limit: int, cursor: float | None) -> None:
    """The dead-letter list, the latest to die first, a page at a time."""
    dead, next_cursor = context.current().deliveries.dead_page(tenant_id, cursor, limit)
    for record in dead:
        view = deliveries.view(record)
        click.echo(
            f"{view['delivery_id']}  {view['kind']:<9} task {record.task_id}  attempts {view['attempts']}"
            f"  {view['last_error']}"
        )
    if not dead and cursor is None:
        click.echo("no failed deliveries")
    if next_cursor is not None:
        tenant = f" --tenant {tenant_id}" if tenant_id else ""
        click.echo(f"more: relay deliveries list{tenant} --limit {limit} --cursor {next_cursor!r}")


@deliveries_group.command("replay")
@click.argument("delivery_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Replay every delivery in the dead-letter list.")
def replay(delivery_ids: tuple[str, ...], all_failed: bool) -> None:
    """Run deliveries again from scratch (after fixing what made them fail)."""
    ctx = context.current()
    ids = (d.delivery_id for d in _every_dead_letter(ctx)) if all_failed else iter(delivery_ids)
    replayed = 0
    for delivery_id in ids:
        record = ctx.deliveries.get(delivery_id)
        done = deliveries.replay(ctx, delivery_id)
        result = "ok" if done else "already_delivered" if record else "delivery_not_found"
        tenant = record.tenant_id if record else ""
        cli_did(Action.DELIVERY_REPLAYED, Target("delivery", delivery_id), result, tenant)
        replayed += 1
        click.echo(f"{delivery_id}  {'queued again' if done else 'not found or already delivered'}")
    if not replayed:
        raise click.ClickException(
            "no failed deliveries" if all_failed else "name delivery ids, or pass --all-failed"
        )


def _every_dead_letter(ctx: Context, page: int = 200) -> Iterator[DeliveryRecord]:
    """Every dead letter, a page at a time (a replayed one leaves the list, the cursor goes on)."""
    cursor: float | None = None
    while True:
        found, cursor = ctx.deliveries.dead_page(None, cursor, page)
        yield from found
        if cursor is None:
            return
