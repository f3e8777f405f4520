"""Long-running processes: the sandbox, the web service, workers, the scheduler."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from app.cli.devstack import DevStack
from app.core import secret_strength
from app.core.config import RelayConfig
from app.stores import queues
from app.work.worker import run_scheduler, run_worker


@click.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    }
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sandbox(args: tuple[str, ...]) -> None:
    """The local Overten API stand-in: `relay sandbox serve`, `relay sandbox orgs create NAME`.

    Runs `python -m sandbox` in its own process (the relay never imports the sandbox). Without
    SANDBOX_REDIS_URL it uses the private Redis of `relay dev` under RELAY_RUN_DIR (default var/dev),
    starting it if needed.
    """
    env = dict(os.environ)
    asks_for_help = not args or any(a in ("--help", "-h") for a in args)
    if "SANDBOX_REDIS_URL" not in env and not asks_for_help:  # help needs no Redis left running
        stack = DevStack(Path(env.get("RELAY_RUN_DIR", "var/dev")))
        stack.start_redis()
        env.update(stack.sandbox_env())
    os.execve(sys.executable, [sys.executable, "-m", "sandbox", *(args or ("--help",))], env)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--workers",
    envvar="WEB_CONCURRENCY",
    default=2,
    show_default=True,
    type=int,
    help="gunicorn worker processes (WEB_CONCURRENCY). More serve more webhooks/s, fewer answer bursts "
    "sooner: docs/operations.md.",
)
@click.option(
    "--threads",
    envvar="RELAY_WEB_THREADS",
    default=8,
    show_default=True,
    type=int,
    help="Threads per process (for `wait`).",
)
def web(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the relay's HTTP API with gunicorn (configuration: RELAY_* environment variables)."""
    _refuse_weak_secrets()
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or shutil.which(
        "gunicorn"
    )
    if gunicorn is None:
        raise click.ClickException("gunicorn is not installed (pip install gunicorn)")
    argv = [
        gunicorn,
        "--config",
        "python:app.web.gunicorn_conf",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "app.web:create_app()",
    ]
    os.execv(gunicorn, argv)


@click.command()
@click.option(
    "--queues",
    "queue_names",
    default=",".join(queues.ALL),
    show_default=True,
    help="Comma-separated queues, in priority order.",
)
@click.option("--burst", is_flag=True, help="Stop once the queues are empty.")
def worker(queue_names: str, burst: bool) -> None:
    """Run a worker (with RQ's scheduler for retries and delayed jobs)."""
    _refuse_weak_secrets()
    run_worker([q.strip() for q in queue_names.split(",") if q.strip()], burst=burst)


@click.command()
def scheduler() -> None:
    """Run the cron scheduler that enqueues the reconciler every RELAY_RECONCILE_INTERVAL_SECONDS."""
    _refuse_weak_secrets()
    run_scheduler()


def _refuse_weak_secrets() -> None:
    """A placeholder or short signing key or admin token: no process starts (the message names it)."""
    found = secret_strength.problems(RelayConfig.from_env())
    if found:
        raise click.ClickException(" ".join(found))
