"""`relay deliveries`: the dead-letter list, and replaying from it."""

from __future__ import annotations

import click

from app.domain import deliveries
from app.stores import context


@click.group("deliveries")
def deliveries_group() -> None:
    """Deliveries that failed for good, and re-running them."""


@deliveries_group.command("list")
def list_() -> None:
    """The dead-letter list, newest first."""
    dead = context.current().deliveries.dead_letters()
    for record in dead:
        view = deliveries.view(record)
        click.echo(
            f"{view['delivery_id']}  {view['kind']:<9} task {record.task_id}  attempts {view['attempts']}"
            f"  {view['last_error']}"
        )
    if not dead:
        click.echo("no failed deliveries")


@deliveries_group.command("replay")
@click.argument("delivery_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Replay every delivery in the dead-letter list.")
def replay(delivery_ids: tuple[str, ...], all_failed: bool) -> None:
    """Run deliveries again from scratch (after fixing what made them fail)."""
    ctx = context.current()
    ids = (
        [d.delivery_id for d in ctx.deliveries.dead_letters()] if all_failed else list(delivery_ids)
    )
    if not ids:
        raise click.ClickException("name delivery ids, or pass --all-failed")
    for delivery_id in ids:
        done = deliveries.replay(ctx, delivery_id)
        click.echo(f"{delivery_id}  {'queued again' if done else 'not found or already delivered'}")
