"""`relay usage` and `relay budgets`: spend through the relay's own API."""

from __future__ import annotations

from urllib.parse import quote

import click

from app.cli import api_client


@click.command("usage")
@click.option(
    "--from", "first", default="", help="First day, YYYY-MM-DD (default: 30 days before --to)."
)
@click.option("--to", "last", default="", help="Last day, YYYY-MM-DD (default: today, UTC).")
@click.option(
    "--group-by", type=click.Choice(["day", "record", "format"]), default="day", show_default=True
)
@click.option("--record", "record_key", default="", help="Only this record's usage.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@api_client.URL
@api_client.KEY
def usage(
    first: str, last: str, group_by: str, record_key: str, as_csv: bool, url: str, api_key: str
) -> None:
    """Credits, tasks and agent time, by day, record or format (GET /v1/usage)."""
    query = {
        name: value
        for name, value in (
            ("from", first),
            ("to", last),
            ("group_by", group_by),
            ("record_key", record_key),
        )
        if value
    }
    with api_client.client(url, api_key) as client:
        if as_csv:
            answer = client.get("/v1/usage", params=query, headers={"Accept": "text/csv"})
            if answer.status_code >= 400:
                api_client.checked(answer)
            click.echo(answer.text, nl=False)
            return
        report = api_client.checked(client.get("/v1/usage", params=query))
    rows = [(str(item[group_by] or "(no record)"), item) for item in report["items"]]
    width = max([len(group_by), 7, *(len(name) for name, _ in rows)])
    click.echo(f"{group_by:<{width}}  {'credits':>10}  {'tasks':>6}  {'agent time':>10}")
    for name, item in [*rows, ("total", report["totals"])]:
        click.echo(
            f"{name:<{width}}  {item['credits_used']:>10g}  {item['task_count']:>6}  "
            f"{_duration(item['duration_ms']):>10}"
        )
    click.echo(f"from {report['from']} to {report['to']} (UTC)")


def _duration(ms: int) -> str:
    minutes, seconds = divmod(round(ms / 1000), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


@click.group("budgets")
def budgets() -> None:
    """Monthly credit budgets, for the tenant or a record: alerts, and an optional hard cap."""


def _path(record_key: str) -> str:
    return (
        f"/v1/budgets/records/{quote(record_key, safe='')}" if record_key else "/v1/budgets/tenant"
    )


@budgets.command("set")
@click.argument("monthly_credits", type=float)
@click.option(
    "--record", "record_key", default="", help="A record's budget (default: the tenant's)."
)
@click.option(
    "--start-day",
    type=click.IntRange(1, 28),
    default=1,
    show_default=True,
    help="The day (UTC) each budget month starts.",
)
@click.option(
    "--alert-at",
    default="70,90,100",
    show_default=True,
    help="Percentages that each alert once a month.",
)
@click.option("--hard-cap", is_flag=True, help="Refuse submits (402) once the budget is spent.")
@click.option(
    "--alert-to",
    "alert_to",
    multiple=True,
    help="A saved Slack, email, Teams or webhook destination id.",
)
@api_client.URL
@api_client.KEY
def set_budget(
    monthly_credits: float,
    record_key: str,
    start_day: int,
    alert_at: str,
    hard_cap: bool,
    alert_to: tuple[str, ...],
    url: str,
    api_key: str,
) -> None:
    """Set a budget of MONTHLY_CREDITS."""
    try:
        shares = [float(part) / 100 for part in alert_at.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            "percentages separated by commas, e.g. 70,90,100", param_hint="--alert-at"
        ) from None
    body = {
        "monthly_credits": monthly_credits,
        "start_day": start_day,
        "alert_shares": shares,
        "hard_cap": hard_cap,
        "alert_destinations": [{"id": ref} for ref in alert_to],
    }
    with api_client.client(url, api_key) as client:
        _show(api_client.checked(client.put(_path(record_key), json=body)))


@budgets.command("list")
@api_client.URL
@api_client.KEY
def list_budgets(url: str, api_key: str) -> None:
    """Every budget and where it stands this month."""
    with api_client.client(url, api_key) as client:
        items = api_client.checked(client.get("/v1/budgets"))["items"]
    if not items:
        click.echo("No budgets. Set one with `relay budgets set 5000`.")
    for budget in items:
        _show(budget)


@budgets.command("delete")
@click.option(
    "--record", "record_key", default="", help="A record's budget (default: the tenant's)."
)
@api_client.URL
@api_client.KEY
def delete_budget(record_key: str, url: str, api_key: str) -> None:
    """Remove a budget."""
    with api_client.client(url, api_key) as client:
        api_client.checked(client.delete(_path(record_key)))
    click.echo(f"removed the budget of {record_key or 'the tenant'}")


def _show(budget: dict) -> None:
    who = f"record {budget['record_key']}" if budget["record_key"] else "tenant"
    bar = "#" * min(20, round(20 * budget["share_spent"]))
    cap = ", hard cap" if budget["hard_cap"] else ""
    click.echo(
        f"{who}: {budget['spent']:g} of {budget['monthly_credits']:g} credits [{bar:<20}] "
        f"{budget['share_spent']:.0%}{cap}; resets {budget['period']['resets_at'][:10]}"
    )
