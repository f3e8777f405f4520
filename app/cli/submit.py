"""`relay submit`: a generation through the relay's own API, with a live progress bar."""

from __future__ import annotations

import os
import time

import click
import httpx

from app.cli.progress import ProgressLine
from app.core.states import TASK_ENDED


def submit_document(base_url: str, api_key: str, body: dict, follow: bool) -> dict:
    """POST /v1/documents; with ``follow``, show progress until the task ends and return it."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        response = client.post("/v1/documents", json=body)
        if response.status_code >= 400:
            error = response.json().get("error", {})
            raise click.ClickException(
                f"{error.get('field', '')} {error.get('message', response.text)}".strip()
            )
        task = response.json()
        if not follow:
            return task
        progress = ProgressLine()
        while True:
            task = client.get(f"/v1/tasks/{task['task_id']}").raise_for_status().json()
            progress.update(task["status"], task["phase"], task["progress"], task["turn_index"])
            if task["status"] in TASK_ENDED:
                progress.done()
                return task
            time.sleep(0.5)


def describe(task: dict) -> list[str]:
    lines = [f"task     {task['task_id']} {task['status']}"]
    if task.get("run_id"):
        lines.append(
            f"run      {task['run_id']}"
            + (" (restarted: the old one expired)" if task.get("run_restarted") else "")
        )
    result, error = task.get("result"), task.get("error")
    if result:
        lines += [f"summary  {result.get('summary')}", f"download {result.get('download_url')}"]
    if error:
        lines.append(f"error    {error.get('code')}: {error.get('message')}")
    lines += [
        f"delivery {d['kind']} {d['state']} {d.get('location') or d.get('last_error') or ''}".rstrip()
        for d in task.get("deliveries") or []
    ]
    return lines


FORMATS = [
    "excel",
    "word",
    "slides",
    "slides_outline",
    "text_summary",
    "text_email",
    "text_memo",
    "text_rewrite",
    "text_bullets",
]


@click.command()
@click.option("--format", "fmt", default="excel", show_default=True, type=click.Choice(FORMATS))
@click.argument("prompt")
@click.option("--record-key", help="The record this document belongs to (resumes its document).")
@click.option(
    "--new-document", is_flag=True, help="Start a new document even if the record has one."
)
@click.option(
    "--write-back",
    "connection",
    metavar="CONNECTION",
    help="Write the status and file back to the record through this saved connection (dst_...), or "
    "'none' for no write-back, not even the tenant's default.",
)
@click.option("--wait", "follow", is_flag=True, help="Show progress until the document is ready.")
@click.option(
    "--url",
    default=lambda: os.environ.get("RELAY_URL", "http://127.0.0.1:8080"),
    show_default="RELAY_URL",
)
@click.option(
    "--api-key", default=lambda: os.environ.get("RELAY_API_KEY", ""), show_default="RELAY_API_KEY"
)
def submit(
    fmt: str,
    prompt: str,
    record_key: str | None,
    new_document: bool,
    connection: str | None,
    follow: bool,
    url: str,
    api_key: str,
) -> None:
    """Submit PROMPT through the relay's API."""
    if not api_key:
        raise click.ClickException("no API key: pass --api-key or set RELAY_API_KEY")
    body: dict = {"format": fmt, "prompt": prompt}
    if record_key:
        body["record_key"] = record_key
    if new_document:
        body["resume"] = False
    if connection:
        body["write_back"] = False if connection == "none" else {"connection": connection}
    task = submit_document(url, api_key, body, follow)
    for line in describe(task):
        click.echo(line)
    if follow and task["status"] != "completed":
        raise SystemExit(1)
