"""The relay's own API from the command line (`relay batch`, `relay usage`, `relay budgets`): where it is,
the key, and its errors as click's."""

from __future__ import annotations

import os

import click
import httpx

URL = click.option(
    "--url",
    default=lambda: os.environ.get("RELAY_URL", "http://127.0.0.1:8080"),
    show_default="RELAY_URL",
)
KEY = click.option(
    "--api-key", default=lambda: os.environ.get("RELAY_API_KEY", ""), show_default="RELAY_API_KEY"
)


def client(url: str, api_key: str) -> httpx.Client:
    if not api_key:
        raise click.ClickException("no API key: pass --api-key or set RELAY_API_KEY")
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60)


def checked(response: httpx.Response) -> dict:
    """The answer's JSON, or its error (and each row or field at fault) as a ClickException."""
    if response.status_code >= 400:
        error = response.json().get("error", {})
        faults = "".join(_fault(e) for e in error.get("errors") or [])
        raise click.ClickException(f"{error.get('message', response.text)}{faults}")
    return response.json() if response.content else {}


def _fault(error: dict) -> str:
    """One row or field at fault: a row of a file is also named by its line."""
    if "row" not in error:
        return f"\n  {error.get('field', '')}: {error.get('message', '')}"
    where = f"row {error['row']}" + (f" (line {error['line']})" if error.get("line") else "")
    return f"\n  {where}, {error['column'] or 'the row'}: {error['message']}"
