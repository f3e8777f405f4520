"""`relay doctor`: check configuration, Redis durability, workers and the API; non-zero exit on failure."""

from __future__ import annotations

import click

from app.cli.checks import FAIL, OK, WARN, run
from app.core.config import RelayConfig

MARKS = {OK: ("ok  ", "green"), WARN: ("warn", "yellow"), FAIL: ("FAIL", "red")}


@click.command()
def doctor() -> None:
    """Check this installation: config, Redis (AOF, eviction), workers, the API for every tenant."""
    findings = run(RelayConfig.from_env())
    for finding in findings:
        mark, colour = MARKS[finding.level]
        click.echo(f"{click.style(mark, fg=colour)}  {finding.check:<20} {finding.message}")
    failed = [f for f in findings if f.level == FAIL]
    warned = [f for f in findings if f.level == WARN]
    click.echo(f"\n{len(failed)} failure(s), {len(warned)} warning(s)")
    if failed:
        raise SystemExit(1)
