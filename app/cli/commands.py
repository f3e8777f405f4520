"""The `relay` command group and its subcommands (app.cli.main loads it).

A subcommand's module is imported when the subcommand runs (or help lists it), not at every start: `relay
worker` and `relay web` start many times a day, and the exporters, the CLI clients and the dev stack they
don't use cost them most of a second of imports."""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import io
import signal

import click

SUBCOMMANDS = {  # name -> (module under app.cli, attribute)
    "audit": ("audit", "audit_group"),
    "batch": ("batch", "batch"),
    "budgets": ("spend", "budgets"),
    "connectors": ("connectors", "connectors"),
    "deliveries": ("deliveries", "deliveries_group"),
    "destinations": ("destinations", "destinations_group"),
    "dev": ("dev", "dev"),
    "doctor": ("doctor", "doctor"),
    "people": ("people", "people_group"),
    "sandbox": ("services", "sandbox"),
    "scheduler": ("services", "scheduler"),
    "secrets": ("tenants", "secrets"),
    "submit": ("submit", "submit"),
    "tenants": ("tenants", "tenants"),
    "usage": ("spend", "usage"),
    "web": ("services", "web"),
    "worker": ("services", "worker"),
}


class LazyGroup(click.Group):
    """Click's group, with each subcommand imported on first use (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        module, attribute = SUBCOMMANDS[cmd_name]
        return getattr(importlib.import_module(f"app.cli.{module}"), attribute)


@click.group(cls=LazyGroup)
def relay() -> None:
    """Relay: no-code connectors and a webhook relay for the Overten document-generation API."""
    # stderr with no file (tests)
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        faulthandler.enable()  # a crash (SIGSEGV, SIGABRT) writes every thread's stack to this process's log
        # `kill -USR1`: what a stuck process is doing
        faulthandler.register(signal.SIGUSR1, all_threads=True)
