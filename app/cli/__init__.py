"""The `relay` command line: ``main`` is its entry point."""

from app.cli import metrics_dir


def main() -> None:
    """Run `relay`. The directory /metrics adds up is set first: prometheus_client picks how it keeps values
    when it is first imported, and the commands import it."""
    metrics_dir.share()
    from app.cli.commands import relay  # only now, for the reason above

    relay()
