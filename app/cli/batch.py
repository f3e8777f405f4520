"""`relay batch submit|status|retry`: batches through the relay's own API, with a live progress line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import httpx

from app.cli import api_client
from app.cli.submit import FORMATS


@click.group("batch")
def batch() -> None:
    """One document per row of a CSV, at the API's pace."""


@batch.command("submit")
@click.argument("rows", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS))
@click.option(
    "--template",
    default="",
    help="The prompt, with {{column}} for each row's values; without it, each "
    "row's prompt column is its prompt.",
)
@click.option(
    "--stop-on-error", is_flag=True, help="Cancel the rows not yet started at the first failed row."
)
@click.option(
    "--redo", is_flag=True, help="Run rows whose record has this document already (skip_done off)."
)
@click.option("--wait", "follow", is_flag=True, help="Show progress until every row has ended.")
@api_client.URL
@api_client.KEY
def submit_batch(
    rows: Path,
    fmt: str,
    template: str,
    stop_on_error: bool,
    redo: bool,
    follow: bool,
    url: str,
    api_key: str,
) -> None:
    """Submit the CSV ROWS (a header row naming the columns, one of them record_key)."""
    params = {
        "format": fmt,
        "on_error": "stop" if stop_on_error else "continue",
        "skip_done": "false" if redo else "true",
        **({"prompt_template": template} if template else {}),
    }
    with api_client.client(url, api_key) as client:
        answer = api_client.checked(
            client.post(
                "/v1/batches",
                content=rows.read_bytes(),
                params=params,
                headers={"Content-Type": "text/csv"},
            )
        )
        click.echo(f"batch    {answer['batch_id']} {answer['total']} rows")
        if follow:
            _whole(_follow(client, answer["batch_id"]))


@batch.command("status")
@click.argument("batch_id")
@click.option("--wait", "follow", is_flag=True, help="Show progress until every row has ended.")
@api_client.URL
@api_client.KEY
def status(batch_id: str, follow: bool, url: str, api_key: str) -> None:
    """Show a batch's progress, and its failed rows."""
    with api_client.client(url, api_key) as client:
        answer = (
            _follow(client, batch_id)
            if follow
            else api_client.checked(client.get(f"/v1/batches/{batch_id}"))
        )
        click.echo(line(answer))
        failed = api_client.checked(
            client.get(f"/v1/batches/{batch_id}/rows", params={"state": "failed", "limit": 20})
        )
        for row in failed["items"]:
            click.echo(f"failed   row {row['row']} {row['record_key']}: {row['error']}")


@batch.command("retry")
@click.argument("batch_id")
@click.option("--wait", "follow", is_flag=True, help="Show progress until every row has ended.")
@api_client.URL
@api_client.KEY
def retry(batch_id: str, follow: bool, url: str, api_key: str) -> None:
    """Run a batch's failed rows again."""
    with api_client.client(url, api_key) as client:
        answer = api_client.checked(client.post(f"/v1/batches/{batch_id}/retry"))
        click.echo(f"batch    {batch_id}: {answer['retried']} failed rows again")
        if follow:
            _whole(_follow(client, batch_id))


def line(batch: dict) -> str:
    """done, failed, running and the time left, as a bar."""
    counts, width = batch["counts"], 30
    filled = int(width * batch["percent_done"] / 100)
    left = f", about {_duration(batch['seconds_left'])} left" if batch.get("seconds_left") else ""
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {batch['percent_done']:5.1f}%  {counts['completed']} done, "
        f"{counts['failed']} failed, {counts['running'] + counts['submitting']} running, "
        f"{counts['skipped']} skipped{left}  ({batch['status']})"
    )


def _follow(client: httpx.Client, batch_id: str) -> dict:
    tty, last = sys.stderr.isatty(), ""
    while True:
        answer = api_client.checked(client.get(f"/v1/batches/{batch_id}"))
        text = line(answer)
        if text != last:
            sys.stderr.write(f"\r{text:<100}" if tty else text + "\n")
            sys.stderr.flush()
            last = text
        if answer["status"] != "running" and answer["percent_done"] >= 100:
            if tty:
                sys.stderr.write("\n")
            return answer
        time.sleep(1.0)


def _whole(batch: dict) -> None:
    """With --wait, a script learns from the exit code whether every row made its document (or was
    skipped as done before): 1 when a row failed or was cancelled."""
    counts = batch["counts"]
    short = counts["failed"] + counts["cancelled"]
    if short or batch["status"] != "completed":
        click.echo(
            f"batch    {batch['batch_id']} {batch['status']}: {counts['failed']} failed, "
            f"{counts['cancelled']} cancelled (relay batch status {batch['batch_id']})",
            err=True,
        )
        raise SystemExit(1)


def _duration(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"
