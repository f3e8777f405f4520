"""The `relay` command group and its subcommands (app.cli.main loads it)."""

from __future__ import annotations

import contextlib
import faulthandler
import io
import signal

import click

from app.cli import batch, connectors, deliveries, dev, doctor, services, spend, submit, tenants


@click.group()
def relay() -> None:
    """Relay: no-code connectors and a webhook relay for the Overten document-generation API."""
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):  # stderr with no file (tests)
        faulthandler.enable()  # a crash (SIGSEGV, SIGABRT) writes every thread's stack to this process's log
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: what a stuck process is doing


for command in (batch.batch, spend.usage, spend.budgets, dev.dev, services.sandbox, services.web, services.worker,
                services.scheduler, submit.submit, tenants.tenants, tenants.secrets, deliveries.deliveries_group,
                connectors.connectors, doctor.doctor):
    relay.add_command(command)
