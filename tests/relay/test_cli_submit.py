"""`relay submit --wait`: through the relay's own API, with a live progress bar."""

from __future__ import annotations

import subprocess
import sys
import threading

from click.testing import CliRunner

from app.cli.commands import relay as main
from tests.support.servers import eventually

RUNNING = (
    "loading_doc",
    "restoring_state",
    "agent_turn",
    "executing_plan",
    "saving_doc",
    "uploading_result",
    "dispatching_webhook",
)


def test_submit_wait_shows_progress_then_where_the_file_went(relay):
    """The real command, in a process of its own: it shows the task running (held mid-run by the sandbox until
    the CLI has shown it), then where the file went."""
    env = {**relay.env(), "RELAY_URL": relay.url, "RELAY_API_KEY": relay.api_key}
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "submit",
            "--format",
            "excel",
            "--wait",
            "--record-key",
            "deal:cli",
            "Quarterly sales [[hold=cli]]",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    shown: list[str] = []

    def read_progress() -> None:
        for line in cli.stderr:
            shown.append(line.rstrip("\n"))

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    try:
        eventually(
            lambda: any(phase in line for line in shown for phase in RUNNING),
            120,
            "the CLI to show the task running",
            show=lambda: (shown, cli.poll()),
        )
        relay.sandbox.release("cli")
        assert cli.wait(timeout=120) == 0, "\n".join(shown)
    finally:
        relay.sandbox.release("cli")
        cli.kill()
        cli.wait()
    reader.join(timeout=60)
    output = cli.stdout.read()
    bars = [line for line in shown if line.startswith("[")]
    percents = [int(line.split("]")[1].split("%")[0]) for line in bars]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(phase in line for line in bars[:-1] for phase in RUNNING), (
        "live progress, not only the end"
    )
    assert "completed" in output and "download http://127.0.0.1" in output


def test_submit_without_a_key_or_with_bad_input_explains(make_relay):
    relay = make_relay(worker=False)  # both are refused before any work: no worker needed
    runner = CliRunner()
    no_key = runner.invoke(main, ["submit", "x"], env={"RELAY_URL": relay.url, "RELAY_API_KEY": ""})
    assert no_key.exit_code != 0 and "RELAY_API_KEY" in no_key.stderr
    too_long = runner.invoke(
        main, ["submit", "x" * 20_001], env={"RELAY_URL": relay.url, "RELAY_API_KEY": relay.api_key}
    )
    assert too_long.exit_code != 0 and "prompt" in too_long.stderr
